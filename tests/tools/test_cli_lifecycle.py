"""`lamplighter demo` and `lamplighter server run` as an operator starts them: a taken port is
refused at once naming it and --port; SIGTERM or Ctrl-C stops every child process (the server,
its workers, the emulated lampposts) and the command exits cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tools.emulator.fleet_process import free_port

ROOT = Path(__file__).resolve().parents[2]


def _lamplighter(args: list[str], data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LAMPLIGHTER_DATA_DIR=str(data_dir), COLUMNS="200",
               PYTHONPATH=str(ROOT))
    env.pop("LAMPLIGHTER_DATABASE_URL", None)
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tools.cli.main", *args], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every live descendant of `root`: pid -> start time (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry.name))
                starts[int(entry.name)] = st[2]
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def _alive(pid: int, start: str) -> bool:
    st = _stat(pid)
    return st is not None and st[2] == start and st[1] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture
def taken_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("argv", [["demo", "--nodes", "0"], ["server", "run"]],
                         ids=["demo", "server run"])
def test_a_taken_port_is_refused_at_once(tmp_path, taken_port, argv):
    started = time.monotonic()
    proc = _lamplighter([*argv, "--port", str(taken_port)], tmp_path / "var", tmp_path / "log")
    assert proc.wait(30) == 2
    assert time.monotonic() - started < 30
    text = " ".join((tmp_path / "log").read_text().split())
    assert f"port {taken_port} on 127.0.0.1 is already in use" in text
    assert f"choose another port with --port N (e.g. --port {taken_port + 1})" in text
    assert "Traceback" not in text
    assert not (tmp_path / "var").exists()  # nothing started, nothing made


def _wait_for(predicate, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s; log:\n{log.read_text()[-3000:]}")


def _stop_and_check(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> None:
    children = _descendants(proc.pid)
    assert children, "no child processes to stop"
    proc.send_signal(sig)
    try:
        code = proc.wait(40)
    except subprocess.TimeoutExpired:
        for pid in list(children) + [proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        raise AssertionError(f"did not exit on {sig.name}: {log.read_text()[-3000:]}") from None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p, s) for p, s in children.items()):
        time.sleep(0.1)
    left = {p: _cmdline(p) for p, s in children.items() if _alive(p, s)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphans after {sig.name}: {left}"
    assert code == 0, f"exit {code} after {sig.name}: {log.read_text()[-3000:]}"
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_demo_stops_its_server_and_lampposts(tmp_path, sig):
    log = tmp_path / "log"
    proc = _lamplighter(["demo", "--nodes", "2", "--port", str(free_port())], tmp_path / "var",
                        log)
    try:
        def all_up() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            lines = [_cmdline(p) for p in _descendants(proc.pid)]
            return (sum("micropython" in c for c in lines) == 2
                    and any("uvicorn" in c for c in lines))
        _wait_for(all_up, 120, "the server and two lampposts were not running", log)
        _stop_and_check(proc, sig, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "emulated lampposts powered off" in text and "fleet server stopped" in text


@pytest.mark.slow
def test_sim_powers_its_lampposts_off_on_sigterm(tmp_path, live_server):
    log = tmp_path / "log"
    env = {"LAMPLIGHTER_SERVER": live_server.url, "LAMPLIGHTER_TOKEN": live_server.operator_token,
           "LAMPLIGHTER_CA": live_server.verify}
    os.environ.update(env)
    try:
        proc = _lamplighter(["sim", "--nodes", "2", "--root", str(tmp_path / "sim")],
                            tmp_path / "var", log)
    finally:
        for name in env:
            os.environ.pop(name)
    try:
        def both_up() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            return sum("micropython" in _cmdline(p) for p in _descendants(proc.pid)) == 2
        _wait_for(both_up, 120, "two lampposts were not running", log)
        _stop_and_check(proc, signal.SIGTERM, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "emulated lampposts powered off" in log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_server_run_stops_its_workers(tmp_path, sig):
    log = tmp_path / "log"
    port = free_port()
    proc = _lamplighter(["server", "run", "--behind-tls-proxy", "--workers", "2", "--port",
                         str(port)], tmp_path / "var", log)
    try:
        def answers() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/v1/healthz",
                                 timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        _wait_for(answers, 60, "the server did not answer", log)
        _wait_for(lambda: len(_descendants(proc.pid)) >= 2, 30, "two workers were not up", log)
        _stop_and_check(proc, sig, log)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_demo_on_a_database_a_newer_version_migrated(tmp_path):
    import sqlite3

    from fleet.core.db import migrate

    data_dir = tmp_path / "var"
    data_dir.mkdir()
    migrate(f"sqlite:///{data_dir / 'fleet.db'}")
    with sqlite3.connect(data_dir / "fleet.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    log = tmp_path / "log"
    proc = _lamplighter(["demo", "--nodes", "0", "--port", str(free_port())], data_dir, log)
    assert proc.wait(60) == 2
    text = " ".join(log.read_text().split())
    assert f"cannot migrate the demo's database in {data_dir}" in text
    assert "a newer version of Lamplighter migrated it" in text and "Traceback" not in text
