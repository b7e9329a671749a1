"""A small HTTP/1.1 client over sockets for the node: bounded reads, streaming bodies, Range,
and TLS to the fleet server checked against the fleet CA pinned on the node."""

from micropython import const
import select
import socket
import time

_MAX_HEADER_LINE = const(512)  # also the body's read buffer
_MAX_HEADERS = const(32)
_MAX_BODY = const(16384)
_CA_FILE = const("/fleet_ca.der")  # the fleet CA certificate (DER), written at provisioning


class HttpError(OSError):
    """The server could not be reached or answered with something unreadable."""


class Response:
    """Status, the headers the node cares about (lower-case names) and the body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body


def parse_url(url):
    """(host, port, path prefix, tls) of an https:// (port 443) or http:// (port 80) URL."""
    tls = url.startswith("https://")
    if not tls and not url.startswith("http://"):
        raise ValueError("not an http(s):// URL: " + url)
    rest = url[8 if tls else 7:]
    slash = rest.find("/")
    hostport, prefix = (rest, "") if slash < 0 else (rest[:slash], rest[slash:].rstrip("/"))
    if ":" in hostport:
        host, port = hostport.split(":", 1)
        return host, int(port), prefix, tls
    return hostport, 443 if tls else 80, prefix, tls


class HttpClient:
    """One request per connection (Connection: close): simple, and nothing to leak on failure.

    https: the server must present a certificate for the URL's host signed by the CA in
    `root` + _CA_FILE (DER, read at each connection; root is the flash root). http:// is refused
    unless `insecure_http` (a test server, a lab): the node never falls back to plain HTTP by
    itself. (Parameter names shared with the identity's keys: every new name costs the node
    interned-string memory.)
    """

    def __init__(self, url, timeout_s=10, insecure_http=False, root=""):
        self.host, self.port, self.prefix, self.tls = parse_url(url)
        self.insecure_http = insecure_http
        self.root = root
        self.timeout_s = timeout_s
        self.addr = None
        self._deadline = None
        self.poll = None

    def connect(self):
        ca = None
        if self.tls:
            try:
                with open(self.root + _CA_FILE, "rb") as f:
                    ca = f.read()
            except OSError:
                raise HttpError("the node has no pinned CA (%s): https refused"
                                % (self.root + _CA_FILE))
        elif not self.insecure_http:
            raise HttpError("plain http:// refused (the identity does not allow it): "
                            + self.host)
        try:
            if self.addr is None:
                self.addr = socket.getaddrinfo(self.host, self.port, 0,
                                               socket.SOCK_STREAM)[0][-1]
        except OSError as exc:  # name resolution failed: a failed request like any other
            raise HttpError("cannot resolve %s (%s)" % (self.host, exc))
        sock = socket.socket()
        sock.settimeout(self._left_s())
        try:
            sock.connect(self.addr)
        except OSError as exc:
            sock.close()
            self.addr = None
            raise HttpError("cannot connect to %s:%d (%s)" % (self.host, self.port, exc))
        if ca is None:
            return sock
        # TLS: the server checked against the pinned fleet CA; the handshake blocks, each
        # wait bounded by the deadline
        import ssl

        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # a stub defect
            ctx.load_verify_locations(cadata=ca)
            ca = None
            sock.settimeout(self._left_s())
            return ctx.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ValueError) as exc:  # mbedTLS names a bad certificate in a ValueError
            sock.close()
            if isinstance(exc, HttpError):
                raise
            raise HttpError("TLS with %s:%d failed: %s" % (self.host, self.port,
                                                            str(exc).strip() or repr(exc)))

    def request(self, method, path, body=b"", headers=None, sink=None, deadline_s=None):
        """Send one request. The body goes to `sink` when given, else into Response.body.

        sink: an object whose head(status, headers) sees the status line and headers before
        the body, and whose write(chunk) takes each piece of the body; either may raise to stop
        reading. A body larger than 16 KB (_MAX_BODY) without a sink is refused (HttpError), so a
        confused or hostile server cannot exhaust the heap. With `deadline_s` the whole
        exchange must end within that many seconds (a server that trickles is cut off): the
        reply is read without blocking, each wait bounded by what is left of the deadline.
        """
        self._deadline = None
        if deadline_s is not None:
            self._deadline = time.ticks_add(time.ticks_ms(), int(deadline_s * 1000))
        sock = self.connect()
        try:
            head = "%s %s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n" % (
                method, self.prefix, path, self.host, len(body))
            sock.write(head.encode())
            if headers:
                for name in headers:
                    sock.write(("%s: %s\r\n" % (name, headers[name])).encode())
            sock.write(b"\r\n")
            if body:
                sock.write(body)
            sock.setblocking(False)
            self.poll = select.poll()
            self.poll.register(sock, select.POLLIN)
            return self._read_response(sock, sink)
        except OSError as exc:
            if isinstance(exc, HttpError):
                raise
            raise HttpError("request %s %s failed: %s" % (method, path, exc))
        finally:
            self.poll = None
            sock.close()

    def _left_s(self):
        """Seconds one wait may take: the timeout, or less when the deadline is nearer."""
        if self._deadline is None:
            return self.timeout_s
        left = time.ticks_diff(self._deadline, time.ticks_ms())
        if left <= 0:
            raise HttpError("stalled: no complete answer in time")
        return min(self.timeout_s, left / 1000)

    def read(self, sock, buf):
        """Read what has arrived into `buf` (at least one byte), waiting at most _left_s();
        0 at the end of the stream. What is already there (TLS keeps whole records, which
        poll cannot see) is taken before any wait; the deadline holds either way."""
        while True:
            wait_ms = int(self._left_s() * 1000)
            n = sock.readinto(buf)
            if n is not None:
                return n
            ready = False
            for _ in self.poll.ipoll(wait_ms):
                ready = True
            if not ready:
                raise HttpError("timed out waiting for the server")

    def line(self, sock, buf):
        """One line (up to and with its LF) into `buf`, byte by byte so that neither a line
        without end nor a trickle can hold the node past its deadline; returns its length."""
        view = memoryview(buf)
        n = 0
        while n < len(buf):
            if not self.read(sock, view[n:n + 1]):
                return n
            n += 1
            if buf[n - 1] == 10:
                return n
        raise HttpError("header line too long")

    def _read_response(self, sock, sink):
        buf = bytearray(_MAX_HEADER_LINE)
        n = self.line(sock, buf)
        parts = bytes(buf[:n]).split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HttpError("not an HTTP response: %r" % bytes(buf[:min(n, 40)]))
        try:
            status = int(parts[1])
        except ValueError:
            raise HttpError("not an HTTP status: %r" % parts[1][:8])
        headers = {}
        count = 0
        while True:
            n = self.line(sock, buf)
            if n == 0 or (n <= 2 and buf[0] in (10, 13)):
                break
            count += 1
            if count > _MAX_HEADERS:
                raise HttpError("too many header lines")
            try:
                name, _, value = bytes(buf[:n]).decode().partition(":")
            except UnicodeError:
                raise HttpError("a header line is not text")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", -1))
        except ValueError:
            raise HttpError("bad Content-Length")
        if sink is None and length > _MAX_BODY:
            raise HttpError("response body of %d bytes exceeds %d" % (length, _MAX_BODY))
        if sink is not None:
            sink.head(status, headers)
        chunks = [] if sink is None else None
        received = 0
        view = memoryview(buf)
        while length < 0 or received < length:
            want = 512 if length < 0 else min(512, length - received)
            n = self.read(sock, view[:want])
            if not n:
                break
            received += n
            if sink is not None:
                sink.write(view[:n])
            else:
                if received > _MAX_BODY:
                    raise HttpError("response body exceeds %d bytes" % _MAX_BODY)
                chunks.append(bytes(view[:n]))
        if 0 <= length != received:
            raise HttpError("connection closed after %d of %d body bytes" % (received, length))
        return Response(status, headers, b"".join(chunks) if chunks is not None else b"")
