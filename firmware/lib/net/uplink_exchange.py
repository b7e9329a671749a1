"""One exchange with the fleet server: sign, send over HTTP, read the reply (loaded per use)."""

import hashlib
import json
import os
from binascii import hexlify, unhexlify

from micropython import const

from crypto.hmac_sha256 import HmacSha256
from net.http_client import HttpClient

_CHECKIN_PATH = const("/device/v1/checkin")
_TELEMETRY_PATH = const("/device/v1/telemetry")


class Rejected(Exception):
    """The server refused a request for its content (4xx other than auth); args: status, detail."""


class _Link:
    """An uplink's state with a signer and an HTTP client, for one exchange."""

    def __init__(self, up):
        self.up = up
        self.mac = HmacSha256(unhexlify(up.secret))
        self.http = up.http or HttpClient(up.server)
        if up.http is None:
            self.http.addr = up.addr

    def done(self):
        if self.up.http is None:
            self.up.addr = self.http.addr  # kept for the next exchange (None after a failure)

    def headers(self, method, path, body):
        up = self.up
        ts = str(int(up.clock_s()) + up.offset_s)
        nonce = hexlify(os.urandom(12)).decode()
        digest = hexlify(hashlib.sha256(body).digest())
        full_path = self.http.prefix + path
        sig = self.mac.digest(method.encode(), b"\n", full_path.encode(), b"\n", ts.encode(),
                              b"\n", nonce.encode(), b"\n", digest)
        return {"X-Device-Id": up.device_id, "X-Timestamp": ts, "X-Nonce": nonce,
                "X-Signature": hexlify(sig).decode(), "Content-Type": "application/json"}

    def post(self, path, body):
        """POST a signed body; corrects the clock once if the server says it is off."""
        up = self.up
        try:
            resp = self.http.request("POST", path, body, self.headers("POST", path, body))
            server_time = resp.headers.get("x-server-time")
            if resp.status == 401 and server_time:
                up.offset_s = int(server_time) - int(up.clock_s())
                if up.log:
                    up.log.warn("clock_corrected", offset_s=up.offset_s)
                resp = self.http.request("POST", path, body, self.headers("POST", path, body))
        finally:
            self.done()
        up.last_status = resp.status
        return resp


def checkin(up, status):
    """Send the node's status; return the server's reply dict, or None when refused."""
    resp = _Link(up).post(_CHECKIN_PATH, json.dumps(status).encode())
    if resp.status != 200:
        if up.log:
            up.log.error("checkin_refused", status=resp.status, detail=resp.body[:120])
        return None
    return json.loads(resp.body)


def post_telemetry(up, records):
    """Upload (seq, payload) records; return the highest seq the server holds.

    Payloads are the queue's compact JSON objects; each is sent with its seq spliced in, so
    nothing is decoded and re-encoded on the node. Raises Rejected on a 4xx about content.
    """
    parts = [b'{"readings":[']
    for i in range(len(records)):
        seq, payload = records[i]
        if i:
            parts.append(b",")
        parts.append(('{"seq":%d,' % seq).encode())
        parts.append(payload[1:])
    parts.append(b"]}")
    body = b"".join(parts)
    parts = None
    resp = _Link(up).post(_TELEMETRY_PATH, body)
    if resp.status == 200:
        return json.loads(resp.body)["acked_seq"]
    if 400 <= resp.status < 500 and resp.status not in (401, 403):
        raise Rejected(resp.status, resp.body)
    if up.log:
        up.log.error("telemetry_refused", status=resp.status, detail=resp.body[:120])
    return None


def get(up, path, headers, sink, deadline_s=None):
    """A signed GET of `path`, with `headers` (or None) added, whose body goes to `sink`;
    returns the response."""
    link = _Link(up)
    signed = link.headers("GET", path, b"")
    if headers:
        signed.update(headers)
    try:
        return link.http.request("GET", path, b"", signed, sink=sink, deadline_s=deadline_s)
    finally:
        link.done()
