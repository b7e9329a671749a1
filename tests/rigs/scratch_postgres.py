"""Throwaway PostgreSQL databases for tests, HIL runs and benchmarks: created, then dropped."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg

PG_ADMIN_URL = os.environ.get("LAMPLIGHTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def scratch_postgres(prefix: str, admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new, empty database on the server of `admin_url`; yields its SQLAlchemy (psycopg) URL.

    Dropped afterwards, connections or not. `LAMPLIGHTER_TEST_PG` names the server (default: the
    local one, trust auth, database `test` to connect to).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
