"""A man in the middle between nodes and the fleet server: it ends the node's TLS with its own
certificate, forwards each request to the real server, and lets a test alter the reply.

Presenting a certificate from another CA, it is the attacker on the street's network; with
one from the fleet's CA, it is a TLS terminator that has been taken over (authenticated
replies must still hold there). Every exchange it forwarded is kept, as the node sent and
received it.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


@dataclass
class Reply:
    """A reply on its way to the node; a tamper function may change any part of it."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    """One request the proxy saw, and what it sent back."""

    method: str
    path: str
    request_headers: dict[str, str]
    request_body: bytes
    reply: Reply
    tampered: bool = False


Tamper = Callable[[Exchange, Reply], Reply | None]

_HOP_BY_HOP = {"content-length", "connection", "transfer-encoding", "content-encoding"}


@dataclass
class MitmProxy:
    """Listens on 127.0.0.1 with TLS (`cert_file`, `key_file`); forwards to `upstream`,
    verifying it against `upstream_verify`; `tamper(exchange, reply)` returns a changed reply
    (or None to pass it on). Replies may also be served from `replay` (a recorded reply)."""

    upstream: str
    upstream_verify: object  # what httpx takes as verify=
    cert_file: Path
    key_file: Path
    tamper: Tamper | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    handshake_failures: int = 0
    blocked: bool = False  # drop every request unforwarded (the path is cut)

    def __post_init__(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.blocked:
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
                resp = httpx.request(method, proxy.upstream + self.path, content=body,
                                     headers=headers, verify=proxy.upstream_verify, timeout=30)
                reply = Reply(resp.status_code, {k: v for k, v in resp.headers.items()
                                                 if k.lower() not in _HOP_BY_HOP}, resp.content)
                exchange = Exchange(method, self.path, dict(self.headers), body, reply)
                if proxy.tamper is not None:
                    changed = proxy.tamper(exchange, reply)
                    if changed is not None:
                        exchange.reply, exchange.tampered = changed, True
                proxy.exchanges.append(exchange)
                out = exchange.reply
                self.send_response(out.status)
                for name, value in out.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(out.body)
                self.close_connection = True

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):  # the TLS handshake, where a node refuses our certificate
                sock, addr = self.socket.accept()
                try:
                    return ctx.wrap_socket(sock, server_side=True), addr
                except (ssl.SSLError, OSError):
                    proxy.handshake_failures += 1
                    sock.close()
                    raise

            def handle_error(self, request, client_address) -> None:
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="mitm").start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def certificate_files(directory: Path, *, ca=None, hosts=("127.0.0.1", "localhost")
                      ) -> tuple[Path, Path]:
    """A server certificate and key for `hosts`, signed by `ca` ((cert, key) from
    fleet.core.tls.make_ca) or by a CA of its own; written under `directory`."""
    from cryptography.hazmat.primitives import serialization

    from fleet.core.tls import make_ca, make_server_cert

    ca_cert, ca_key = ca or make_ca("Not the fleet's CA")
    cert, key = make_server_cert(ca_cert, ca_key, list(hosts))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "mitm.pem", directory / "mitm.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def fleet_ca(tls_dir: Path):
    """The fleet CA's certificate and key (a terminator the fleet itself issued for)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), None)
    return cert, key
