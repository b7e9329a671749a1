"""Start a fleet server in a child process (for tests, benchmarks, the simulator and the demo)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session

from fleet.core.db import make_engine, migrate
from fleet.core.tls import TlsFiles, init_tls
from fleet.tokens import create_token


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FleetServer:
    """A running server: its URL, database, an operator token, and the child process.

    `tls` holds the CA and server certificate it serves (None: plain HTTP). Talk to it with
    `client()`, or pass `verify=server.ssl_context` (or `server.verify`) to httpx.
    """

    url: str
    database_url: str
    operator_token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    tls: TlsFiles | None = None

    @property
    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}

    @property
    def verify(self) -> str | bool:
        """What a client trusts to reach this server: the CA's PEM path, or True (no TLS)."""
        return str(self.tls.ca_cert) if self.tls else True

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | bool:
        """`verify` as an SSL context trusting only the server's CA (True without TLS)."""
        return ssl.create_default_context(cafile=str(self.tls.ca_cert)) if self.tls else True

    @property
    def ca_der(self) -> bytes | None:
        """The CA a node pins (DER), or None when the server speaks plain HTTP."""
        return self.tls.ca_der() if self.tls else None

    def client(self, **kw: Any) -> httpx.Client:
        """An httpx client for this server (base URL set, verifying against its CA)."""
        kw.setdefault("base_url", self.url)
        kw.setdefault("verify", self.ssl_context)
        kw.setdefault("timeout", 30)
        return httpx.Client(**kw)

    def register(self, pole_id: str, **fields: object) -> dict:
        """Register a node through the API; returns its credentials."""
        body = {"pole_id": pole_id, "board": "emulated", **fields}
        resp = httpx.post(f"{self.url}/api/v1/devices", json=body, headers=self.operator_headers,
                          verify=self.ssl_context, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_fleet_server(data_dir: Path, *, database_url: str | None = None,
                       port: int | None = None, workers: int = 1,
                       extra_env: dict[str, str] | None = None,
                       host: str = "127.0.0.1", tls: bool = True) -> FleetServer:
    """Migrate the database, create an operator token, start uvicorn and wait until it answers.

    With `tls` (the default) the server speaks HTTPS with the certificate in DATA_DIR/tls,
    made there (a CA and a server certificate for 127.0.0.1 and localhost) when it is absent;
    its URL is then https://127.0.0.1:PORT. `tls=False` serves plain HTTP, as behind a TLS
    terminator.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{(data_dir / 'fleet.db').resolve()}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        token = create_token(session, "local-operator", "operator")
    engine.dispose()
    port = port or free_port()
    env = dict(os.environ, LAMPLIGHTER_DATABASE_URL=url, LAMPLIGHTER_DATA_DIR=str(data_dir),
               **(extra_env or {}))
    log_path = data_dir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "uvicorn", "fleet.app:create_app", "--factory", "--host", host,
           "--port", str(port), "--workers", str(workers), "--no-access-log",
           "--log-level", "warning"]
    files = None
    if tls:
        files = TlsFiles(data_dir / "tls")
        if not files.exists():
            init_tls(files)
        cmd += ["--ssl-certfile", str(files.server_cert), "--ssl-keyfile", str(files.server_key)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    # the URL names 127.0.0.1, which the certificate covers, whatever address uvicorn binds
    scheme = "https" if tls else "http"
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host
    server = FleetServer(url=f"{scheme}://{url_host}:{port}", database_url=url,
                         operator_token=token, process=proc, log_path=log_path, env=env,
                         tls=files)
    try:
        _wait_until_it_answers(server)
    except BaseException:  # a refusal, or Ctrl-C/SIGTERM while waiting: no orphan left behind
        server.stop()
        raise
    return server


def _wait_until_it_answers(server: FleetServer) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"fleet server exited: {server.log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/api/v1/healthz", timeout=1,
                         verify=server.ssl_context).status_code == 200:
                return
        except httpx.HTTPError as exc:
            if _certificate_refused(exc):
                raise RuntimeError(f"the fleet server's certificate does not verify against "
                                   f"{server.verify}: {exc}") from None
            time.sleep(0.1)
    raise RuntimeError("fleet server did not answer within 30 s: "
                       f"{server.log_path.read_text()[-2000:]}")


def _certificate_refused(exc: BaseException) -> bool:
    """True when a TLS handshake failed on certificate verification (not a refused port)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)
