"""The node's link to the fleet server: signed check-ins and telemetry uploads over HTTP."""

import hashlib
import os
from binascii import hexlify, unhexlify

from hmac_sha256 import HmacSha256
from http_client import HttpClient

CHECKIN_PATH = "/device/v1/checkin"
TELEMETRY_PATH = "/device/v1/telemetry"


class Rejected(Exception):
    """The server refused a request for its content (4xx other than auth); args: status, detail."""


class Uplink:
    """Signs every request with the device key (HMAC-SHA256 over method, path, time, nonce, body)."""

    def __init__(self, identity, clock_s, log=None, http=None):
        self.device_id = identity["device_id"]
        self._mac = HmacSha256(unhexlify(identity["secret"]))
        self.http = http or HttpClient(identity["server"])
        self.clock_s = clock_s
        self.offset_s = 0  # learned from the server's X-Server-Time when the node's clock is off
        self.log = log
        self.last_status = None

    def _headers(self, method, path, body):
        ts = str(int(self.clock_s()) + self.offset_s)
        nonce = hexlify(os.urandom(12)).decode()
        digest = hexlify(hashlib.sha256(body).digest())
        full_path = self.http.prefix + path
        sig = self._mac.digest(method.encode(), b"\n", full_path.encode(), b"\n", ts.encode(),
                               b"\n", nonce.encode(), b"\n", digest)
        return {"X-Device-Id": self.device_id, "X-Timestamp": ts, "X-Nonce": nonce,
                "X-Signature": hexlify(sig).decode(), "Content-Type": "application/json"}

    def post(self, path, body):
        """POST a signed body; corrects the clock once if the server says it is off."""
        resp = self.http.request("POST", path, body, self._headers("POST", path, body))
        server_time = resp.headers.get("x-server-time")
        if resp.status == 401 and server_time:
            self.offset_s = int(server_time) - int(self.clock_s())
            if self.log:
                self.log.warn("clock_corrected", offset_s=self.offset_s)
            resp = self.http.request("POST", path, body, self._headers("POST", path, body))
        self.last_status = resp.status
        return resp

    def checkin(self, status):
        """Send the node's status; return the server's reply dict, or None when refused."""
        import json

        resp = self.post(CHECKIN_PATH, json.dumps(status).encode())
        if resp.status != 200:
            if self.log:
                self.log.error("checkin_refused", status=resp.status, detail=resp.body[:120])
            return None
        return json.loads(resp.body)

    def post_telemetry(self, records):
        """Upload (seq, payload) records; return the highest seq the server holds.

        Payloads are the queue's compact JSON objects; each is sent with its seq spliced in, so
        nothing is decoded and re-encoded on the node. Raises Rejected on a 4xx about content.
        """
        import json

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
        resp = self.post(TELEMETRY_PATH, body)
        if resp.status == 200:
            return json.loads(resp.body)["acked_seq"]
        if 400 <= resp.status < 500 and resp.status not in (401, 403):
            raise Rejected(resp.status, resp.body)
        if self.log:
            self.log.error("telemetry_refused", status=resp.status, detail=resp.body[:120])
        return None
