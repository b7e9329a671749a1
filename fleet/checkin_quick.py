"""The common check-in on PostgreSQL: settled from the event loop, many per statement.

Almost every check-in only reports the node's state: nothing pending, its configuration
current (or a standing refusal of it), no rollout running, no key statement it lacks. Those
check-ins are settled here. The statement records the nonce and the state only for nodes that
need nothing else, so for each node it either does the whole check-in or writes nothing. What
"nothing else" means is not stated here: the statement is built with SQLAlchemy Core from the
rules the full path (fleet/checkin.py) evaluates too (fleet/checkin_rules.py: the desired
configuration version and interval, a deliverable command, an active rollout, a key statement
after the node's reported key set, the configuration sent unless the node refused that very
version, the drift counter, a change of the key-set or configuration refusal, which is an
event to record), and compiled once for psycopg. Anything it cannot settle (those, and
acknowledgements, an update report, an unknown, rotated or decommissioned node, a key rotation
awaiting the node's proof, a stale timestamp, a replay, a bad signature) goes to the full path,
which decides it alone. tests/fleet/test_checkin_agreement.py holds the two paths to the same
replies and rows.

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
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    Text,
    Update,
    bindparam,
    case,
    cast,
    column,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine import make_url

from fleet.auth import SignedHeaders
from fleet.checkin import config_refusal_values, keyset_values
from fleet.checkin_rules import (
    CheckinInputs,
    checkin_facts,
    desired_facts,
    nothing_else_to_deliver,
)
from fleet.core.crypto import decrypt_secret, signature_matches
from fleet.models import Device, DeviceNonce, utcnow
from fleet.schemas import CheckIn, CheckInReply

log = logging.getLogger("fleet.checkin")

POOL_MAX = 4  # connections per server process for secret lookups, beside the writer's own
MAX_PER_STATEMENT = 200
MAX_CACHED_SECRETS = 100_000
_PRUNE_PROBABILITY = 0.01

# Only the quick path's own writes go through these connections (see the module docstring).
_CONNECTION_OPTIONS = {"autocommit": True, "options": "-c synchronous_commit=off"}

_LOOKUP = "SELECT id, key_version, status, secret_enc FROM device WHERE uid = %s"

# The statement's input, one array per column, one element per check-in: the node's id and the
# key version its cached secret has, the request's nonce and timestamp, and the report.
_INPUT = (("id", BigInteger), ("key_version", Integer), ("nonce", Text), ("ts", BigInteger),
          ("fw_version", Text), ("config_version", BigInteger), ("status", Text),
          ("keyset", BigInteger), ("sets_keyset_error", Boolean), ("keyset_error", Text),
          ("config_refused_version", BigInteger), ("config_error", Text))


def checkin_statement() -> Update:
    """The statement that settles a batch of check-ins (parameters: one array `in_<column>`
    per _INPUT column, `now`, `default_interval`); it returns (device id, the interval its
    reply gives) for each check-in it settled.

    For each row it writes the nonce and the state only for an active node with that key
    version and no rotation awaiting proof, of which the shared rules
    (fleet.checkin_rules.nothing_else_to_deliver) say the check-in does nothing else; a
    replayed nonce writes nothing either. The rest is left to the full path.
    """
    now = bindparam("now", type_=DateTime(timezone=True))
    given = func.unnest(*(bindparam(f"in_{name}", type_=ARRAY(kind)) for name, kind in _INPUT)) \
        .table_valued(*(column(name, kind) for name, kind in _INPUT)).render_derived(name="input")
    joined = (
        select(given, Device.config_behind_checkins,
               Device.keyset_error.label("stored_keyset_error"),
               Device.config_error.label("stored_config_error"),
               *(expr.label(name) for name, expr in desired_facts(
                   Device.group_name, Device.uid, bindparam("default_interval", type_=Integer)
               ).items()))
        .join_from(given, Device, Device.id == given.c.id)
        .where(Device.status == "active", Device.key_version == given.c.key_version,
               Device.next_secret_enc.is_(None))
        .cte("node"))
    n = joined.c
    facts = checkin_facts(CheckinInputs(
        device_id=n.id,
        config_behind_checkins=n.config_behind_checkins,
        stored_keyset_error=n.stored_keyset_error, stored_config_error=n.stored_config_error,
        config_version=n.config_version, config_refused_version=n.config_refused_version,
        config_error=n.config_error, keyset=n.keyset, sets_keyset_error=n.sets_keyset_error,
        keyset_error=n.keyset_error), now, n.desired_version)
    settled = select(joined, facts["behind_checkins"].label("behind_checkins")) \
        .where(nothing_else_to_deliver(facts)).cte("settled")
    s = settled.c
    nonce = (pg_insert(DeviceNonce).from_select(["device_id", "nonce", "ts"],
                                                select(s.id, s.nonce, s.ts))
             .on_conflict_do_nothing(index_elements=["device_id", "nonce"])
             .returning(DeviceNonce.device_id, DeviceNonce.nonce).cte("nonce"))
    return (
        update(Device)
        .where(Device.id == s.id, nonce.c.device_id == s.id, nonce.c.nonce == s.nonce)
        .values(last_seen=now, fw_version=s.fw_version, applied_config_version=s.config_version,
                last_status=cast(s.status, JSON), config_behind_checkins=s.behind_checkins,
                keyset_serial=func.coalesce(s.keyset, Device.keyset_serial),
                keyset_error=case((s.sets_keyset_error, s.keyset_error),
                                  else_=Device.keyset_error),
                config_refused_version=s.config_refused_version, config_error=s.config_error)
        .returning(Device.id, s.interval_s))


def _compiled() -> tuple[str, dict[str, object]]:
    """The statement's SQL for psycopg, and the values of its constant parameters (strings and
    numbers of the shared rules, which psycopg adapts as SQLAlchemy would)."""
    compiled = checkin_statement().compile(dialect=pg_psycopg.dialect())
    runtime = {"now", "default_interval", *(f"in_{name}" for name, _ in _INPUT)}
    constants = {k: v for k, v in compiled.params.items() if k not in runtime}
    assert all(type(v) in (str, int) for v in constants.values()), constants
    return str(compiled), constants


_CHECKIN, _CONSTANTS = _compiled()
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
        self._waiting: list[tuple[tuple, asyncio.Future[int | None]]] = []
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
        if report.acks or report.update is not None or signed.stale:
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
        keyset, refusal = keyset_values(report), config_refusal_values(report)
        row = (device_id, key_version, signed.nonce, signed.ts, report.fw_version,
               report.config_version, status, report.keyset, "keyset_error" in keyset,
               keyset.get("keyset_error"), refusal["config_refused_version"],
               refusal["config_error"])  # in _INPUT's order
        interval = await self._settle(row)
        if interval is None:
            return None
        self.settled += 1
        return CheckInReply(server_time=int(time.time()), next_checkin_s=interval), secret

    async def _settle(self, row: tuple) -> int | None:
        """Queue the row for the next statement; once that statement settled it, the interval
        the reply gives (None: not settled)."""
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
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
                    settled: dict[int, int] = {}
                for row, done in batch:
                    if not done.done():
                        done.set_result(settled.get(row[0]))
        finally:
            self._writer = None

    async def _write(self, batch: list[tuple[tuple, asyncio.Future[int | None]]]
                     ) -> dict[int, int]:
        """One statement for the batch, on the writer's own connection; the ids it settled,
        each with the interval of its reply."""
        columns = list(zip(*(row for row, _ in batch), strict=True))
        conn = self._writer_conn
        if conn is None or conn.closed:
            conn = self._writer_conn = await psycopg.AsyncConnection.connect(
                self._conninfo, **_CONNECTION_OPTIONS)
        try:
            if random.random() < _PRUNE_PROBABILITY:
                await conn.execute(_PRUNE, (time.time() - self._prune_age,))
            params = dict(_CONSTANTS, now=utcnow(), default_interval=self._interval)
            params.update((f"in_{name}", list(values))
                          for (name, _), values in zip(_INPUT, columns, strict=True))
            cur = await conn.execute(_CHECKIN, params)
            settled = {device_id: interval for device_id, interval in await cur.fetchall()}
        except psycopg.Error:
            self._writer_conn = None  # reconnect for the next statement
            await conn.close()
            raise
        self.statements += 1
        return settled
