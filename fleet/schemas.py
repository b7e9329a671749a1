"""Request and response bodies of the API (validated at the edge; the tables live in models.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1, max_length=64,
                            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]
Tag = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.:-]+$")]
BOARDS = ("esp32_devkitc", "emulated")
INT32_MAX = 2**31 - 1
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]  # fits a 32-bit column on every database
RowId = Annotated[int, Path(ge=1, le=INT32_MAX, description="numeric id")]


def example(body: dict[str, Any]) -> ConfigDict:
    """A request body's example for the OpenAPI document (every request body has one)."""
    return ConfigDict(json_schema_extra={"examples": [body]})


class Strict(BaseModel):
    """Bodies refuse unknown fields: a typo is a 422 that names it, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DeviceRegistration(Strict):
    model_config = example({
        "pole_id": "HB-0042", "district": "harbour", "group": "harbour-east", "lat": 51.5072,
        "lon": -0.1276, "board": "esp32_devkitc", "tags": ["pilot"]})

    pole_id: Name
    district: Annotated[str, Field(max_length=64)] = ""
    group: Name = "default"
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    board: Literal["esp32_devkitc", "emulated"] = "esp32_devkitc"
    tags: Annotated[list[Tag], Field(max_length=32)] = []


class DeviceBatch(Strict):
    model_config = example({
        "devices": [{"pole_id": "HB-0043", "district": "harbour", "group": "harbour-east",
                     "board": "esp32_devkitc"},
                    {"pole_id": "HB-0044", "district": "harbour", "group": "harbour-east",
                     "board": "esp32_devkitc", "tags": ["pilot"]}],
        "enrollment": True, "enrollment_ttl_days": 30})

    devices: Annotated[list[DeviceRegistration], Field(min_length=1, max_length=1000)]
    enrollment: bool = Field(False, description="Also issue a one-time enrollment code per node")
    enrollment_ttl_days: Annotated[int, Field(ge=1, le=365)] = 30


class DeviceCredentials(BaseModel):
    """Shown once: the node's identity. The server keeps only the encrypted secret."""

    device_id: str
    pole_id: str
    secret: str = Field(description="hex of the 32-byte HMAC key")
    key_version: int
    enrollment_code: str | None = None


class DeviceOut(BaseModel):
    device_id: str
    pole_id: str
    district: str
    group: str
    lat: float | None
    lon: float | None
    board: str
    tags: list[str]
    status: str
    online: bool
    last_seen: datetime | None
    fw_version: str
    applied_config_version: int
    key_version: int
    last_status: dict[str, Any]
    keyset: int | None = Field(None, description="Serial of the release key set the node last "
                                                 "reported (null: it never reported one)")
    keyset_error: str | None = Field(None, description="The node's last refusal of a key "
                                                       "statement, if it still stands")


class ConfigBody(Strict):
    model_config = example({
        "config": {"checkin_interval_s": 600, "dimming": {"dim_level": 40}}})

    config: dict[str, Any] = Field(description="Keys the node's configuration accepts")


class ConfigOut(BaseModel):
    model_config = example({"scope": "group", "target": "harbour-east", "version": 3,
                            "config": {"checkin_interval_s": 600, "dimming": {"dim_level": 40}}})

    scope: str = Field(description="group or device")
    target: str = Field(description="The group's name or the node's id")
    version: int = Field(description="The stored profile's version (0: nothing stored)")
    config: dict[str, Any] = Field(description="The stored document: the keys this group sets, "
                                               "or this node overrides")


class ConfigSetting(BaseModel):
    """One key of the node's configuration schema (fleet.config_schema)."""

    model_config = example({
        "key": "dimming.dim_level", "type": "int", "min": 0, "max": 100, "choices": None,
        "unit": "%", "default": 30, "rule": "must be an integer 0–100 (%)",
        "meaning": "the lamp's level at night with nobody about, where no dimming.schedule "
                   "entry covers the minute (not above dimming.full_level)",
        "set_by_server": False})

    key: str = Field(description="The key's dotted path")
    type: Literal["int", "number", "str", "schedule", "level_or_null"]
    min: int | float | None = None
    max: int | float | None = None
    choices: list[str] | None = Field(None, description="The values a str key takes")
    unit: str | None = None
    default: Any = Field(description="The node's value when nothing sets the key")
    rule: str = Field(description="The rule as a refusal states it")
    meaning: str
    set_by_server: bool = Field(description="Set by the server, refused in a document")


