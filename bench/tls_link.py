"""TLS on the node's link: heap, handshake time and bytes on the wire, against plain HTTP.

The node's uplink (firmware/lib, compiled to .mpy as a release ships it) runs on the
MicroPython unix port against two live fleet servers started in the same run: one serving
HTTPS (the fleet CA pinned on the node as fleet_ca.der, as provisioning writes it) and one
serving plain HTTP (the identity says "insecure_http", as for a lab server). Every figure is
the TLS link beside the same exchange over plain HTTP.

Heap: the smallest heap (-X heapsize, bisection in 1 KB steps) in which a process builds the
Uplink, checks in once and uploads one telemetry batch of 20 records; and, in a process with
room to spare, the heap after a collection at rest before and after those exchanges, and
around the HTTP client's connect (patched in the script, not in the firmware) the heap the
open connection holds after a collection and what the connect allocated (garbage included).

This port builds mbedTLS without MicroPython's allocator hooks (MICROPY_MBEDTLS_CONFIG_BARE_METAL
is off): its record buffers (16 KB in, 4 KB out) and handshake state come from the C heap,
which neither -X heapsize nor gc.mem_alloc() sees. On an ESP32 they come from the ESP-IDF
heap beside MicroPython's, sized by that build's mbedTLS configuration. A small malloc
counter (LD_PRELOAD, compiled here with the host's C compiler; the figures are left out
without one) reads the C heap in use and its peak at the same points, so the handshake's cost
is printed on both heaps.

The unix port is 64-bit: the GC-heap figures are up to twice an ESP32's; mbedTLS's record
buffers do not depend on the word size. Times are for loopback on the host, where a handshake is
computed far faster than on an ESP32; they compare TLS with plain TCP, not the device's speed.

Time: the median of 20 connects (TCP connect, and for TLS the handshake with certificate
verification) and of 5 whole check-ins (sign, connect, request, reply, signature check), timed
inside the MicroPython process against the server directly, with the part spent reading the
reply. When these figures were first set, most of a TLS check-in's time was that read, not
the handshake: the client reads the status line and headers a byte at a time, each behind a
poll of the TLS socket, which on this port waited about a millisecond even when mbedTLS
already held the byte; over plain TCP the same poll returns at once.

Wire: a relay in front of each server (tests/rigs/netfault.FaultProxy) counts every byte it
forwards, each direction apart, per connection (TCP payload; IP and TCP headers are not
counted); the node makes one connection per request.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.report import Figure
from ota.bundle import compile_app
from tests.rigs.micropython import micropython_command, micropython_env, run_micropython
from tests.rigs.netfault import FaultProxy
from tools.emulator.fleet_process import FleetServer, start_fleet_server
from tools.firmware_tree import FIRMWARE_LIB

RECORDS = 20
CONNECTS = 20
CHECKINS = 5
PROBE_HEAP_KB = 256

# Built per run: the uplink, one check-in and one batch of RECORDS records, or it fails.
EXCHANGE = """
import gc, json, time
from net.uplink import Uplink
up = Uplink(json.load(open("identity.json")), time.time, root=".")
gc.collect()
rest_before = gc.mem_alloc()
assert up.checkin({"fw_version": "bench"}) is not None
now = int(time.time())
recs = [(i, ('{"m":"lux","v":%d,"ts":%d}' % (i, now)).encode()) for i in range(1, RECORDS + 1)]
assert up.post_telemetry(recs) == RECORDS
recs = None
gc.collect()
print(json.dumps({"rest_before": rest_before, "rest_after": gc.mem_alloc()}))
"""

# The same exchanges with heap readings: the HTTP client's connect is wrapped in this process.
# os.getenv("C_HEAP") answers "live peak" from the malloc counter when it is preloaded.
PROBE = """
import gc, json, os, sys, time
from net.uplink import Uplink
from net import http_client
def c_heap():
    v = os.getenv("C_HEAP")
    return [int(x) for x in v.split()] if v else None
connects = []
_connect = http_client.HttpClient.connect
def connect(self):
    gc.collect()
    before, c_before = gc.mem_alloc(), c_heap()
    sock = _connect(self)
    allocated, c_open = gc.mem_alloc() - before, c_heap()
    gc.collect()
    connects.append({"held": gc.mem_alloc() - before, "allocated": allocated,
                     "c_before": c_before, "c_open": c_open})
    return sock
