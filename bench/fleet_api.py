"""Fleet API throughput: readings/s and check-ins/s over HTTP beside a raw PostgreSQL COPY.

One run starts two uvicorn server processes against a fresh PostgreSQL database and then against a
fresh SQLite file, registers the nodes, and drives them from client processes that send requests
prepared (signed) before the clock starts, over keep-alive connections; the clients run on uvloop,
like the servers. Servers and clients share the machine's cores, so the figures are what the
whole box does, clients included.

Every check-in is a node reporting its state with nothing waiting for it, the common case: on
PostgreSQL the servers settle those on their quick path, and the run prints how many each SQL
statement carried. SQLite takes every check-in through the full path in the thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import uvloop
from sqlalchemy import select, text
from sqlmodel import Session

from bench.report import Figure
from fleet.core.db import make_engine, migrate
from fleet.models import Device
from fleet.registry import register_devices
from fleet.schemas import DeviceRegistration
from fleet.telemetry.metrics import CATALOGUE
from tests.rigs.device_signing import signed_headers
from tests.rigs.scratch_postgres import scratch_postgres

NODES = 200
BATCH = 100
INGEST_S = 8.0
CHECKIN_S = 6.0
CLIENT_PROCS = 2
CONNS_PER_PROC = 8
COPY_ROWS = 300_000
INGEST_TARGET = 0.15  # of the COPY rate
CHECKIN_TARGET = 2000.0
_METRICS = list(CATALOGUE.values())
_ROOT = Path(__file__).resolve().parent.parent
# The app factory the servers run; point it elsewhere to measure a server-side change.
APP_FACTORY = os.environ.get("LAMPLIGHTER_BENCH_APP", "fleet.app:create_app")
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Node:
    uid: str
    secret: str
    db_id: int


# --- databases and servers ------------------------------------------------------------------

@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, migrated PostgreSQL database (dropped afterwards); yields its SQLAlchemy URL."""
    with scratch_postgres("lamplighter_bench") as url:
        migrate(url)
        yield url


@contextlib.contextmanager
def fresh_sqlite() -> Iterator[str]:
    """A new, migrated SQLite file in a temporary directory; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="lamplighter-bench-") as tmp:
        url = f"sqlite:///{tmp}/fleet.db"
        migrate(url)
        yield url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def servers(url: str, log: Any, count: int = 2) -> Iterator[list[int]]:
    """`count` uvicorn processes serving the fleet app on `url` (output to `log`); their ports."""
    path = os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "LAMPLIGHTER_DATABASE_URL": url, "PYTHONPATH": path}
    ports = [_free_port() for _ in range(count)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "uvicorn", APP_FACTORY, "--factory", "--port", str(p),
         "--no-access-log", "--log-level", "warning"], env=env, cwd=_ROOT,
        stdout=log, stderr=subprocess.STDOUT)
        for p in ports]
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/healthz",
                                                timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise RuntimeError(f"fleet server on port {port} did not start") from None
                    time.sleep(0.1)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def register_nodes(url: str, count: int = NODES) -> list[Node]:
    """Register `count` nodes straight through the provisioning code (not part of the timing)."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            regs = [DeviceRegistration(pole_id=f"B-{i:05d}", district=f"d{i % 8}",
                                       group=f"g{i % 4}", lat=51.4 + i * 1e-3, lon=-0.1,
                                       board="emulated") for i in range(count)]
            creds = register_devices(session, regs, enrollment=False, enrollment_ttl_days=1,
                                     actor="bench")
            ids = dict(session.execute(select(Device.uid, Device.id)).tuples().all())
        return [Node(c.device_id, c.secret, ids[c.device_id]) for c in creds]
    finally:
        engine.dispose()


# --- requests -------------------------------------------------------------------------------

def reading_rows(node_index: int, seq0: int, now: int) -> list[tuple[int, int, str, float]]:
    """BATCH readings (seq, ts, metric, value) of one node, valid and deterministic."""
    rows = []
    for k in range(BATCH):
        seq = seq0 + k
        metric = _METRICS[(seq + node_index) % len(_METRICS)]
        span = metric.high - metric.low
        value = metric.low + (seq * 7919 % 1000) / 1000 * span
        rows.append((seq, now - 120 + k, metric.name, float(round(value))))
    return rows