class ConfigKey(BaseModel):
    key: str = Field(description="The key's dotted path, e.g. dimming.dim_level")
    value: Any = Field(description="Its desired value")
    source: Literal["default", "group", "node"] = Field(
        description="Where the value comes from: the node's default, the group's "
                    "configuration, or the node's override")


class ConfigView(ConfigOut):
    """A stored configuration document (as the PUT answers it) and the desired configuration
    it leads to: defaults < group < node, merged deeply, key by key."""

    model_config = example({
        "scope": "device", "target": "ll-3f9a0c21d4e5", "version": 1,
        "config": {"dimming": {"dusk_lux": 20.0}},
        "group": "harbour-east", "desired_version": 5, "applied_version": 4,
        "desired": {"checkin_interval_s": 600,  # every key; shortened here
                    "dimming": {"dusk_lux": 20.0, "dim_level": 40, "full_level": 100}},
        "keys": [{"key": "checkin_interval_s", "value": 600, "source": "group"},
                 {"key": "dimming.dusk_lux", "value": 20.0, "source": "node"},
                 {"key": "dimming.dim_level", "value": 40, "source": "group"},
                 {"key": "dimming.full_level", "value": 100, "source": "default"}],
        "refused": [], "refused_version": 5,
        "refused_reason": "dimming.dim_level: must be between 0 and 100",
        "drifting": True, "behind_checkins": 3})

    group: str | None = Field(None, description="The node's group (a node's view only)")
    desired_version: int = Field(description="The version nodes are offered: the sum of the "
                                             "group's and the node's profile versions")
    applied_version: int | None = Field(None, description="The version the node last "
                                                          "reported applied (a node's view only)")
    refused_version: int | None = Field(
        None, description="The version the node last refused and still reports refusing (a "
                          "node's view only; null: none stands)")
    refused_reason: str | None = Field(
        None, description="Why, in the node's own words: the first rule the version broke")
    drifting: bool | None = Field(
        None, description="The node has reported a version below its desired one at more than "
                          "two check-ins in a row (a node's view only)")
    behind_checkins: int | None = Field(
        None, description="Check-ins in a row at which the node reported a version below its "
                          "desired one (0: up to date; a node's view only)")
    desired: dict[str, Any] = Field(description="The whole desired configuration, merged")
    keys: list[ConfigKey] = Field(description="Every key of `desired` with its source "
                                              "(the example is shortened)")
    refused: list[str] = Field(description="What a node would refuse of `desired`, 'key: rule' "
                                           "(only a document stored before the server "
                                           "validated them can cause this)")


COMMAND_TTL_S = 86400  # a command's lifetime unless its sender says otherwise
COMMAND_TTL_RANGE_S = (60, 7 * 86400)


class CommandIn(Strict):
    model_config = example({"type": "lamp_override", "args": {"level_pct": 100, "minutes": 30},
                            "expires_in_s": 3600})

    type: Literal["reboot", "identify", "lamp_override"]
    args: dict[str, Any] = {}
    expires_in_s: Annotated[int, Field(ge=COMMAND_TTL_RANGE_S[0], le=COMMAND_TTL_RANGE_S[1])] = \
        Field(COMMAND_TTL_S, description="Seconds from now after which the command, if the node "
                                         "has not answered it, expires and is no longer "
                                         "delivered (default a day)")


class CommandOut(BaseModel):
    """A command and its life: queued, delivered (sent at a check-in, again at each until the
    node answers), then acked with the node's answer, or expired unanswered."""

    id: int
    device_id: str
    type: str
    args: dict[str, Any]
    state: Literal["queued", "delivered", "acked", "expired"] = Field(
        description="queued: not yet sent; delivered: sent, not yet answered; acked: the node "
                    "answered (see ok); expired: not answered by expires_at, no longer sent")
    created_at: datetime
    expires_at: datetime
    delivered_at: datetime | None = Field(description="when a check-in reply first carried it")
    acked_at: datetime | None = Field(description="when the node's answer arrived")
    ok: bool | None = Field(description="the node's answer: true, carried out; false, refused "
                                        "(see reason); null until it answers")
    reason: str = Field(description="why the node refused it, e.g. 'unknown command' or "
                                    "'bad level_pct'; empty otherwise")
    result: str = Field(description="what the node did, e.g. 'blinking 10 s' or "
                                    "'level 100 % for 30 min'; empty when it says nothing")


