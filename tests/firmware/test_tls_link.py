"""The node's link to the fleet server over TLS, pinned to the fleet CA (on MicroPython).

Each test stands a real TLS server (Python's ssl, certificates from fleet.core.tls) in front of
the node's own http_client, uplink or enrollment code and shows one attack failing: a server
with a certificate from another CA, a certificate for another host name, a downgrade to plain
HTTP, a node that has no CA to check against, a server that stalls the handshake. A recording
proxy between node and server shows what crossed the wire: never the request in clear.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleet.core.crypto import sign_reply
from fleet.core.tls import TlsFiles, init_tls, make_ca, make_server_cert

MARKER = "lamppost-body-4f2a9c"  # in every request body: it must never cross the wire in clear
DEVICE_KEY = "00" * 32  # the test identity's key: the server signs its replies with it
CHECKIN_REPLY = {"server_time": 0, "next_checkin_s": 60, "config_version": None, "config": None,
                 "commands": [], "update": None}


@dataclass
class Certs:
    fleet: TlsFiles  # the fleet's CA and a server certificate for 127.0.0.1 and localhost
    other_ca: tuple[Path, Path]  # (cert, key) for 127.0.0.1 from a CA the node does not pin
    other_host: tuple[Path, Path]  # (cert, key) from the fleet CA, for another host name


def _write_pair(cert, key, path: Path) -> tuple[Path, Path]:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path.with_suffix(".pem"), path.with_suffix(".key")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    base = tmp_path_factory.mktemp("tls")
    fleet = TlsFiles(base / "fleet")
    init_tls(fleet)
    ca_cert, ca_key = make_ca("Not the fleet's CA")
    foreign = _write_pair(*make_server_cert(ca_cert, ca_key, ["127.0.0.1", "localhost"]),
                          base / "foreign")
    fleet_ca = x509.load_pem_x509_certificate(fleet.ca_cert.read_bytes())
    fleet_key = serialization.load_pem_private_key(fleet.ca_key.read_bytes(), None)
    elsewhere = _write_pair(*make_server_cert(fleet_ca, fleet_key, ["fleet.elsewhere.example"]),
                            base / "elsewhere")
    return Certs(fleet, foreign, elsewhere)


def _context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


class TestServer:
    """An HTTP server on 127.0.0.1 (HTTPS with `ctx`) that answers every request with `reply`.

    Behind a recording proxy: `url` is the proxy's, `wire` every byte the node sent, as it
    crossed the network. `requests` holds what the server read (decrypted), `refused` the
    handshakes that failed. With `stall` it accepts connections and never answers. Replies
    are signed for the request under DEVICE_KEY, as the fleet server signs them.
    """

    __test__ = False

    def __init__(self, ctx: ssl.SSLContext | None, reply: bytes = b"{}",
                 pieces: int = 1, stall: bool = False) -> None:
        self.ctx, self.reply, self.pieces, self.stall = ctx, reply, pieces, stall
        self.requests: list[bytes] = []
        self.refused: list[str] = []
        self.wire = bytearray()
        self.connections = 0
        self._open: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._proxy = socket.create_server(("127.0.0.1", 0))
        for target in (self._serve, self._relay):
            threading.Thread(target=target, daemon=True).start()
        scheme = "https" if ctx else "http"
        self.url = f"{scheme}://127.0.0.1:{self._proxy.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        self._open.append(conn)
        if self.stall:
            return
        conn.settimeout(10)
        try:
            if self.ctx is not None:
                conn = self.ctx.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += conn.recv(4096)
            self.requests.append(head + b"\r\n\r\n" + body)
            nonce = ""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"x-nonce":
                    nonce = value.strip().decode()
            now = str(int(time.time()))
            mac = sign_reply(bytes.fromhex(DEVICE_KEY), nonce, 200, now,
                             hashlib.sha256(self.reply).hexdigest())
            answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"X-Server-Time: %s\r\nX-Reply-Signature: %s\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                      % (now.encode(), mac.encode(), len(self.reply)) + self.reply)
            step = -(-len(answer) // self.pieces)
            for i in range(0, len(answer), step):
                conn.sendall(answer[i:i + step])
                if self.pieces > 1:
                    time.sleep(0.02)
            conn.close()
        except (OSError, ssl.SSLError) as exc:
            self.refused.append(str(exc))
            conn.close()

    def _relay(self) -> None:
        while True:
            try:
                client, _ = self._proxy.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self._server.getsockname())
            self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_node: bool) -> None:
        try:
            while chunk := src.recv(4096):
                if from_node:
                    self.wire += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        for sock in (self._server, self._proxy, *self._open):
            try:
                sock.close()
            except OSError:
                pass


@pytest.fixture
def servers() -> Iterator[list[TestServer]]:
    started: list[TestServer] = []
    yield started
    for server in started:
        server.close()


@pytest.fixture
def serve(servers: list[TestServer]):
    def start(ctx: ssl.SSLContext | None, **kwargs) -> TestServer:
        server = TestServer(ctx, **kwargs)
        servers.append(server)
        return server

    return start


def _pin(certs: Certs, flash: Path) -> None:
    """The fleet CA on the node's flash, as provisioning writes it."""
    (flash / "fleet_ca.der").write_bytes(certs.fleet.ca_der())


