"""Server configuration, read from LAMPLIGHTER_* environment variables with documented defaults."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the fleet server; see README "Configuration" for the table."""

    model_config = SettingsConfigDict(env_prefix="LAMPLIGHTER_", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Embedded database and artifact directory")
    database_url: str = Field("", description="SQLAlchemy URL; empty = SQLite at DATA_DIR/fleet.db")
    master_key: str = Field(
        "", description="Base64 of 32 random bytes; encrypts device secrets at rest (AES-256-GCM)"
    )
    production: bool = Field(False, description="Refuse to start without a master key")
    offline_after_s: int = Field(900, ge=10, description="Silence after which a node is offline")
    checkin_interval_s: int = Field(300, ge=5, description="Check-in interval sent to nodes")
    clock_skew_s: int = Field(300, ge=5, description="Largest accepted device timestamp skew")
    telemetry_max_batch: int = Field(500, ge=1, le=5000, description="Readings per ingest batch")
    telemetry_max_age_days: int = Field(30, ge=1, description="Oldest reading timestamp accepted")
    artifact_dir: Path | None = Field(None, description="Bundle store; default DATA_DIR/artifacts")
    tls_dir: Path | None = Field(None, description="CA, server certificate; default DATA_DIR/tls")
    max_bundle_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest release bundle")
    max_body_bytes: int = Field(1024 * 1024, ge=1024,
                                description="Largest request body but a release upload")
    log_level: str = Field("info", description="debug, info, warning or error")
    log_json: bool = Field(False, description="One JSON object per log line instead of text")

    @field_validator("master_key")
    @classmethod
    def _master_key_is_32_bytes(cls, value: str) -> str:
        if value:
            try:
                raw = base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise ValueError("LAMPLIGHTER_MASTER_KEY must be base64") from exc
            if len(raw) != 32:
                raise ValueError("LAMPLIGHTER_MASTER_KEY must decode to 32 bytes")
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL actually used (the embedded SQLite file when none is configured)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fleet.db').resolve()}"

    @property
    def resolved_artifact_dir(self) -> Path:
        """Where release bundles are stored (a directory every server process can read)."""
        return self.artifact_dir or self.data_dir / "artifacts"

    def master_key_bytes(self) -> bytes:
        """The 32-byte master key; in development without one, a fixed key is derived (logged)."""
        if self.master_key:
            return base64.b64decode(self.master_key)
        if self.production:
            raise RuntimeError(
                "LAMPLIGHTER_MASTER_KEY is required in production mode; create one with "
                "`lamplighter server gen-master-key`"
            )
        return b"lamplighter-development-only-key"  # 32 bytes; never used in production


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