http_client.HttpClient.connect = connect
up = Uplink(json.load(open("identity.json")), time.time, root=".")
gc.collect()
c_rest_before = c_heap()
assert up.checkin({"fw_version": "bench"}) is not None
now = int(time.time())
recs = [(i, ('{"m":"lux","v":%d,"ts":%d}' % (i, now)).encode()) for i in range(1, RECORDS + 1)]
assert up.post_telemetry(recs) == RECORDS
recs = None
gc.collect()
c_rest_after = c_heap()
import ssl
v = sys.implementation.version
print(json.dumps({"c_rest_before": c_rest_before, "c_rest_after": c_rest_after,
                  "connects": connects, "mbedtls": ssl.MBEDTLS_VERSION,
                  "micropython": "%d.%d.%d" % v[:3] + ("-" + v[3] if len(v) > 3 and v[3] else "")
                                 + " (" + sys.version.split("MicroPython ")[-1].split(" on ")[0]
                                 + ")"}))
"""

# Median connect (handshake) and whole check-in times, in-process.
TIMING = """
import gc, json, time
from net.uplink import Uplink
from net.http_client import HttpClient
reading = []
_read_response = HttpClient._read_response
def read_response(self, sock, sink):
    t = time.ticks_us()
    try:
        return _read_response(self, sock, sink)
    finally:
        reading.append(time.ticks_diff(time.ticks_us(), t))
HttpClient._read_response = read_response
ident = json.load(open("identity.json"))
up = Uplink(ident, time.time, root=".")
assert up.checkin({"fw_version": "bench"}) is not None  # the address resolved, code warm
def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
connect = []
for _ in range(CONNECTS):
    client = HttpClient(ident["server"], insecure_http=up.insecure_http, root=up.root)
    client.addr = up.addr
    gc.collect()
    t = time.ticks_us()
    sock = client.connect()
    connect.append(time.ticks_diff(time.ticks_us(), t))
    sock.close()
checkin = []
reading.clear()
for _ in range(CHECKINS):
    gc.collect()
    t = time.ticks_us()
    assert up.checkin({"fw_version": "bench"}) is not None
    checkin.append(time.ticks_diff(time.ticks_us(), t))
print(json.dumps({"connect_ms": median(connect) / 1000, "checkin_ms": median(checkin) / 1000,
                  "reply_ms": median(reading) / 1000}))
"""

# A malloc counter for the C heap: LD_PRELOAD; os.getenv("C_HEAP") reads "live peak" in bytes
# (what malloc_usable_size counts) and starts a new peak window at the current level.
C_HEAP_COUNTER = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static char *(*real_getenv)(const char *);
static long live, peak;
static char answer[64];
static char early[4096];  /* calloc before dlsym has answered (dlsym itself may calloc) */
static size_t early_used;

#define EARLY(p) ((char *)(p) >= early && (char *)(p) < early + sizeof early)

static void init(void) {
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_getenv = dlsym(RTLD_NEXT, "getenv");
}

static void *counted(void *p) {
    if (p) {
        live += malloc_usable_size(p);
        if (live > peak) peak = live;
    }
    return p;
}

void *malloc(size_t n) {
    if (!real_malloc) init();
    return counted(real_malloc(n));
}

void *calloc(size_t a, size_t b) {
    if (!real_calloc) {
        size_t n = (a * b + 15) & ~(size_t)15;
        if (early_used + n > sizeof early) return NULL;
        void *p = early + early_used;
        early_used += n;
        memset(p, 0, n);
        return p;
    }
    return counted(real_calloc(a, b));
}

void *realloc(void *p, size_t n) {
    if (!real_realloc) init();
    if (p && EARLY(p)) {
        void *q = counted(real_malloc(n));
        if (q) memcpy(q, p, n < sizeof early ? n : sizeof early);
        return q;
    }
    if (p) live -= malloc_usable_size(p);
    return counted(real_realloc(p, n));
}

void free(void *p) {
    if (!p || EARLY(p)) return;
    if (!real_free) init();
    live -= malloc_usable_size(p);
    real_free(p);
}

char *getenv(const char *name) {
    if (!real_getenv) init();
    if (name && strcmp(name, "C_HEAP") == 0) {
        snprintf(answer, sizeof answer, "%ld %ld", live, peak);
        peak = live;
        return answer;
    }
    return real_getenv(name);
}
"""