def _request(url: str, **client_kw: object) -> str:
    """A node script: one POST through http_client, printing its status and body or error."""
    return (
        "import json\nfrom net.http_client import HttpClient, HttpError\n"
        "try:\n"
        f"    c = HttpClient({url!r}, **{client_kw!r})\n"
        f"    r = c.request('POST', '/device/v1/checkin', {json.dumps({'m': MARKER}).encode()!r},"
        " {'Content-Type': 'application/json'}, deadline_s=5)\n"
        "    print(json.dumps({'status': r.status, 'body': r.body.decode()}))\n"
        "except HttpError as e:\n"
        "    print(json.dumps({'error': str(e)}))\n")


def _uplink(identity: dict, body: str) -> str:
    """A node script with an Uplink for `identity`, its flash root the script's directory."""
    return (
        "import json, time\nfrom net.uplink import Uplink\nfrom core.log import Log\n"
        "class Quiet:\n    def write(self, s):\n        pass\n"
        "log = Log(stream=Quiet())\n"
        f"up = Uplink(json.loads({json.dumps(json.dumps(identity))}), time.time, log=log,"
        " root='.')\n" + body)


IDENTITY = {"device_id": "node-tls", "secret": DEVICE_KEY}


def test_a_request_over_https_to_a_server_the_pinned_ca_signed_goes_through(
        mpy, certs, serve, tmp_path):
    server = serve(_context(certs.fleet.server_cert, certs.fleet.server_key),
                   reply=json.dumps(CHECKIN_REPLY).encode())
    _pin(certs, tmp_path)
    out = mpy(_uplink(dict(IDENTITY, server=server.url),
                      f"print(json.dumps(up.checkin({{'fw_version': {MARKER!r}}})))\n"))
    assert out[-1] == CHECKIN_REPLY
    [request] = server.requests
    assert request.startswith(b"POST /device/v1/checkin HTTP/1.1")
    assert b"X-Signature: " in request and MARKER.encode() in request
    # on the wire, the check-in and its signature were encrypted
    assert server.wire and MARKER.encode() not in server.wire
    assert b"X-Signature" not in server.wire and b"node-tls" not in server.wire


def test_a_reply_that_trickles_in_over_tls_is_read_without_blocking(
        mpy, certs, serve, tmp_path):
    body = json.dumps({"blob": "x" * 12000}).encode()
    server = serve(_context(certs.fleet.server_cert, certs.fleet.server_key), reply=body,
                   pieces=24)
    _pin(certs, tmp_path)
    out = mpy(_request(server.url, root="."))
    assert out[-1] == {"status": 200, "body": body.decode()}


def test_a_server_with_a_certificate_from_another_ca_is_refused(mpy, certs, serve, tmp_path):
    impostor = serve(_context(*certs.other_ca))
    _pin(certs, tmp_path)
    out = mpy(_request(impostor.url, root="."))
    assert "not correctly signed by the trusted CA" in out[-1]["error"]
    assert impostor.requests == [] and impostor.refused  # the handshake ended there
    assert impostor.wire and MARKER.encode() not in impostor.wire  # nothing sent in clear


def test_a_check_in_to_an_impostor_server_fails_and_sends_nothing(mpy, certs, serve, tmp_path):
    impostor = serve(_context(*certs.other_ca), reply=json.dumps(CHECKIN_REPLY).encode())
    _pin(certs, tmp_path)
    out = mpy(_uplink(dict(IDENTITY, server=impostor.url),
                      "from net.http_client import HttpError\n"
                      f"try:\n    up.checkin({{'fw_version': {MARKER!r}}})\n"
                      "    print(json.dumps('checked in'))\n"
                      "except HttpError as e:\n    print(json.dumps(str(e)))\n"))
    assert out[-1].startswith("TLS with 127.0.0.1:")
    assert "not correctly signed by the trusted CA" in out[-1]
    assert impostor.requests == []
    assert MARKER.encode() not in impostor.wire and b"node-tls" not in impostor.wire


