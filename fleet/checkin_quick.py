"""The common check-in on PostgreSQL: one statement from the event loop, no thread hop.

Almost every check-in only reports the node's state: nothing pending, its configuration
current, no rollout running. That case costs one SQL statement here. The statement records the
nonce and the state only when the node needs nothing else, so it either does the whole check-in
or writes nothing; anything it cannot settle (a command to deliver, a newer configuration, an
active rollout, acknowledgements, an update report, an unknown, rotated or decommissioned node,
a replay, a bad signature) goes to the full path (fleet/checkin.py), which decides it alone.

Device secrets are decrypted once per process and kept with their key version; the statement
checks that version and the node's status, so a rotation or a decommission takes effect on the
next request. The connections run with synchronous_commit off: a database crash can lose the
last fraction of a second of check-ins, which the nodes repeat at their next interval anyway;
no other write goes through them.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from fleet.auth import SignedHeaders
from fleet.crypto import decrypt_secret, signature_matches
from fleet.models import utcnow
from fleet.schemas import CheckIn, CheckInReply

POOL_MAX = 8  # connections per server process; requests beyond wait for one
MAX_CACHED_SECRETS = 100_000
_PRUNE_PROBABILITY = 0.01

_LOOKUP = "SELECT id, key_version, status, secret_enc FROM device WHERE uid = %s"

# Writes the nonce and the state only for an active node with this key version that has
# nothing pending; returns its id, or no row when the full path must take the check-in.
_CHECKIN = """
WITH settled AS (
    SELECT d.id FROM device d
    WHERE d.id = %(id)s AND d.status = 'active' AND d.key_version = %(key_version)s
      AND NOT EXISTS (SELECT 1 FROM command c WHERE c.device_id = d.id AND c.acked_at IS NULL)
      AND NOT EXISTS (SELECT 1 FROM rollout r WHERE r.state = 'active')
      AND (SELECT coalesce(sum(p.version), 0) FROM configprofile p
           WHERE (p.scope = 'group' AND p.target = d.group_name)
              OR (p.scope = 'device' AND p.target = d.uid)) <= %(config_version)s
), nonce AS (
    INSERT INTO devicenonce (device_id, nonce, ts)
    SELECT id, %(nonce)s, %(ts)s FROM settled
    ON CONFLICT (device_id, nonce) DO NOTHING
    RETURNING device_id
)
UPDATE device SET last_seen = %(now)s, fw_version = %(fw_version)s,
    applied_config_version = %(config_version)s, last_status = %(status)s::json
WHERE id = (SELECT device_id FROM nonce)
RETURNING id
"""
_PRUNE = "DELETE FROM devicenonce WHERE ts < %s"


def psycopg_conninfo(sqlalchemy_url: str) -> str:
    """The libpq connection string behind a SQLAlchemy PostgreSQL URL."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class QuickCheckin:
    """One server process's fast path for check-ins; `None` from `attempt` means "full path"."""

    def __init__(self, database_url: str, master_key: bytes, checkin_interval_s: int,
                 clock_skew_s: int) -> None:
        self._conninfo = psycopg_conninfo(database_url)
        self._master_key = master_key
        self._interval = checkin_interval_s
        self._prune_age = 2 * clock_skew_s
        self._secrets: dict[str, tuple[int, int, bytes]] = {}  # uid -> (id, key version, key)
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the pool belongs to
        self._opening = asyncio.Lock()
        self.settled = 0  # check-ins this process answered here (the rest took the full path)

    async def _connections(self) -> AsyncConnectionPool | None:
        """The pool, opened on first use; None on any loop but the one that opened it."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        if loop is not self._loop:
            return None  # a second event loop on the same app (tests): the full path serves
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    pool = AsyncConnectionPool(
                        self._conninfo, min_size=1, max_size=POOL_MAX, open=False,
                        kwargs={"autocommit": True, "options": "-c synchronous_commit=off"})
                    await pool.open()
                    self._pool = pool
        return self._pool

    async def close(self) -> None:
        if self._pool is not None and asyncio.get_running_loop() is self._loop:
            await self._pool.close()
            self._pool = None

    async def _secret(self, conn: Any, uid: str) -> tuple[int, int, bytes] | None:
        known = self._secrets.get(uid)
        if known is not None:
            return known
        row = await (await conn.execute(_LOOKUP, (uid,))).fetchone()
        if row is None or row[2] != "active":
            return None
        device_id, key_version, _, secret_enc = row
        try:
            secret = decrypt_secret(self._master_key, bytes(secret_enc), uid)
        except ValueError:
            return None  # the full path reports it
        if len(self._secrets) >= MAX_CACHED_SECRETS:
            self._secrets.clear()
        self._secrets[uid] = known = (device_id, key_version, secret)
        return known

    async def attempt(self, method: str, path: str, signed: SignedHeaders, body: bytes,
                      report: CheckIn) -> CheckInReply | None:
        """Settle a plain check-in in one statement, or return None having written nothing."""
        if report.acks or report.update is not None:
            return None
        pool = await self._connections()
        if pool is None:
            return None
        async with pool.connection() as conn:
            known = await self._secret(conn, signed.uid)
            if known is None:
                return None
            device_id, key_version, secret = known
            if not signature_matches(secret, signed.signature, method, path, signed.ts_text,
                                     signed.nonce, body):
                self._secrets.pop(signed.uid, None)  # perhaps rotated: the full path rereads it
                return None
            if random.random() < _PRUNE_PROBABILITY:
                await conn.execute(_PRUNE, (signed.received_at - self._prune_age,))
            status = report.model_dump(exclude={"acks"}, exclude_none=True, mode="json")
            done = await (await conn.execute(_CHECKIN, {
                "id": device_id, "key_version": key_version, "nonce": signed.nonce,
                "ts": signed.ts, "now": utcnow(), "fw_version": report.fw_version,
                "config_version": report.config_version, "status": json.dumps(status),
            })).fetchone()
        if done is None:
            return None
        self.settled += 1
        return CheckInReply(server_time=int(time.time()), next_checkin_s=self._interval)
