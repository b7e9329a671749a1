"""The common check-in on PostgreSQL: settled from the event loop, many per statement.

Almost every check-in only reports the node's state: nothing pending, its configuration
current, no rollout running, no key statement it lacks. Those check-ins are settled here. The
statement records the nonce and the state only for nodes that need nothing else, so for each
node it either does the whole check-in or writes nothing; anything it cannot settle (a command
to deliver, a newer configuration, an active rollout, a key statement after the node's reported
key set, a change of its key-set refusal (an event to record), acknowledgements, an update
report, an unknown, rotated or decommissioned node, a key rotation awaiting the node's proof,
a stale timestamp, a replay, a bad signature) goes to the full
path (fleet/checkin.py), which decides it alone.

Check-ins that arrive while a statement is in flight wait for the next one, which then takes
them all (at most one per node): under load one statement and one round trip serve many
check-ins; an idle server sends each at once.

Device secrets are decrypted once per process and kept with their key version; the statement
checks that version and the node's status, so a rotation or a decommission takes effect on the
next request. The connections run with synchronous_commit off: a database crash can lose the
last fraction of a second of check-ins, which the nodes repeat at their next interval anyway;
no other write goes through them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from fleet.auth import SignedHeaders
from fleet.checkin import keyset_values
from fleet.core.crypto import decrypt_secret, signature_matches
from fleet.models import utcnow
from fleet.schemas import CheckIn, CheckInReply

log = logging.getLogger("fleet.checkin")

POOL_MAX = 4  # connections per server process for secret lookups, beside the writer's own
MAX_PER_STATEMENT = 200
MAX_CACHED_SECRETS = 100_000
_PRUNE_PROBABILITY = 0.01

# Only the quick path's own writes go through these connections (see the module docstring).
_CONNECTION_OPTIONS = {"autocommit": True, "options": "-c synchronous_commit=off"}

_LOOKUP = "SELECT id, key_version, status, secret_enc FROM device WHERE uid = %s"

# For each (node, nonce, state) row: writes the nonce and the state only for an active node with
# that key version that has nothing pending (a command to deliver: unanswered and unexpired, as
# fleet.commands.deliverable says); returns the ids of the nodes it settled. keyset is
# the node's reported key-set serial (NULL: not reported; then no statement may follow it);
# sets_error says the check-in states the node's key-set refusal, keyset_error (NULL: none
# stands), which must then be the stored one: a change is an event the full path records.
_CHECKIN = """
WITH input AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(key_versions)s::int[], %(nonces)s::text[],
                         %(ts)s::bigint[], %(fw_versions)s::text[], %(config_versions)s::bigint[],
                         %(statuses)s::text[], %(keysets)s::bigint[], %(sets_errors)s::bool[],
                         %(keyset_errors)s::text[])
        AS t(id, key_version, nonce, ts, fw_version, config_version, status, keyset, sets_error,
             keyset_error)
), settled AS (
    SELECT i.* FROM input i JOIN device d ON d.id = i.id
    WHERE d.status = 'active' AND d.key_version = i.key_version AND d.next_secret_enc IS NULL
      AND d.config_error IS NULL
      AND NOT EXISTS (SELECT 1 FROM command c WHERE c.device_id = d.id AND c.acked_at IS NULL
                      AND c.expires_at > %(now)s)
      AND NOT EXISTS (SELECT 1 FROM rollout r WHERE r.state = 'active')
      AND (SELECT coalesce(sum(p.version), 0) FROM configprofile p
           WHERE (p.scope = 'group' AND p.target = d.group_name)
              OR (p.scope = 'device' AND p.target = d.uid)) <= i.config_version
      AND (i.keyset IS NULL
           OR NOT EXISTS (SELECT 1 FROM keystatement k WHERE k.serial > i.keyset))
      AND (NOT i.sets_error OR d.keyset_error IS NOT DISTINCT FROM i.keyset_error)
), nonce AS (
    INSERT INTO devicenonce (device_id, nonce, ts)
    SELECT id, nonce, ts FROM settled
    ON CONFLICT (device_id, nonce) DO NOTHING
    RETURNING device_id, nonce
)
UPDATE device d SET last_seen = %(now)s, fw_version = s.fw_version,
    applied_config_version = s.config_version, last_status = s.status::json,
    config_behind_checkins = 0,
    keyset_serial = coalesce(s.keyset, d.keyset_serial)