def test_a_certificate_for_another_host_name_is_refused(mpy, certs, serve, tmp_path):
    # signed by the fleet CA, but for fleet.elsewhere.example: a certificate lifted from
    # another of the CA's servers does not make its holder this node's server
    elsewhere = serve(_context(*certs.other_host))
    _pin(certs, tmp_path)
    out = mpy(_request(elsewhere.url, root="."))
    assert "does not match" in out[-1]["error"]
    assert elsewhere.requests == [] and MARKER.encode() not in elsewhere.wire


def test_a_plain_http_url_is_refused_unless_the_identity_allows_it(mpy, serve, tmp_path):
    plain = serve(None, reply=json.dumps(CHECKIN_REPLY).encode())
    out = mpy(_request(plain.url))
    assert out[-1]["error"].startswith("plain http:// refused")
    script = ("from net.http_client import HttpError\n"
              "try:\n    print(json.dumps(up.checkin({'fw_version': '1'})))\n"
              "except HttpError as e:\n    print(json.dumps(str(e)))\n")
    refused = mpy(_uplink(dict(IDENTITY, server=plain.url), script))
    assert refused[-1].startswith("plain http:// refused")
    assert plain.connections == 0  # the node did not even connect
    # a lab or test server: the identity says so in as many words
    allowed = mpy(_uplink(dict(IDENTITY, server=plain.url, insecure_http=True), script))
    assert allowed[-1] == CHECKIN_REPLY
    assert len(plain.requests) == 1
    assert mpy(_request(plain.url, insecure_http=True))[-1]["status"] == 200


def test_a_node_with_no_pinned_ca_refuses_https(mpy, certs, serve, tmp_path):
    server = serve(_context(certs.fleet.server_cert, certs.fleet.server_key))
    out = mpy(_uplink(dict(IDENTITY, server=server.url),
                      "from net.http_client import HttpError\n"
                      "try:\n    up.checkin({})\n    print(json.dumps('checked in'))\n"
                      "except HttpError as e:\n    print(json.dumps(str(e)))\n"))
    assert out[-1] == "the node has no pinned CA (./fleet_ca.der): https refused"
    assert server.connections == 0


def test_an_enrollment_code_is_never_sent_to_an_impostor_or_in_clear(mpy, certs, serve,
                                                                     tmp_path):
    impostor = serve(_context(*certs.other_ca))
    plain = serve(None)
    _pin(certs, tmp_path)
    script = (
        "import json\nfrom net import enroll\nfrom core.log import Log\n"
        "class Quiet:\n    def write(self, s):\n        pass\n"
        "log = Log(stream=Quiet())\n"
        "print(json.dumps([enroll.redeem('.', log=log), log.recent()[-1]]))\n")
    for server, cause in ((impostor, "not correctly signed by the trusted CA"),
                          (plain, "plain http:// refused")):
        (tmp_path / "enrollment.json").write_text(json.dumps(
            {"code": MARKER, "server": server.url, "pole_id": "P-1"}))
        result, line = mpy(script)[-1]
        assert result == "retry" and "enroll_retry" in line and cause in line
        assert server.requests == [] and MARKER.encode() not in server.wire
    assert plain.connections == 0
    assert (tmp_path / "enrollment.json").exists() and not (tmp_path / "identity.json").exists()


def test_a_server_that_stalls_the_handshake_cannot_hold_the_node(mpy, certs, serve, tmp_path):
    staller = serve(_context(certs.fleet.server_cert, certs.fleet.server_key), stall=True)
    _pin(certs, tmp_path)
    out = mpy(
        "import json, time\nfrom net.http_client import HttpClient, HttpError\n"
        "t = time.ticks_ms()\n"
        "try:\n"
        f"    HttpClient({staller.url!r}, root='.').request("
        "'GET', '/x', deadline_s=1)\n"
        "    print(json.dumps('answered'))\n"
        "except HttpError as e:\n"
        "    print(json.dumps([str(e), time.ticks_diff(time.ticks_ms(), t)]))\n")
    error, elapsed_ms = out[-1]
    assert error.startswith("TLS with 127.0.0.1:")
    assert elapsed_ms < 2500