class _Counted:
    """A socket's receiving end that adds what it receives to one tally slot."""

    def __init__(self, sock: socket.socket, tally: list[int], slot: int, lock: threading.Lock):
        self.sock, self.tally, self.slot, self.lock = sock, tally, slot, lock

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        with self.lock:
            self.tally[self.slot] += len(data)
        return data

    def close(self) -> None:
        self.sock.close()


class _Tap(FaultProxy):
    """The fault proxy, with each connection's bytes tallied by direction, in order of
    connection: [node → server, server → node]."""

    def __init__(self, host: str, port: int, scheme: str) -> None:
        self.tallies: dict[socket.socket, list[int]] = {}
        self._tally_lock = threading.Lock()
        super().__init__(host, port, scheme)

    def _pump(self, src: socket.socket, dst: socket.socket, cut_after: int | None) -> None:
        from_node = src.getsockname()[1] == self.port  # accepted by the proxy: the node's end
        node = src if from_node else dst
        with self._tally_lock:
            tally = self.tallies.setdefault(node, [0, 0])
        super()._pump(_Counted(src, tally, 0 if from_node else 1, self._tally_lock),  # type: ignore[arg-type]
                      dst, cut_after)

    def per_connection(self) -> list[list[int]]:
        with self._tally_lock:
            return [list(t) for t in self.tallies.values()]


def _flash(tmp: Path, name: str, server: FleetServer, url: str, creds: dict) -> Path:
    """A node's flash: its identity for `url`, and the fleet CA when the server speaks TLS."""
    flash = tmp / name
    flash.mkdir(parents=True, exist_ok=True)
    ident = {"device_id": creds["device_id"], "secret": creds["secret"], "server": url,
             "key_version": creds.get("key_version", 1)}
    if server.ca_der is not None:
        (flash / "fleet_ca.der").write_bytes(server.ca_der)
    else:
        ident["insecure_http"] = True
    (flash / "identity.json").write_text(json.dumps(ident))
    return flash


def _exchange(flash: Path, lib: Path, heap_kb: int) -> dict | None:
    """The firmware's exchanges, unpatched: their heap at rest, or None if they failed."""
    proc = run_micropython(EXCHANGE.replace("RECORDS", str(RECORDS)), path_dirs=[lib],
                           heap_kb=heap_kb, cwd=flash, check=False, timeout=60)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if proc.returncode == 0 and lines else None


def _min_heap(flash: Path, lib: Path) -> tuple[int, dict]:
    """Smallest heap (KB) in which the uplink, a check-in and a batch succeed (bisection),
    and the heap at rest with room to spare."""
    lo, hi = 4, PROBE_HEAP_KB
    rest = _exchange(flash, lib, hi)
    if rest is None:
        raise RuntimeError(f"the exchange fails even with a {hi} KB heap ({flash.name})")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _exchange(flash, lib, mid) is not None:
            hi = mid
        else:
            lo = mid
    return hi, rest


