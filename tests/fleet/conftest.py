"""API test fixtures: migrated SQLite and PostgreSQL databases, an app, tokens, signed calls."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, SQLModel

from fleet.core import db as fleet_db
from fleet.core import settings as fleet_settings
from fleet.tokens import create_token
from tests.rigs.device_signing import signed_headers
from tests.rigs.scratch_postgres import scratch_postgres


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated, dropped at the end."""
    with scratch_postgres("lamplighter_test") as url:
        fleet_db.migrate(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file copied for each test (migrating once keeps the suite fast)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    fleet_db.migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """The database URL of this test: every API test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        target = tmp_path / "fleet.db"
        target.write_bytes(sqlite_template.read_bytes())
        return f"sqlite:///{target}"
    url = request.getfixturevalue("pg_database")
    engine = fleet_db.make_engine(url)
    tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def app_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the server's settings at this test's database and data directory."""
    monkeypatch.setenv("LAMPLIGHTER_DATABASE_URL", db_url)
    monkeypatch.setenv("LAMPLIGHTER_DATA_DIR", str(tmp_path / "var"))
    fleet_settings.get_settings.cache_clear()
    fleet_db.get_engine.cache_clear()
    yield db_url
    fleet_db.get_engine().dispose()
    fleet_settings.get_settings.cache_clear()
    fleet_db.get_engine.cache_clear()


@pytest.fixture
def client(app_env: str) -> Iterator[TestClient]:
    from fleet.app import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.fixture
def session(app_env: str) -> Iterator[Session]:
    with Session(fleet_db.get_engine()) as s:
        yield s


@pytest.fixture
def tokens(session: Session) -> dict[str, dict[str, str]]:
    """Authorization headers for one token of each role."""
    return {role: {"Authorization": f"Bearer {create_token(session, f'test-{role}', role)}"}
            for role in ("operator", "technician", "reader")}


@pytest.fixture
def register(client: TestClient, tokens: dict[str, dict[str, str]]) -> Callable[..., dict]:
    """Register a node through the API and return its credentials."""
    counter = iter(range(1, 10_000))

    def make(**fields: object) -> dict:
        body = {"pole_id": f"P-{next(counter):05d}", "district": "harbour", "group": "default",
                "lat": 51.5, "lon": -0.12, "board": "emulated", **fields}
        resp = client.post("/api/v1/devices", json=body, headers=tokens["operator"])
        assert resp.status_code == 201, resp.text
        return resp.json()

    return make


@pytest.fixture
def device_call(client: TestClient) -> Callable[..., object]:
    """POST a JSON body to a device endpoint, signed as `creds` (overrides for refusal tests)."""

    def call(creds: dict, path: str, payload: object, *, secret: str | None = None,
             ts: int | None = None, nonce: str | None = None, body: bytes | None = None,
             as_device: str | None = None):
        raw = json.dumps(payload).encode() if body is None else body
        headers = signed_headers(as_device or creds["device_id"], secret or creds["secret"],
                                 "POST", path, json.dumps(payload).encode(), ts=ts, nonce=nonce)
        return client.post(path, content=raw, headers=headers)

    return call


@pytest.fixture
def release_key():
    """A release signing key (private) for this test."""
    from ota.keys import generate_private_key

    return generate_private_key()


@pytest.fixture
def make_bundle(tmp_path: Path, release_key) -> Callable[..., Path]:
    """Build a small signed app bundle and return its path."""
    import time as _time

    from ota.bundle import stage_release, write_bundle
    from ota.manifest import sign_manifest

    counter = iter(range(10_000))

    def build(version: str, sequence: int, *, board: list[str] | None = None, key=None,
              expires_in: int = 86400, app_text: str = "VERSION = 1\n") -> Path:
        n = next(counter)
        app = tmp_path / f"app{n}"
        app.mkdir()
        (app / "app_version.py").write_text(f"VERSION = {version!r}\n")
        (app / "extra.py").write_text(app_text)
        now = int(_time.time())
        manifest = stage_release(app, tmp_path / f"stage{n}", version=version, sequence=sequence,
                                 board=board or ["emulated"], expires=now + expires_in,
                                 created=now - 10, compile_py=False)
        out = tmp_path / f"bundle{n}.llb"
        write_bundle(tmp_path / f"stage{n}", sign_manifest(manifest, key or release_key), out)
        return out

    return build


@pytest.fixture
def trusted(client: TestClient, tokens: dict[str, dict[str, str]], release_key) -> str:
    """Trust the test's release key on the server; returns its key id."""
    from ota.keys import raw_public_key

    resp = client.post("/api/v1/keys", json={"public_key": raw_public_key(release_key).hex(),
                                             "name": "test"}, headers=tokens["operator"])
    assert resp.status_code == 201, resp.text
    return resp.json()["key_id"]


@pytest.fixture
def upload(client: TestClient, tokens: dict[str, dict[str, str]]) -> Callable[..., object]:
    """Upload a bundle file as a release; returns the response."""

    def send(path: Path):
        return client.post("/api/v1/releases", content=path.read_bytes(),
                           headers=dict(tokens["operator"],
                                        **{"Content-Type": "application/octet-stream"}))

    return send


@pytest.fixture
def checked_in_nodes(register, device_call) -> Callable[[int], list[dict]]:
    """`count` nodes of group harbour running 1.0.0, each checked in once."""

    def make(count: int) -> list[dict]:
        nodes = [register(group="harbour") for _ in range(count)]
        for n in nodes:
            assert device_call(n, "/device/v1/checkin", {
                "fw_version": "1.0.0", "uptime_s": 60, "config_version": 0}).status_code == 200
        return nodes

    return make


@pytest.fixture
def release(trusted, make_bundle, upload) -> dict:
    """Release 1.1.0 (sequence 11), signed by a trusted key and uploaded."""
    resp = upload(make_bundle("1.1.0", 11))
    assert resp.status_code == 201
    return resp.json()