class EnrollRequest(Strict):
    model_config = example({"code": "K7QF-2M9X-PL4D-8RWA"})

    code: Annotated[str, Field(min_length=8, max_length=32)]


class CommandAck(Strict):
    """A node's answer to a command it was sent (older firmware sends only id and ok: true)."""

    id: Count
    ok: bool = Field(True, description="true: carried out; false: refused")
    reason: Annotated[str, Field(max_length=200)] = Field(
        "", description="why it was refused (short: 'unknown command', 'bad minutes')")
    result: Annotated[str, Field(max_length=200)] = Field(
        "", description="what the node did (short: 'blinking 10 s')")


class UpdateReport(Strict):
    """A node's progress on the update it was assigned."""

    rollout_id: Count
    state: Literal["downloading", "installing", "installed", "committed", "failed",
                   "rolled_back", "refused"]
    detail: Annotated[str, Field(max_length=200)] = ""


class ConfigRefusal(Strict):
    """The configuration version a node refused, and the first rule it broke."""

    version: Count
    reason: Annotated[str, Field(max_length=200)] = Field(
        description="the node's own words: 'dimming.dim_level: above 100'")


class CheckIn(Strict):
    model_config = example({
        "fw_version": "1.4.2", "uptime_s": 86400, "mem_free": 61440, "rssi": -67,
        "wifi_reconnects": 1, "boot_reason": "power_on", "sensor_faults": {},
        "config_version": 3, "update_state": "idle", "queue_len": 12, "queue_dropped": 0,
        "lamp_level_pct": 30.0,
        "config_refused": {"version": 4, "reason": "dimming.dim_level: above full_level"},
        "acks": [{"id": 17, "ok": True, "result": "blinking 10 s"},
                                          {"id": 18, "ok": False, "reason": "bad minutes"}],
        "keyset": 2})

    fw_version: Annotated[str, Field(max_length=32)] = ""
    uptime_s: Count = 0
    mem_free: Count | None = None
    rssi: Annotated[int, Field(ge=-130, le=0)] | None = None
    wifi_reconnects: Count | None = Field(
        None, description="Wi-Fi links the node re-established after losing one, since boot")
    boot_reason: Annotated[str, Field(max_length=32)] = ""
    sensor_faults: Annotated[dict[Annotated[str, Field(max_length=24)], Count],
                             Field(max_length=16)] = {}
    config_version: Count = 0
    config_refused: ConfigRefusal | None = Field(
        None, description="The last configuration version the node refused and why; absent "
                          "once it applied a later one (or never refused one)")
    update_state: Annotated[str, Field(max_length=32)] = "idle"
    queue_len: Count | None = None
    queue_dropped: Count | None = None
    lamp_level_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    acks: Annotated[list[CommandAck], Field(max_length=50)] = []
    update: UpdateReport | None = None
    keyset: Annotated[int, Field(ge=0, le=INT32_MAX, strict=True)] | None = Field(
        None, description="Serial of the node's release key set (0 as provisioned); the reply "
                          "then carries the key statements after it")
    keyset_error: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="The node's refusal of a key statement, '<reason>: <detail>'; "
                          "absent beside `keyset` when none stands")


class PendingCommand(BaseModel):
    id: int
    type: str
    args: dict[str, Any]


class NextKey(BaseModel):
    """The node's next device key, delivered in a check-in reply while a rotation is pending."""

    version: int = Field(description="the key version it becomes")
    key: str = Field(description="hex of the 32-byte key XOR fleet.core.crypto.rotation_pad "
                                 "(HMAC-SHA256 under the current key over 'rotate', the device "
                                 "id and the version)")


class KeyRotation(BaseModel):
    """An over-the-air key rotation the server has started."""

    device_id: str
    key_version: int = Field(description="the version in use until the node proves the next")
    next_key_version: int
    detail: str


class CheckInReply(BaseModel):
    server_time: int
    next_checkin_s: int
    config_version: int | None = None
    config: dict[str, Any] | None = None
    commands: list[PendingCommand] = []
    update: dict[str, Any] | None = None
    key_statements: list[str] = Field(
        [], description="Signed key statements (envelopes, canonical JSON) with serials above "
                        "the node's reported keyset, in serial order, at most 8; empty when "
                        "none or when the node reported no keyset")
    next_key: NextKey | None = Field(
        None, description="a key rotation awaiting the node's proof: the node stores the key, "
                          "switches to it and signs its next request with it")


