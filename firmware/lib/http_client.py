"""A small HTTP/1.1 client over sockets for the node: bounded reads, streaming bodies, Range."""

import socket
import time

MAX_HEADER_LINE = 512
MAX_HEADERS = 32
MAX_BODY = 16384


class HttpError(OSError):
    """The server could not be reached or answered with something unreadable."""


class Response:
    """Status, the headers the node cares about (lower-case names) and the body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body


def parse_url(url):
    """(host, port, path prefix) of an http:// URL; https is terminated by the board's stack."""
    if not url.startswith("http://"):
        raise ValueError("only http:// URLs are supported here: " + url)
    rest = url[7:]
    slash = rest.find("/")
    hostport, prefix = (rest, "") if slash < 0 else (rest[:slash], rest[slash:].rstrip("/"))
    if ":" in hostport:
        host, port = hostport.split(":", 1)
        return host, int(port), prefix
    return hostport, 80, prefix


class HttpClient:
    """One request per connection (Connection: close): simple, and nothing to leak on failure."""

    def __init__(self, base_url, timeout_s=10):
        self.host, self.port, self.prefix = parse_url(base_url)
        self.timeout_s = timeout_s
        self._addr = None

    def _connect(self):
        if self._addr is None:
            self._addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        sock = socket.socket()
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(self._addr)
        except OSError as exc:
            sock.close()
            self._addr = None
            raise HttpError("cannot connect to %s:%d (%s)" % (self.host, self.port, exc))
        return sock

    def request(self, method, path, body=b"", headers=None, sink=None, max_body=MAX_BODY,
                deadline_s=None):
        """Send one request. The body goes to `sink` when given, else into Response.body.

        sink: an object whose head(status, headers) sees the status line and headers before
        the body, and whose write(chunk) takes each piece of the body; either may raise to stop
        reading. A body larger than `max_body` without a sink is refused (HttpError), so a
        confused or hostile server cannot exhaust the heap. With `deadline_s` the whole
        exchange must end within that many seconds (a server that trickles is cut off).
        """
        self._deadline = None
        if deadline_s is not None:
            self._deadline = time.ticks_add(time.ticks_ms(), int(deadline_s * 1000))
        sock = self._connect()
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
            return self._read_response(sock, sink, max_body)
        except OSError as exc:
            if isinstance(exc, HttpError):
                raise
            raise HttpError("request %s %s failed: %s" % (method, path, exc))
        finally:
            sock.close()

    def _wait(self, sock):
        """Before each read: raise once the deadline has passed, else wait at most until it."""
        if self._deadline is None:
            return
        left = time.ticks_diff(self._deadline, time.ticks_ms())
        if left <= 0:
            raise HttpError("stalled: no complete answer in time")
        sock.settimeout(min(self.timeout_s, left / 1000))

    def _read_response(self, sock, sink, max_body):
        self._wait(sock)
        line = sock.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HttpError("not an HTTP response: %r" % line[:40])
        try:
            status = int(parts[1])
        except ValueError:
            raise HttpError("not an HTTP status: %r" % parts[1][:8])
        headers = {}
        count = 0
        while True:
            self._wait(sock)
            line = sock.readline()
            if not line or line == b"\r\n":
                break
            count += 1
            if len(line) > MAX_HEADER_LINE or count > MAX_HEADERS:
                raise HttpError("header line too long, or too many")
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "-1"))
        except ValueError:
            raise HttpError("bad Content-Length")
        if sink is None and length > max_body:
            raise HttpError("response body of %d bytes exceeds %d" % (length, max_body))
        if sink is not None:
            sink.head(status, headers)
        chunks = [] if sink is None else None
        received = 0
        buf = bytearray(512)
        view = memoryview(buf)
        while length < 0 or received < length:
            want = 512 if length < 0 else min(512, length - received)
            self._wait(sock)
            n = sock.readinto(view[:want])
            if not n:
                break
            received += n
            if sink is not None:
                sink.write(view[:n])
            else:
                if received > max_body:
                    raise HttpError("response body exceeds %d bytes" % max_body)
                chunks.append(bytes(view[:n]))
        if 0 <= length != received:
            raise HttpError("connection closed after %d of %d body bytes" % (received, length))
        return Response(status, headers, b"".join(chunks) if chunks is not None else b"")