def _c_heap_counter(tmp: Path) -> Path | None:
    """The malloc counter, compiled here; None without a C compiler (or if it fails)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, lib = tmp / "c_heap.c", tmp / "c_heap.so"
    src.write_text(C_HEAP_COUNTER)
    proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"],
                          capture_output=True, text=True, check=False)
    return lib if proc.returncode == 0 else None


def _run_json(code: str, flash: Path, lib: Path, preload: Path | None = None) -> dict:
    script = flash / "_bench_script.py"
    script.write_text(code)
    env = micropython_env([lib])
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    try:
        proc = subprocess.run(micropython_command(script.name, PROBE_HEAP_KB), cwd=flash,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
    finally:
        script.unlink(missing_ok=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"MicroPython exited with {proc.returncode}\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])


def _link(tmp: Path, lib: Path, counter: Path | None, tls: bool) -> dict:
    """Every measurement of one link (TLS or plain) against its own live server."""
    name = "tls" if tls else "plain"
    server = start_fleet_server(tmp / f"server-{name}", tls=tls)
    tap = None
    try:
        creds = server.register(f"BENCH-{name.upper()}")
        direct = _flash(tmp, f"flash-{name}", server, server.url, creds)
        host, port = server.url.split("://")[1].rsplit(":", 1)
        tap = _Tap(host, int(port), "https" if tls else "http")
        relayed = _flash(tmp, f"flash-{name}-relay", server, tap.url, creds)

        min_heap, rest = _min_heap(direct, lib)
        timing = _run_json(TIMING.replace("CONNECTS", str(CONNECTS))
                           .replace("CHECKINS", str(CHECKINS)), direct, lib)
        probe = _run_json(PROBE.replace("RECORDS", str(RECORDS)), relayed, lib, counter)
        time.sleep(0.2)  # the relay's threads finish forwarding the last reply's close
        wire = tap.per_connection()
        if len(wire) != 2 or sum(map(sum, wire)) != len(tap.wire):
            raise RuntimeError(f"expected two connections through the relay, got {wire}")
    finally:
        if tap is not None:
            tap.stop()
        server.stop()
    return {"min_heap": min_heap, **rest, **timing, **probe, "wire": wire}


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        lib = tmp / "lib-mpy"
        lib.mkdir()
        compile_app(FIRMWARE_LIB, lib)
        counter = _c_heap_counter(tmp)
        tls = _link(tmp, lib, counter, tls=True)
        plain = _link(tmp, lib, counter, tls=False)

    versions = f"MicroPython {tls['micropython']} unix port, {tls['mbedtls']}"
    batch = f"telemetry batch ({RECORDS} records)"
    conn, pconn = tls["connects"][0], plain["connects"][0]  # the check-in's connect
    figures = [
        Figure(f"smallest GC heap for the Uplink, a check-in and a {batch}, TLS "
               f"[{versions}]", tls["min_heap"], "KB", "plain HTTP (KB)", plain["min_heap"]),
        Figure("GC heap at rest after both exchanges, TLS (before them: "
               f"{tls['rest_before'] / 1024:.1f} KB)", tls["rest_after"] / 1024, "KB",
               "plain HTTP (KB)", plain["rest_after"] / 1024,
               "= plain (nothing of TLS stays)", tls["rest_after"] <= plain["rest_after"]),
        Figure("GC heap held by the open connection after the handshake", conn["held"] / 1024,
               "KB", "plain TCP socket (KB)", pconn["held"] / 1024),
        Figure("GC heap allocated by the connect and handshake (garbage included)",
               conn["allocated"] / 1024, "KB", "plain TCP connect (KB)",
               pconn["allocated"] / 1024),
    ]
    if conn["c_before"] is not None:
        def c_kb(c: dict, key: str, which: int) -> float:
            return (c[key][which] - c["c_before"][0]) / 1024

        def left(link: dict) -> float:
            return (link["c_rest_after"][0] - link["c_rest_before"][0]) / 1024

        figures += [
            Figure("C heap (mbedTLS; not in the GC heap) peak during the handshake",
                   c_kb(conn, "c_open", 1), "KB", "plain TCP connect (KB)",
                   c_kb(pconn, "c_open", 1)),
            Figure("C heap held by the open connection after the handshake",
                   c_kb(conn, "c_open", 0), "KB", "plain TCP socket (KB)",
                   c_kb(pconn, "c_open", 0)),
            Figure("C heap left after both exchanges, TLS", left(tls), "KB", "plain HTTP (KB)",
                   left(plain), "nothing left", left(tls) <= 0),
        ]
    (ci_up, ci_down), (tm_up, tm_down) = tls["wire"]
    (pci_up, pci_down), (ptm_up, ptm_down) = plain["wire"]
    figures += [
        Figure(f"connect incl. TLS handshake, median of {CONNECTS} (loopback, host CPU)",
               tls["connect_ms"], "ms", "plain TCP connect (ms)", plain["connect_ms"]),
        Figure(f"whole check-in, TLS, median of {CHECKINS} (loopback, host CPU)",
               tls["checkin_ms"], "ms", "plain HTTP (ms)", plain["checkin_ms"]),
        Figure("  of which reading the reply (status line to last body byte)", tls["reply_ms"],
               "ms", "plain HTTP (ms)", plain["reply_ms"]),
        Figure("wire bytes per check-in, both directions, TLS", ci_up + ci_down, "B",
               "plain HTTP", pci_up + pci_down),
        Figure("  check-in, node → server", ci_up, "B", "plain HTTP", pci_up),
        Figure("  check-in, server → node", ci_down, "B", "plain HTTP", pci_down),
        Figure(f"wire bytes per {batch}, both directions, TLS", tm_up + tm_down, "B",
               "plain HTTP", ptm_up + ptm_down),
        Figure("  telemetry, node → server", tm_up, "B", "plain HTTP", ptm_up),
        Figure("  telemetry, server → node", tm_down, "B", "plain HTTP", ptm_down),
    ]
    return figures


if __name__ == "__main__":
    from bench.report import print_figures

    print_figures(__doc__.splitlines()[0], run())
