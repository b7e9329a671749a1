"""A TCP proxy between nodes and the fleet server that injects network faults on command."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class FaultState:
    """What the proxy does to new and open connections right now."""

    outage: bool = False  # refuse new connections and drop open ones
    delay_s: float = 0.0  # added before each forwarded chunk
    cut_after_bytes: int | None = None  # close a server→node stream after this many bytes


class FaultProxy:
    """Listens on 127.0.0.1:<port> and forwards to `target`; faults apply to every connection.

    `outage()` models the street cabinet losing its uplink: connections are refused, and open
    ones are reset. `cut_after(n)` drops a reply part-way (a download broken mid-transfer).
    """

    def __init__(self, target_host: str, target_port: int, scheme: str = "http") -> None:
        self.target = (target_host, target_port)
        self.scheme = scheme  # "https" in front of a TLS server: the bytes pass through as they are
        self.state = FaultState()
        self.connections = 0
        self.refused = 0
        self.wire = bytearray()  # every byte forwarded, both ways: what a capture on the path sees
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def outage(self, on: bool = True) -> None:
        self.state.outage = on
        if on:
            with self._lock:
                for sock in list(self._open):
                    _close(sock)

    def delay(self, seconds: float) -> None:
        self.state.delay_s = seconds

    def cut_after(self, nbytes: int | None) -> None:
        self.state.cut_after_bytes = nbytes

    def stop(self) -> None:
        self._stopping = True
        _close(self._listener)
        with self._lock:
            for sock in list(self._open):
                _close(sock)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.state.outage:
                self.refused += 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                                  b"\x00\x00\x00\x00")
                _close(client)  # a reset, as from a dead link
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            self.connections += 1
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client,
                                                      self.state.cut_after_bytes),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cut_after: int | None) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(16384)
                if not data or self.state.outage:
                    break
                if self.state.delay_s:
                    time.sleep(self.state.delay_s)
                if cut_after is not None and sent + len(data) > cut_after:
                    dst.sendall(data[:max(0, cut_after - sent)])
                    break
                dst.sendall(data)
                with self._lock:
                    self.wire += data
                sent += len(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