FROM settled s JOIN nonce n ON n.device_id = s.id AND n.nonce = s.nonce
WHERE d.id = s.id
RETURNING d.id
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
        self._pool: AsyncConnectionPool | None = None  # secret lookups
        self._writer_conn: psycopg.AsyncConnection | None = None  # the check-in statements
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the pool belongs to
        self._opening = asyncio.Lock()
        self._waiting: list[tuple[tuple, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None  # the task writing queued check-ins
        self.settled = 0  # check-ins this process answered here (the rest took the full path)
        self.statements = 0  # statements that wrote them

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
                    pool = AsyncConnectionPool(self._conninfo, min_size=1, max_size=POOL_MAX,
                                               open=False, kwargs=_CONNECTION_OPTIONS)
                    await pool.open()
                    self._pool = pool
        return self._pool

    async def close(self) -> None:
        if self.statements:
            log.info("quick check-ins: %d settled in %d statements", self.settled,
                     self.statements)
        if asyncio.get_running_loop() is not self._loop:
            return
        if self._writer_conn is not None:
            await self._writer_conn.close()
            self._writer_conn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _secret(self, pool: AsyncConnectionPool, uid: str) -> tuple[int, int, bytes] | None:
        """(device id, key version, secret) of an active node, from the cache or the database."""
        known = self._secrets.get(uid)
        if known is not None:
            return known
        async with pool.connection() as conn:
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
                      report: CheckIn) -> tuple[CheckInReply, bytes] | None:
        """Settle a plain check-in: its reply and the key that signed it (which signs the
        reply), or None having written nothing for it."""
        if (report.acks or report.update is not None or report.config_refused is not None
                or signed.stale):
            return None
        pool = await self._connections()
        if pool is None:
            return None
        known = await self._secret(pool, signed.uid)
        if known is None:
            return None
        device_id, key_version, secret = known
        if not signature_matches(secret, signed.signature, method, path, signed.ts_text,
                                 signed.nonce, body):
            self._secrets.pop(signed.uid, None)  # perhaps rotated: the full path rereads it
            return None
        status = report.model_dump_json(exclude={"acks"}, exclude_none=True)
        keyset = keyset_values(report)
        row = (device_id, key_version, signed.nonce, signed.ts, report.fw_version,
               report.config_version, status, report.keyset, "keyset_error" in keyset,
               keyset.get("keyset_error"))
        if not await self._settle(row):
            return None
        self.settled += 1
        return CheckInReply(server_time=int(time.time()), next_checkin_s=self._interval), secret

    async def _settle(self, row: tuple) -> bool:
        """Queue the row for the next statement; True once that statement settled it."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting())
        return await done

    async def _write_waiting(self) -> None:
        """Write queued check-ins, one statement at a time, until none are waiting."""
        try:
            while self._waiting:
                await asyncio.sleep(0)  # let requests already received join this statement
                batch, later, seen = [], [], set()
                for entry in self._waiting:
                    if entry[0][0] in seen or len(batch) >= MAX_PER_STATEMENT:
                        later.append(entry)  # one row per node per statement
                    else:
                        seen.add(entry[0][0])
                        batch.append(entry)
                self._waiting = later
                try:
                    settled = await self._write(batch)
                except Exception as exc:  # noqa: BLE001 - each waiting request takes the full path
                    log.warning("quick check-in write failed: %r", exc)
                    settled = set()
                for row, done in batch:
                    if not done.done():
                        done.set_result(row[0] in settled)
        finally:
            self._writer = None

    async def _write(self, batch: list[tuple[tuple, asyncio.Future[bool]]]) -> set[int]:
        """One statement for the batch, on the writer's own connection; the ids it settled."""
        columns = list(zip(*(row for row, _ in batch), strict=True))
        conn = self._writer_conn
        if conn is None or conn.closed:
            conn = self._writer_conn = await psycopg.AsyncConnection.connect(
                self._conninfo, **_CONNECTION_OPTIONS)
        try:
            if random.random() < _PRUNE_PROBABILITY:
                await conn.execute(_PRUNE, (time.time() - self._prune_age,))
            cur = await conn.execute(_CHECKIN, {
                "ids": list(columns[0]), "key_versions": list(columns[1]),
                "nonces": list(columns[2]), "ts": list(columns[3]),
                "fw_versions": list(columns[4]), "config_versions": list(columns[5]),
                "statuses": list(columns[6]), "keysets": list(columns[7]),
                "sets_errors": list(columns[8]), "keyset_errors": list(columns[9]),
                "now": utcnow(),
            })
            settled = {device_id for (device_id,) in await cur.fetchall()}
        except psycopg.Error:
            self._writer_conn = None  # reconnect for the next statement
            await conn.close()
            raise
        self.statements += 1
        return settled