def _http_request(path: str, node: Node, body: bytes) -> bytes:
    headers = signed_headers(node.uid, node.secret, "POST", path, body)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            f"{head}\r\n").encode() + body


def build_requests(kind: str, nodes: list[Node], worker: int, workers: int,
                   count: int) -> list[bytes]:
    """This worker's share of signed requests; request g goes to node g % len(nodes)."""
    now = int(time.time())
    out = []
    for k in range(count):
        g = k * workers + worker
        node_index = g % len(nodes)
        node = nodes[node_index]
        if kind == "ingest":
            rows = reading_rows(node_index, (g // len(nodes)) * BATCH, now)
            body = json.dumps({"readings": [{"seq": s, "ts": t, "m": m, "v": v}
                                            for s, t, m, v in rows]}).encode()
            out.append(_http_request("/device/v1/telemetry", node, body))
        else:
            body = json.dumps({"fw_version": "1.2.0", "uptime_s": 3600 + g, "mem_free": 61000,
                               "rssi": -67, "boot_reason": "power_on", "config_version": 0,
                               "update_state": "idle", "queue_len": g % 50}).encode()
            out.append(_http_request("/device/v1/checkin", node, body))
    return out


# --- load generator -------------------------------------------------------------------------

async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return int(head[9:12]), await reader.readexactly(length)


async def _connection(port: int, queue: list[bytes], stop_at: float,
                      tally: dict[str, Any]) -> None:
    """One keep-alive connection sending requests until the queue or the time runs out.

    A server closes the connection after a 500; that counts as a failure and we reconnect.
    """
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while queue and time.time() < stop_at:
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", port)
            status, body = await asyncio.wait_for(_exchange(*conn, queue.pop()),
                                                  REQUEST_TIMEOUT_S)
        except (asyncio.IncompleteReadError, OSError, TimeoutError) as exc:
            tally["failed"] += 1
            tally.setdefault("sample", f"connection: {exc!r}")
            if conn is not None:
                conn[1].close()
            conn = None
            await asyncio.sleep(0.05)
            continue
        tally["last"] = time.time()
        if status == 200:
            tally["ok"] += 1
            if b'"stored"' in body:
                tally["stored"] += json.loads(body)["stored"]
        else:
            tally["failed"] += 1
            tally.setdefault("sample", f"{status} {body[:200]!r}")
    if conn is not None:
        conn[1].close()


def _worker(kind: str, nodes: list[Node], worker: int, workers: int, count: int,
            ports: list[int], ready: Any, go: Any, window: Any, results: Any) -> None:
    queue = build_requests(kind, nodes, worker, workers, count)
    queue.reverse()
    ready.put(worker)
    go.wait()
    start_at, stop_at = float(window[0]), float(window[1])
    tally: dict[str, Any] = {"ok": 0, "failed": 0, "stored": 0, "last": start_at}

    async def drive() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(_connection(ports[c % len(ports)], queue, stop_at, tally)
                               for c in range(CONNS_PER_PROC)))

    uvloop.run(drive())  # the server runs on uvloop too: a lighter client leaves it more CPU
    results.put(tally)


def drive_load(kind: str, nodes: list[Node], ports: list[int], seconds: float,
               per_worker: int) -> dict[str, Any]:
    """Run CLIENT_PROCS client processes for `seconds`; returns totals and the elapsed time."""
    ctx = mp.get_context("fork")
    window = ctx.Array("d", 2)  # start and stop, epoch s, set once every client is ready
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(kind, nodes, w, CLIENT_PROCS, per_worker, ports,
                                               ready, go, window, results))
             for w in range(CLIENT_PROCS)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    window[0] = time.time() + 0.2
    window[1] = window[0] + seconds
    go.set()
    tallies = [results.get(timeout=seconds + 60) for _ in procs]
    for proc in procs:
        proc.join()
    total = {"ok": sum(t["ok"] for t in tallies), "failed": sum(t["failed"] for t in tallies),
             "stored": sum(t["stored"] for t in tallies),
             "elapsed": max(max(t["last"] for t in tallies) - window[0], 1e-3),
             "sample": next((t["sample"] for t in tallies if "sample" in t), "")}
    if total["failed"]:
        print(f"{kind}: {total['failed']} requests failed, e.g. {total['sample']}")
    return total


# --- measurements ---------------------------------------------------------------------------

