"""Request and response bodies of the API (validated at the edge; the tables live in models.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1, max_length=64,
                            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]
Tag = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.:-]+$")]
BOARDS = ("esp32_devkitc", "emulated")
INT32_MAX = 2**31 - 1
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]  # fits a 32-bit column on every database


class Strict(BaseModel):
    """Bodies refuse unknown fields: a typo is a 422 that names it, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DeviceRegistration(Strict):
    pole_id: Name
    district: Annotated[str, Field(max_length=64)] = ""
    group: Name = "default"
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    board: Literal["esp32_devkitc", "emulated"] = "esp32_devkitc"
    tags: Annotated[list[Tag], Field(max_length=32)] = []


class DeviceBatch(Strict):
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


class ConfigBody(Strict):
    config: dict[str, Any] = Field(description="Keys the node's configuration accepts")


class ConfigOut(BaseModel):
    scope: str
    target: str
    version: int
    config: dict[str, Any]


class CommandIn(Strict):
    type: Literal["reboot", "identify", "lamp_override"]
    args: dict[str, Any] = {}


class CommandOut(BaseModel):
    id: int
    device_id: str
    type: str
    args: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None
    acked_at: datetime | None
    result: str


class EnrollRequest(Strict):
    code: Annotated[str, Field(min_length=8, max_length=32)]


class CommandAck(Strict):
    id: Count
    ok: bool = True
    result: Annotated[str, Field(max_length=200)] = ""


class CheckIn(Strict):
    fw_version: Annotated[str, Field(max_length=32)] = ""
    uptime_s: Count = 0
    mem_free: Count | None = None
    rssi: Annotated[int, Field(ge=-130, le=0)] | None = None
    boot_reason: Annotated[str, Field(max_length=32)] = ""
    sensor_faults: Annotated[dict[Annotated[str, Field(max_length=24)], Count],
                             Field(max_length=16)] = {}
    config_version: Count = 0
    update_state: Annotated[str, Field(max_length=32)] = "idle"
    queue_len: Count | None = None
    queue_dropped: Count | None = None
    lamp_level_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    acks: Annotated[list[CommandAck], Field(max_length=50)] = []


class PendingCommand(BaseModel):
    id: int
    type: str
    args: dict[str, Any]


class CheckInReply(BaseModel):
    server_time: int
    next_checkin_s: int
    config_version: int | None = None
    config: dict[str, Any] | None = None
    commands: list[PendingCommand] = []
    update: dict[str, Any] | None = None


class TokenOut(BaseModel):
    name: str
    role: str
    token: str
