"""Database tables of the fleet server (SQLModel); schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

# 64-bit ids on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Timezone-aware current UTC time (what every timestamp column stores)."""
    return datetime.now(UTC)


@overload
def aware(ts: datetime) -> datetime: ...
@overload
def aware(ts: None) -> None: ...
def aware(ts: datetime | None) -> datetime | None:
    """`ts` as a timezone-aware UTC time (SQLite hands back naive UTC timestamps); None stays."""
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=UTC)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable,
                                                index=index))


class Device(SQLModel, table=True):
    """A lamppost node: its identity, where it stands, and what it last reported."""

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(index=True, unique=True, max_length=32)  # public id, e.g. ll-3f9a0c21d4e5
    pole_id: str = Field(index=True, unique=True, max_length=64)
    district: str = Field(default="", index=True, max_length=64)
    group_name: str = Field(default="default", index=True, max_length=64)
    lat: float | None = None
    lon: float | None = None
    board: str = Field(default="esp32_devkitc", max_length=32)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="active", max_length=16)  # active | decommissioned
    secret_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_version: int = 1
    # The next key (version key_version + 1) while an over-the-air rotation awaits the node's
    # proof: delivered in check-in replies; the first request signed with it makes it current.
    next_secret_enc: bytes | None = Field(default=None,
                                          sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    last_seen: datetime | None = _ts()  # not indexed: every check-in writes it
    fw_version: str = Field(default="", max_length=32)
    applied_config_version: int = 0
    last_status: dict[str, Any] = Field(default_factory=dict,
                                        sa_column=Column(JSON, nullable=False))
    # The serial of the release key set the node reported (None: it never reported one), and
    # its last refusal of a key statement ("<reason>: <detail>"; None: none pending).
    keyset_serial: int | None = None
    keyset_error: str | None = Field(default=None, max_length=200)
    # The configuration version the node last refused and its reason (None: none stands), and
    # the check-ins in a row at which it reported a version below its desired one (drift).
    config_refused_version: int | None = None
    config_error: str | None = Field(default=None, max_length=200)
    config_behind_checkins: int = 0


class Enrollment(SQLModel, table=True):
    """A one-time code with which a factory-imaged node claims its identity on first boot."""

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(index=True, unique=True, max_length=64)
    device_id: int = Field(foreign_key="device.id", index=True)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    used_at: datetime | None = _ts()


class EnrollAttempt(SQLModel, table=True):
    """Enrollment attempts counted per window, per code and per address (rate limiting)."""

    bucket: str = Field(primary_key=True, max_length=80)  # "code:<hash>" or "addr:<address>"
    window_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    count: int = 0


class ApiToken(SQLModel, table=True):
    """An operator, technician or data-reader API token (only its hash is stored)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    role: str = Field(max_length=16)  # operator | technician | reader
    token_hash: str = Field(index=True, unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = _ts()


class DeviceNonce(SQLModel, table=True):
    """A nonce a device has used; the unique key makes replays fail across server processes."""

    __table_args__ = (UniqueConstraint("device_id", "nonce", name="uq_nonce_device"),)
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True,
                                                          autoincrement=True))
    device_id: int  # leads the unique key, which serves as its index
    nonce: str = Field(max_length=64)
    ts: float = Field(index=True)  # device timestamp, for pruning


class ConfigProfile(SQLModel, table=True):
    """Desired configuration for a group, or an override for one node; versions only grow."""

    __table_args__ = (UniqueConstraint("scope", "target", name="uq_config_scope_target"),)
    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=8)  # group | device
    target: str = Field(max_length=64)  # group name or device uid
    version: int = 1
    body: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))


class Command(SQLModel, table=True):
    """A command for one node (reboot, identify, lamp_override), delivered at check-in and acked.

    Its state is derived, never stored (fleet.commands.command_state): acked once the node
    answered, else expired once `expires_at` has passed, else delivered or queued.
    """

    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", index=True)
    type: str = Field(max_length=32)
    args: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    delivered_at: datetime | None = _ts()
    acked_at: datetime | None = _ts()
    ok: bool | None = None  # the node's answer: carried out (True) or refused (False)
    reason: str = Field(default="", max_length=200)  # why the node refused it
    result: str = Field(default="", max_length=200)  # what the node did


class DeviceEvent(SQLModel, table=True):
    """Something that happened to a node (registered, key rotated, decommissioned…)."""

    id: int | None = Field(default=None, primary_key=True)
    device_id: int = Field(foreign_key="device.id", index=True)
    at: datetime = Field(default_factory=utcnow,
                         sa_column=Column(DateTime(timezone=True), nullable=False))
    kind: str = Field(max_length=32)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Reading(SQLModel, table=True):
    """One telemetry reading; (device, seq) is the idempotency key of ingest."""

    __table_args__ = (Index("ix_reading_ts", "ts"), Index("ix_reading_metric_ts", "metric", "ts"),
                      Index("ix_reading_received_at", "received_at"))
    device_id: int = Field(primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    ts: float  # seconds since the Unix epoch, UTC, as measured by the node
    metric: str = Field(max_length=24)
    value: float
    received_at: float  # seconds since the Unix epoch, UTC, when the server stored it


class SigningKey(SQLModel, table=True):
    """A release public key the server trusts (it never holds a release private key).

    Trusted by an operator (a base key of the fleet: introduced_by_serial is None) or by a
    rotation statement; revoked by an operator on the server only (revoked_by_serial None) or by
    a revocation/rotation statement that reaches the nodes. A key id a revocation names before
    the server knew its key has a row with an empty public_key, revoked.
    """

    id: int | None = Field(default=None, primary_key=True)
    key_id: str = Field(index=True, unique=True, max_length=16)
    public_key: str = Field(max_length=64)  # hex of the raw 32-byte Ed25519 key ("" if unknown)
    name: str = Field(default="", max_length=64)
    added_at: datetime = Field(default_factory=utcnow,
                               sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = _ts()
    introduced_by_serial: int | None = None
    revoked_by_serial: int | None = None


class KeyStatement(SQLModel, table=True):
    """A signed rotation or revocation the server verified; `serial` numbers the one chain."""

    id: int | None = Field(default=None, primary_key=True)
    serial: int = Field(index=True, unique=True)
    kind: str = Field(max_length=16)  # rotation | revocation
    key_id: str = Field(max_length=16)  # the signer
    envelope: str  # canonical JSON, delivered to nodes as it is
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    created_by: str = Field(default="", max_length=64)


class Release(SQLModel, table=True):
    """A signed bundle the server checked and stored; `sequence` only ever grows."""

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64)
    sequence: int = Field(index=True, unique=True)
    kind: str = Field(default="app", max_length=16)
    boards: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    expires: int = 0
    key_id: str = Field(max_length=16)
    envelope: str  # the signed manifest envelope, canonical JSON
    bundle_sha256: str = Field(max_length=64)
    bundle_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    notes: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    created_by: str = Field(default="", max_length=64)


class Rollout(SQLModel, table=True):
    """A release offered to a filtered set of nodes in waves, canary first."""

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    name: str = Field(default="", max_length=64)
    target: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    waves: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # cut-offs[i]: a node whose hash position is below it belongs to waves 0..i; sizes[i]: how
    # many of the nodes matched at creation are in wave i (the denominator of the thresholds).
    cutoffs: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    sizes: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    wave: int = 0
    state: str = Field(default="active", max_length=16)  # active|paused|aborted|completed
    state_reason: str = Field(default="", max_length=200)
    failure_threshold_pct: float = 20.0
    success_threshold_pct: float | None = None  # None: the operator advances waves
    window: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    allow_downgrade: bool = False
    created_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    created_by: str = Field(default="", max_length=64)
    # Seconds a node may stay in each in-progress state ("planned" in a current wave counts as
    # "offered") before it counts as failed with reason timeout; only open window time counts.
    deadlines: dict[str, Any] = Field(default_factory=dict,
                                      sa_column=Column(JSON, nullable=False))
    # Which rollout a node shared with another is offered first (higher first), fixed at
    # creation from the operator's precedence.
    priority: int = 0
    # When a request last looked for overdue nodes (check-ins do so at most every 30 s).
    swept_at: datetime | None = _ts()


class UpdateStatus(SQLModel, table=True):
    """Where one node stands in one rollout (latest state; the history is in UpdateEvent)."""

    __table_args__ = (UniqueConstraint("rollout_id", "device_id", name="uq_update_rollout_dev"),)
    id: int | None = Field(default=None, primary_key=True)
    rollout_id: int = Field(foreign_key="rollout.id", index=True)
    device_id: int = Field(foreign_key="device.id", index=True)
    wave: int = 0
    # planned (a member of its wave, not offered yet) | offered | downloading | installing |
    # installed | committed | failed | rolled_back | refused | timeout | skipped (no longer
    # eligible when its wave came) | superseded (offered a rollout that takes precedence)
    state: str = Field(default="offered", max_length=16)
    detail: str = Field(default="", max_length=200)
    updated_at: datetime = Field(default_factory=utcnow,
                                 sa_column=Column(DateTime(timezone=True), nullable=False))
    # When the deadline of the current state began (reset on resume and when a wave starts).
    since: datetime = Field(default_factory=utcnow,
                            sa_column=Column(DateTime(timezone=True), nullable=False))
    reported: str = Field(default="", max_length=16)  # the last state the node itself reported


class UpdateEvent(SQLModel, table=True):
    """One state change a node reported for a rollout, or one the rollout itself made."""

    id: int | None = Field(default=None, primary_key=True)
    rollout_id: int = Field(foreign_key="rollout.id", index=True)
    device_id: int | None = Field(default=None, foreign_key="device.id", index=True)
    at: datetime = Field(default_factory=utcnow,
                         sa_column=Column(DateTime(timezone=True), nullable=False))
    state: str = Field(max_length=16)
    detail: str = Field(default="", max_length=200)


class AuditRecord(SQLModel, table=True):
    """One operator action: who did what to which target, when, and whether it was refused.

    Written in the action's own transaction (fleet.audit); a refused action in a short one of
    its own. `detail` never holds a secret (no token, device secret or enrollment code).
    """

    __table_args__ = (Index("ix_auditrecord_actor_id", "actor", "id"),
                      Index("ix_auditrecord_target_id", "target", "id"))
    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True,
                                                          autoincrement=True))
    at: datetime = Field(default_factory=utcnow,
                         sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    actor: str = Field(max_length=80)  # an API token's name, or local:<os user> for the CLI
    token_id: int | None = None  # the API token behind the action (None: run on the server)
    action: str = Field(max_length=40, index=True)  # e.g. config.set, rollout.pause
    target: str = Field(max_length=120)  # e.g. device:ll-3f9a0c21d4e5, group:harbour
    outcome: str = Field(max_length=8)  # ok | refused
    status: int | None = None  # the HTTP status of a refusal (None: ok, or refused locally)
    reason: str = Field(default="", max_length=500)  # why it was refused
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
