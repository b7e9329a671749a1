"""One exchange with the fleet server: sign, send, check the reply's signature (loaded per use).

Every reply must carry X-Reply-Signature, the server's HMAC under the device key over this
request's nonce, the status, X-Server-Time and the body's SHA-256 (a download: the bundle's
announced X-Bundle-SHA256); anything else is refused before a byte of it is used.
"""

import hashlib
import json
import os
from binascii import hexlify, unhexlify

from micropython import const

from crypto.hmac_sha256 import HmacSha256
from net.http_client import HttpClient, HttpError

_CHECKIN_PATH = const("/device/v1/checkin")
_TELEMETRY_PATH = const("/device/v1/telemetry")
_TIME_PATH = const("/device/v1/time")
_DEADLINE_S = const(30)  # a whole check-in or upload: a server that trickles cannot hold the lamp


class Rejected(Exception):
    """The server refused a request for its content (4xx other than auth); args: status, detail."""




def reply_signed(mac, nonce, status, headers, digest):
    """True when `headers` carry X-Reply-Signature, the HMAC (`mac`, an HmacSha256 under the
    device key, or an enrollment's code) over "reply", the request's `nonce`, the status,
    X-Server-Time and `digest` (hex SHA-256 of the body, or a download's X-Bundle-SHA256): the
    node's side of fleet.core.crypto.sign_reply. A plain comparison: each request has a fresh
    nonce, so timing teaches nothing."""
    return headers.get("x-reply-signature") == hexlify(mac.digest(
        b"reply\n", nonce.encode(), b"\n", str(status).encode(), b"\n",
        headers.get("x-server-time", "").encode(), b"\n", digest)).decode()


class _Link:
    """An uplink's state with a signer and an HTTP client, for one exchange."""

    def __init__(self, up):
        self.up = up
        self.mac = HmacSha256(unhexlify(up.secret))
        self.http = up.http or HttpClient(up.server, insecure_http=up.insecure_http,
                                          root=up.root)
        if up.http is None:
            self.http.addr = up.addr

    def done(self):
        if self.up.http is None:
            self.up.addr = self.http.addr  # kept for the next exchange (None after a failure)

    def headers(self, method, path, body, ts=None):
        up = self.up
        if ts is None:
            ts = str(int(up.clock_s()) + up.offset_s)
        self.nonce = nonce = hexlify(os.urandom(12)).decode()
        digest = hexlify(hashlib.sha256(body).digest())
        full_path = self.http.prefix + path
        sig = self.mac.digest(method.encode(), b"\n", full_path.encode(), b"\n", ts.encode(),
                              b"\n", nonce.encode(), b"\n", digest)
        return {"X-Device-Id": up.device_id, "X-Timestamp": ts, "X-Nonce": nonce,
                "X-Signature": hexlify(sig).decode(), "Content-Type": "application/json"}

    def check(self, path, status, headers, digest):
        """Raise HttpError (logged) unless the reply is signed for this request's nonce:
        HMAC under the device key over the nonce, status, X-Server-Time and `digest`."""
        if reply_signed(self.mac, self.nonce, status, headers, digest):
            return
        why = "bad signature" if headers.get("x-reply-signature") else "unsigned"
        if self.up.log:
            self.up.log.error("reply_refused", path=path, status=status, detail=why)
        raise HttpError(why)  # nothing in it is used; the exchange counts as failed

    def post(self, path, body):
        """POST a signed body and check the reply's signature; corrects the clock once from a
        signed 401 that says the node's time is off, and signs again."""
        up = self.up
        try:
            for again in (True, False):
                resp = self.http.request("POST", path, body, self.headers("POST", path, body),
                                         deadline_s=_DEADLINE_S)
                self.check(path, resp.status, resp.headers,
                           hexlify(hashlib.sha256(resp.body).digest()))
                server_time = resp.headers.get("x-server-time")
                if not (again and resp.status == 401 and server_time):
                    break
                if up.log:  # a warning the first time; an emulated clock racing ahead re-syncs
                    (up.log.info if up.offset_s else up.log.warn)(
                        "clock_corrected", offset_s=int(server_time) - int(up.clock_s()))
                up.offset_s = int(server_time) - int(up.clock_s())
        finally:
            self.done()
        up.last_status = resp.status
        return resp


def checkin(up, status):
    """Send the node's status; return the server's reply dict, or None when refused."""
    link = _Link(up)
    resp = link.post(_CHECKIN_PATH, json.dumps(status).encode())
    if resp.status != 200:
        if up.log:
            up.log.error("checkin_refused", status=resp.status, detail=resp.body[:120])
        return None
    reply = json.loads(resp.body)
    if reply.get("next_key"):  # a rotation: its code loads only then (and leaves with this)
        from net.next_key import take

        take(up, link.mac, reply["next_key"])
    return reply


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
        # never more than was sent: what the server holds beyond it is not this batch's news
        return min(json.loads(resp.body)["acked_seq"], records[-1][0])
    if 400 <= resp.status < 500 and resp.status not in (401, 403):
        raise Rejected(resp.status, resp.body)
    if up.log:
        up.log.error("telemetry_refused", status=resp.status, detail=resp.body[:120])
    return None


def server_time(up):
    """Ask the server's time with X-Timestamp 0 (no clock yet); the reply's signature covers
    this request's nonce and X-Server-Time, so a replayed or forged time is refused."""
    link = _Link(up)
    try:
        resp = link.http.request("POST", _TIME_PATH, b"{}",
                                 link.headers("POST", _TIME_PATH, b"{}", "0"),
                                 deadline_s=_DEADLINE_S)
        link.check(_TIME_PATH, resp.status, resp.headers,
                   hexlify(hashlib.sha256(resp.body).digest()))
    finally:
        link.done()
    if resp.status != 200:
        raise HttpError("time refused: %d" % resp.status)
    return int(resp.headers["x-server-time"])


def get(up, path, headers, sink, deadline_s=None):
    """A signed GET of `path`, with `headers` (or None) added, whose body goes to `sink`;
    returns the response."""
    from net.signed_download import CheckedSink  # downloads only: not on a check-in's heap

    link = _Link(up)
    signed = link.headers("GET", path, b"")
    if headers:
        signed.update(headers)
    checked = CheckedSink(link, path, sink)
    try:
        resp = link.http.request("GET", path, b"", signed, sink=checked, deadline_s=deadline_s)
    finally:
        link.done()
    checked.end()
    return resp
