"""Manners shared by the long-running commands (`server run`, `demo`): a taken port refused at
once with a way out, SIGTERM treated like Ctrl-C so children are stopped, and a database that
is not migrated named with the command to run."""

from __future__ import annotations

import errno
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)


def port_problem(host: str, port: int) -> str | None:
    """Why this process could not listen on host:port right now, or None when it could.

    Binds as uvicorn does (SO_REUSEADDR, so a port in TIME_WAIT counts as free) and lets go.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use (another fleet server or " \
                       "`lamplighter demo` may be running)"
            if exc.errno == errno.EACCES:
                return f"port {port} on {host} needs privileges this user does not have"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this machine"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def require_free_port(host: str, port: int, option: str = "--port") -> None:
    """Exit 2 with a message naming the port and how to choose another when it is taken."""
    problem = port_problem(host, port)
    if problem is not None:
        err.print(f"[red]cannot start: {problem}.[/red] Stop whatever listens there, or choose "
                  f"another port with {option} N (e.g. {option} {port + 1}).")
        raise typer.Exit(2)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every `finally` stops its children."""


@contextmanager
def stop_children_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise Terminated (a KeyboardInterrupt) in the main
    thread, as Ctrl-C does; the first one wins, and later SIGINT/SIGTERM/SIGHUP are ignored
    while the block's `finally` clauses stop the children. Handlers are restored afterwards."""
    caught = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in caught}

    def _ignore_more() -> None:
        for sig in caught:
            signal.signal(sig, signal.SIG_IGN)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        _ignore_more()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signal.Signals(signum).name)

    for sig in caught:
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