class TokenOut(BaseModel):
    name: str
    role: str
    token: str


class KeyIn(Strict):
    model_config = example({
        "public_key": "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "name": "release-2026"})

    public_key: Annotated[str, Field(min_length=64, max_length=400,
                                     description="hex of the raw 32-byte key, or PEM")]
    name: Annotated[str, Field(max_length=64)] = ""


class KeyOut(BaseModel):
    key_id: str
    public_key: str = Field(description="hex of the raw key; empty for a key id a revocation "
                                        "named before the server knew its key")
    name: str
    added_at: datetime
    revoked_at: datetime | None
    introduced_by_serial: int | None = Field(
        None, description="The rotation statement that introduced the key (null: trusted by "
                          "an operator, a base key of the fleet)")
    revoked_by_serial: int | None = Field(
        None, description="The statement that revoked the key for the nodes (null: not revoked, "
                          "or revoked on the server only)")
    nodes_trusting: int | None = Field(
        None, description="For a revoked key: active nodes that still trust it (they have not "
                          "applied the revoking statement, or never reported a key set; every "
                          "node, for a key revoked on the server only)")
    note: str = ""


class KeyStatementIn(Strict):
    """A signed key statement envelope exactly as `lamplighter release rotate/revoke` writes it."""

    model_config = example({
        "key_id": "9f1c2b7d04e3a6b5", "signature": "5e" * 64,
        "statement": '{"kind":"rotate","serial":3,"new_key":"..."}'})

    key_id: Annotated[str, Field(max_length=16, description="the signer's key id")]
    signature: Annotated[str, Field(max_length=128, description="128 hex digits")]
    statement: Annotated[str, Field(max_length=4096,
                                    description="the canonical statement document, as text")]


class KeyStatementOut(BaseModel):
    serial: int
    kind: str
    key_id: str = Field(description="the signer")
    summary: str
    created_at: datetime
    created_by: str
    nodes_behind: int = Field(description="Active nodes that have not applied it yet (or "
                                          "never reported a key set)")
    envelope: str


class KeyNodeOut(BaseModel):
    """A node that still trusts a revoked key."""

    device_id: str
    pole_id: str
    keyset: int | None
    keyset_error: str | None
    last_seen: datetime | None


class ReleaseOut(BaseModel):
    id: int
    version: str
    sequence: int
    kind: str
    boards: list[str]
    expires: int
    key_id: str
    bundle_sha256: str
    bundle_size: int
    notes: str
    created_at: datetime


class RolloutTarget(Strict):
    group: Name | None = None
    district: Annotated[str, Field(max_length=64)] | None = None
    board: Literal["esp32_devkitc", "emulated"] | None = None
    tag: Tag | None = None
    from_version: Annotated[str, Field(max_length=32)] | None = None


class Window(Strict):
    start_hour: Annotated[int, Field(ge=0, le=23)]
    end_hour: Annotated[int, Field(ge=0, le=24)]
    tz: Annotated[str, Field(max_length=64)] = "UTC"


DeadlineS = Annotated[int, Field(ge=10, le=30 * 86400)]


class Deadlines(Strict):
    """Seconds a node may stay in each in-progress state before it counts as failed with
    reason `timeout` (counted only while the rollout's window is open). `offered` also bounds
    a node of the current wave that has not checked in to be offered."""

    offered: DeadlineS = 3600
    downloading: DeadlineS = 7200
    installing: DeadlineS = 1800
    installed: DeadlineS = 1800


class RolloutIn(Strict):
    model_config = example({
        "release_id": 7, "name": "1.5.0 harbour", "target": {"group": "harbour-east"},
        "waves": [5, 25, 100], "failure_threshold_pct": 20.0, "success_threshold_pct": 90.0,
        "window": {"start_hour": 9, "end_hour": 16, "tz": "Europe/London"}})

    release_id: Count
    name: Annotated[str, Field(max_length=64)] = ""
    target: RolloutTarget = RolloutTarget()
    waves: Annotated[list[Annotated[int, Field(ge=1, le=100)]],
                     Field(min_length=1, max_length=10)] = [10, 50, 100]
    failure_threshold_pct: Annotated[float, Field(gt=0, le=100)] = 20.0
    success_threshold_pct: Annotated[float, Field(gt=0, le=100)] | None = 90.0
    window: Window | None = Field(None, description="Only offer the update in these local hours "
                                                    "(daytime, when the lamps are off)")
    allow_downgrade: bool = Field(False, description="Offer an older version (a signed "
                                                     "downgrade with a higher sequence)")
    deadlines: Deadlines = Field(Deadlines(), description="Per in-progress state, seconds "
                                 "before a node counts as failed with reason timeout")
    precedence: Literal["new", "existing"] | None = Field(
        None, description="Required when the target shares a node with an active or paused "
                          "rollout: 'new' offers this rollout first on shared nodes, "
                          "'existing' lets the other rollouts finish there first")


class WaveOut(BaseModel):
    wave: int
    percent: int
    planned: int = Field(description="nodes matched at creation")
    members: int = Field(description="every node in the wave now, late joiners included: the "
                                     "denominator of both thresholds")
    committed: int
    failed: int = Field(description="failed, rolled back, refused or timed out")
    timed_out: int
    states: dict[str, int]


class RolloutOut(BaseModel):
    id: int
    release_id: int
    version: str
    name: str
    target: dict[str, Any]
    state: str
    state_reason: str
    wave: int
    waves: list[WaveOut]
    failure_threshold_pct: float
    success_threshold_pct: float | None
    window: dict[str, Any] | None
    allow_downgrade: bool
    deadlines: dict[str, int]
    priority: int
    created_at: datetime


class NodeUpdateOut(BaseModel):
    rollout_id: int
    device_id: str
    wave: int
    state: str
    detail: str
    reported: str = Field(description="the last state the node itself reported")
    updated_at: datetime


class UpdateEventOut(BaseModel):
    rollout_id: int
    device_id: str | None
    at: datetime
    state: str
    detail: str


class IngestReply(BaseModel):
    stored: int = Field(description="Readings new to the server, stored now")
    duplicates: int = Field(description="Readings the server already had (same seq, same "
                                        "reading), skipped")
    acked_seq: int = Field(description="Highest seq in the batch: the node may drop up to it")
    conflicts: list[int] = Field([], description=(
        "Seqs the server already holds with a different reading (ts, metric or value): not "
        "stored, the first reading stands; recorded as a telemetry_conflict device event"))


class ReadingOut(BaseModel):
    device_id: str
    pole_id: str
    district: str
    group: str
    ts: str = Field(description="Node time of the reading, ISO 8601 UTC")
    metric: str
    value: float
    unit: str
    seq: int


class ReadingPage(BaseModel):
    readings: list[ReadingOut]
    next: str | None = Field(description="Cursor for the next page (pass as `after`), or null")


class AggregateRow(BaseModel):
    bucket_start: str = Field(description="Start of the bucket, ISO 8601 UTC")
    metric: str
    device_id: str | None = None
    group: str | None = None
    min: float
    avg: float
    max: float
    count: int
    unit: str


class AggregateReply(BaseModel):
    bucket_s: int
    by: str
    rows: list[AggregateRow]
    truncated: bool = Field(description="True when more rows matched than `limit`")


def inline_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs substituted in place, to embed in an operation.

    For routes that read their body themselves (openapi_extra): a "#/$defs/…" reference would
    point at the OpenAPI document's root, not at the schema.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


class AuditQuery(Strict):
    """Filters of GET /api/v1/audit; an unknown query parameter is a 422 that names it."""

    actor: Annotated[str | None, Field(max_length=80, description=(
        "Token name (or local:<user>); a trailing * matches a prefix"))] = None
    target: Annotated[str | None, Field(max_length=120, description=(
        "e.g. device:ll-3f9a0c21d4e5, group:harbour, rollout:3; a trailing * matches a prefix "
        "(device:*)"))] = None
    action: Annotated[str | None, Field(max_length=40, description=(
        "e.g. config.set, rollout.pause; a trailing * matches a prefix (rollout.*)"))] = None
    outcome: Literal["ok", "refused"] | None = None
    since: datetime | None = Field(None, description="ISO 8601; from this time (inclusive); "
                                                     "no time zone means UTC")
    until: datetime | None = Field(None, description="ISO 8601; before this time (exclusive)")
    cursor: Annotated[int | None, Field(ge=1, le=2**63 - 1, description=(
        "next_cursor of the previous page: records older than it"))] = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class AuditRecordOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    outcome: Literal["ok", "refused"]
    status: int | None = Field(description="HTTP status of a refusal (null: ok, or a refusal "
                                           "on the server's own command line)")
    reason: str = Field(description="why it was refused (empty when ok)")
    detail: dict[str, Any] = Field(description="what the action was given; never a secret")


class AuditPage(BaseModel):
    records: list[AuditRecordOut] = Field(description="newest first")
    next_cursor: int | None = Field(description="pass as ?cursor= for the next (older) page; "
                                                "null when this is the last")


class DriftQuery(Strict):
    """Filters of GET /api/v1/config/drift; an unknown query parameter is a 422 that names it."""

    group: Name | None = Field(None, description="Only the nodes of this group")
    cursor: Annotated[int | None, Field(ge=1, le=2**63 - 1, description=(
        "next_cursor of the previous page: the nodes after it"))] = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


_DRIFT_EXAMPLE = {
    "device_id": "ll-3f9a0c21d4e5", "pole_id": "HB-0042", "group": "harbour-east",
    "desired_version": 5, "applied_version": 3, "behind_checkins": 4,
    "refused_version": 5, "refused_reason": "dimming.dim_level: must be between 0 and 100",
    "last_seen": "2026-11-30T09:12:44Z", "online": True}


class DriftNodeOut(BaseModel):
    """A node whose applied configuration has stayed behind its desired one."""

    model_config = example(_DRIFT_EXAMPLE)

    device_id: str
    pole_id: str
    group: str
    desired_version: int = Field(description="The version the server offers the node")
    applied_version: int = Field(description="The version the node last reported applied")
    behind_checkins: int = Field(description="Check-ins in a row at which the node reported a "
                                             "version below its desired one (listed past 2)")
    refused_version: int | None = Field(description="The version the node refused, if a "
                                                    "refusal stands (null: none)")
    refused_reason: str | None = Field(description="The node's reason: the first rule the "
                                                   "version broke")
    last_seen: datetime | None = Field(description="The node's last check-in")
    online: bool


class DriftPage(BaseModel):
    model_config = example({"nodes": [_DRIFT_EXAMPLE], "next_cursor": None})

    nodes: list[DriftNodeOut] = Field(description="Drifting nodes, by registration order")
    next_cursor: int | None = Field(description="pass as ?cursor= for the next page; null when "
                                                "this is the last")


EventKind = Literal["registered", "enrollment_issued", "key_rotation_started", "key_rotated",
                    "key_retired", "decommissioned", "keyset_error", "config_refused",
                    "telemetry_conflict"]


class EventQuery(Strict):
    """Filters of GET /api/v1/devices/{id}/events; an unknown query parameter is a 422."""

    kind: EventKind | None = Field(None, description="Only events of this kind")
    since: datetime | None = Field(None, description="ISO 8601; from this time (inclusive); "
                                                     "no time zone means UTC")
    until: datetime | None = Field(None, description="ISO 8601; before this time (exclusive)")
    cursor: Annotated[int | None, Field(ge=1, le=2**63 - 1, description=(
        "next_cursor of the previous page: events older than it"))] = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


_EVENT_EXAMPLE = {
    "id": 812, "at": "2026-11-30T09:12:44Z", "kind": "config_refused",
    "detail": {"version": 5, "reason": "dimming.dim_level: must be between 0 and 100"}}


class DeviceEventOut(BaseModel):
    """Something that happened to a node, as the server recorded it."""

    model_config = example(_EVENT_EXAMPLE)

    id: int
    at: datetime
    kind: str = Field(description="registered, enrollment_issued, key_rotation_started, "
                                  "key_rotated, key_retired, decommissioned, keyset_error, "
                                  "config_refused, telemetry_conflict")
    detail: dict[str, Any] = Field(description="What the event records: by whom (registered, "
                                               "decommissioned, keys), the node's reason "
                                               "(keyset_error, config_refused), …")


class EventPage(BaseModel):
    model_config = example({"events": [_EVENT_EXAMPLE], "next_cursor": 790})

    events: list[DeviceEventOut] = Field(description="newest first")
    next_cursor: int | None = Field(description="pass as ?cursor= for the next (older) page; "
                                                "null when this is the last")
