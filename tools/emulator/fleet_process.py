"""Start a fleet server in a child process (for tests, benchmarks, the simulator and the demo)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlmodel import Session

from fleet.core.db import make_engine, migrate
from fleet.tokens import create_token


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FleetServer:
    """A running server: its URL, database, an operator token, and the child process."""

    url: str
    database_url: str
    operator_token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}

    def register(self, pole_id: str, **fields: object) -> dict:
        """Register a node through the API; returns its credentials."""
        body = {"pole_id": pole_id, "board": "emulated", **fields}
        resp = httpx.post(f"{self.url}/api/v1/devices", json=body, headers=self.operator_headers)
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
                       host: str = "127.0.0.1") -> FleetServer:
    """Migrate the database, create an operator token, start uvicorn and wait until it answers."""
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
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = FleetServer(url=f"http://{host}:{port}", database_url=url, operator_token=token,
                         process=proc, log_path=log_path, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fleet server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/api/v1/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"fleet server did not answer within 30 s: {log_path.read_text()[-2000:]}")
