"""A download's sink behind the reply's signature check (loaded for downloads only)."""

import hashlib
from binascii import hexlify


class CheckedSink:
    """Bundle data (a reply announcing X-Bundle-SHA256, which the signature covers) is checked
    before a byte is kept; any other answer (a 416, an error page) is only hashed, and passed
    on once its signature holds. `link` is uplink_exchange's _Link of the request."""

    def __init__(self, link, path, sink):
        self.link, self.path, self.sink = link, path, sink
        self.held = None

    def head(self, status, headers):
        bundle = headers.get("x-bundle-sha256")
        if bundle is None:
            self.held = (status, headers, hashlib.sha256())
            return
        self.link.check(self.path, status, headers, bundle.encode())
        self.sink.head(status, headers)

    def write(self, chunk):
        if self.held is None:
            self.sink.write(chunk)
        else:
            self.held[2].update(chunk)

    def end(self):
        if self.held is not None:
            status, headers, h = self.held
            self.link.check(self.path, status, headers, hexlify(h.digest()))
            self.sink.head(status, headers)