def copy_rate(url: str, rows: int = COPY_ROWS) -> float:
    """Rows/s of a raw COPY of readings like the benchmark's into a scratch copy of `reading`."""
    now = int(time.time())
    lines = []
    for g in range(rows // BATCH):
        node_index = g % NODES
        for seq, ts, metric, value in reading_rows(node_index, (g // NODES) * BATCH, now):
            lines.append(f"{node_index + 1}\t{seq}\t{ts}\t{metric}\t{value}\t{now}.5\n")
    data = "".join(lines).encode()
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE reading_copy (LIKE reading INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY reading_copy (device_id, seq, ts, metric, "
                                            "value, received_at) FROM STDIN") as copy:
            for i in range(0, len(data), 1 << 20):
                copy.write(data[i:i + (1 << 20)])
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE reading_copy")
        conn.commit()
    return rows / elapsed


def server_errors(log_text: str) -> Counter[str]:
    """Exception lines the servers logged, counted (e.g. SQLite's 'database is locked')."""
    found: Counter[str] = Counter()
    for line in log_text.splitlines():
        if re.match(r"^[\w.]+(Error|Exception): ", line):
            found[line[:160]] += 1
    return found


def measure(url: str) -> tuple[float, float, dict[str, Any]]:
    """Ingest readings/s and check-ins/s through two servers on `url`."""
    nodes = register_nodes(url)
    with tempfile.TemporaryFile("w+") as log:
        with servers(url, log) as ports:
            ingest = drive_load("ingest", nodes, ports, INGEST_S, per_worker=5000)
            checkin = drive_load("checkin", nodes, ports, CHECKIN_S, per_worker=15000)
        log.seek(0)
        log_text = log.read()
        for line, n in server_errors(log_text).most_common(5):
            print(f"server logged {n}×: {line}")
    quick = [tuple(map(int, m)) for m in re.findall(
        r"quick check-ins: (\d+) settled in (\d+) statements", log_text)]
    if quick:
        settled, statements = (sum(col) for col in zip(*quick, strict=True))
        print(f"quick check-in path: {settled} settled in {statements} statements "
              f"({settled / statements:.1f} per statement), the rest by the full path")
    engine = make_engine(url)
    with engine.connect() as conn:
        in_db = conn.execute(text("SELECT count(*) FROM reading")).scalar_one()
    engine.dispose()
    if in_db != ingest["stored"]:
        print(f"warning: servers reported {ingest['stored']} stored, database holds {in_db}")
    return (ingest["stored"] / ingest["elapsed"], checkin["ok"] / checkin["elapsed"],
            {"ingest": ingest, "checkin": checkin})


def run() -> list[Figure]:
    """Measure, print the details, and return the figures."""
    with fresh_postgres() as pg_url:
        pg_ingest, pg_checkin, pg_detail = measure(pg_url)
        copy = copy_rate(pg_url)
    with fresh_sqlite() as lite_url:
        lite_ingest, lite_checkin, lite_detail = measure(lite_url)
    for name, detail in (("PostgreSQL", pg_detail), ("SQLite", lite_detail)):
        for kind, t in detail.items():
            print(f"{name} {kind}: {t['ok']} ok, {t['failed']} failed in {t['elapsed']:.1f} s")
    print(f"load: {CLIENT_PROCS} client processes × {CONNS_PER_PROC} keep-alive connections, "
          f"sharing {os.cpu_count()} cores with the 2 servers and the database")
    failed = sum(t["failed"] for d in (pg_detail, lite_detail) for t in d.values())
    both = "2 servers, batches of 100"
    return [
        Figure(f"API ingest → PostgreSQL ({both})", pg_ingest, "readings/s",
               "raw COPY", copy, f"≥ {INGEST_TARGET:.0%} of COPY",
               pg_ingest >= INGEST_TARGET * copy),
        Figure(f"API ingest → SQLite ({both})", lite_ingest, "readings/s", "raw COPY (PG)", copy),
        Figure("raw PostgreSQL COPY, same rows", copy, "rows/s"),
        Figure("check-ins → PostgreSQL (2 servers)", pg_checkin, "check-ins/s", "", None,
               f"≥ {CHECKIN_TARGET:,.0f}/s", pg_checkin >= CHECKIN_TARGET),
        Figure("check-ins → SQLite (2 servers)", lite_checkin, "check-ins/s"),
        Figure("failed requests (all runs)", failed, "requests", target="0",
               met=failed == 0),
    ]
