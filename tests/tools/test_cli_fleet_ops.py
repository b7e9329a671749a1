"""The operator's everyday commands against a live server: device list/show, config get/set,
command send/list, and their --help texts."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from tests.rigs.device_signing import signed_headers
from tools.cli import api_client
from tools.cli.config import parse_assignments, parse_value
from tools.cli.main import app as cli

pytestmark = pytest.mark.usefixtures("wide_console")


def _runner(server, token: str | None = None) -> CliRunner:
    return CliRunner(env={"LAMPLIGHTER_SERVER": server.url,
                          "LAMPLIGHTER_TOKEN": token or server.operator_token,
                          "LAMPLIGHTER_CA": server.verify, "COLUMNS": "250"})


def _check_in(server, creds: dict, body: dict) -> dict:
    raw = json.dumps(body).encode()
    headers = signed_headers(creds["device_id"], creds["secret"], "POST", "/device/v1/checkin",
                             raw)
    with server.client() as c:
        resp = c.post("/device/v1/checkin", content=raw, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_device_list_and_show(live_server):
    east = live_server.register("OPS-1", group="harbour-east", district="harbour",
                                tags=["led-v2"], lat=51.5, lon=-0.12)
    live_server.register("OPS-2", group="old-town", district="old-town")
    _check_in(live_server, east, {"fw_version": "1.4.2", "uptime_s": 60, "rssi": -61,
                                  "lamp_level_pct": 35.0, "queue_len": 2})
    run = _runner(live_server)

    listed = run.invoke(cli, ["device", "list"])
    assert listed.exit_code == 0, listed.output
    row1 = next(line for line in listed.output.splitlines() if "OPS-1" in line)
    row2 = next(line for line in listed.output.splitlines() if "OPS-2" in line)
    assert east["device_id"] in row1 and "online" in row1 and "1.4.2" in row1
    assert "offline" in row2 and "never" in row2
    assert "2 node(s)" in listed.output

    for argv, shown, hidden in (
            (["--group", "harbour-east"], "OPS-1", "OPS-2"),
            (["--district", "old-town"], "OPS-2", "OPS-1"),
            (["--tag", "led-v2"], "OPS-1", "OPS-2"),
            (["--online"], "OPS-1", "OPS-2"),
            (["--offline"], "OPS-2", "OPS-1")):
        only = run.invoke(cli, ["device", "list", *argv])
        assert only.exit_code == 0, only.output
        assert shown in only.output and hidden not in only.output, argv
    none = run.invoke(cli, ["device", "list", "--status", "decommissioned"])
    assert none.exit_code == 0 and "no nodes match" in none.output
    paged = run.invoke(cli, ["device", "list", "--limit", "1"])
    assert "there may be more (--offset 1)" in paged.output
    as_json = run.invoke(cli, ["device", "list", "--json", "--group", "old-town"])
    assert [n["pole_id"] for n in json.loads(as_json.output)] == ["OPS-2"]
    bad = run.invoke(cli, ["device", "list", "--status", "asleep"])
    assert bad.exit_code == 2 and "active or decommissioned" in bad.output

    shown = run.invoke(cli, ["device", "show", east["device_id"]])
    assert shown.exit_code == 0, shown.output
    text = shown.output
    for expected in ("OPS-1", "harbour-east", "led-v2", "51.5, -0.12", "online", "1.4.2",
                     "0 applied", "key version", "s ago)", "lamp_level_pct", "35.0", "rssi",
                     "-61", f"lamplighter command list {east['device_id']}"):
        assert expected in text, expected
    missing = run.invoke(cli, ["device", "show", "ll-000000000000"])
    assert missing.exit_code == 1 and "refused (404): no device ll-000000000000" in missing.output


def _row(output: str, key: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.split()[:1] == [key])


def test_config_get_and_set(live_server, tmp_path):
    node = live_server.register("CFG-1", group="harbour")
    uid = node["device_id"]
    run = _runner(live_server)

    first = run.invoke(cli, ["config", "set", "--group", "harbour", "dimming.dim_level=40",
                             "checkin_interval_s=600"])
    assert first.exit_code == 0, first.output
    assert "group harbour: configuration version 1 stored" in first.output
    # merged key by key into what is stored: dimming.dim_level stays beside dusk_lux
    second = run.invoke(cli, ["config", "set", "--group", "harbour", "dimming.dusk_lux=25"])
    assert second.exit_code == 0, second.output
    assert "configuration version 2 stored" in second.output
    assert _row(second.output, "dimming.dim_level") == ["dimming.dim_level", "40"]
    with live_server.client(headers=live_server.operator_headers) as api:
        audit = api.get("/api/v1/audit", params={"action": "config.set"}).json()["records"]
    assert audit[0]["detail"] == {"keys": ["checkin_interval_s", "dimming.dim_level",
                                           "dimming.dusk_lux"]}

    body = tmp_path / "override.json"
    body.write_text(json.dumps({"dimming": {"dusk_lux": 10.0, "dim_level": 20}}))
    override = run.invoke(cli, ["config", "set", "--device", uid, "--replace", "--file",
                                str(body), "dimming.dim_level=30"])
    assert override.exit_code == 0, override.output
    assert f"device {uid}: configuration version 1 stored" in override.output
    assert _row(override.output, "dimming.dim_level") == ["dimming.dim_level", "30"]
    # the node receives the deep merge at its next check-in
    reply = _check_in(live_server, node, {"fw_version": "1.0.0"})
    assert reply["config_version"] == 3
    assert reply["config"] == {"checkin_interval_s": 600,
                               "dimming": {"dim_level": 30, "dusk_lux": 10.0}}

    got = run.invoke(cli, ["config", "get", "--device", uid])
    assert got.exit_code == 0, got.output
    assert f"device {uid} (group harbour): its overrides are version 1; desired " \
           "configuration version 3, applied 0 (not yet)" in got.output
    assert _row(got.output, "dimming.dusk_lux") == ["dimming.dusk_lux", "10.0", "node"]
    assert _row(got.output, "dimming.dim_level") == ["dimming.dim_level", "30", "node"]
    assert _row(got.output, "checkin_interval_s") == ["checkin_interval_s", "600", "group"]
    assert "log_level" not in got.output and "key(s) at their defaults (--all" in got.output
    everything = run.invoke(cli, ["config", "get", "--device", uid, "--all"])
    assert _row(everything.output, "log_level") == ["log_level", '"info"', "default"]
    group = run.invoke(cli, ["config", "get", "--group", "harbour"])
    assert group.exit_code == 0 and "group harbour: configuration version 2" in group.output
    assert _row(group.output, "dimming.dusk_lux") == ["dimming.dusk_lux", "25", "group"]
    as_json = json.loads(run.invoke(cli, ["config", "get", "--group", "harbour",
                                          "--json"]).output)
    assert as_json["config"] == {"checkin_interval_s": 600,
                                 "dimming": {"dim_level": 40, "dusk_lux": 25}}

    refused = run.invoke(cli, ["config", "set", "--group", "harbour", "dimming.dim_level=500"])
    assert refused.exit_code == 1
    assert "the server refused this configuration (422): config.dimming.dim_level: must be " \
           "an integer 0–100 (%), got 500" in " ".join(refused.output.split())

    for argv, reason in (
            (["config", "set", "log_level=debug"], "exactly one of --group G and --device ID"),
            (["config", "set", "--group", "g", "--device", uid, "a=1"], "exactly one of"),
            (["config", "set", "--group", "g", "--replace", "dim_level"], "is not KEY=VALUE"),
            (["config", "set", "--group", "g", "dimming.=1"], "is not KEY=VALUE"),
            (["config", "set", "--group", "g"], "give KEY=VALUE arguments or --file F")):
        refused = run.invoke(cli, argv)
        assert refused.exit_code == 2 and reason in refused.output, refused.output
    not_object = tmp_path / "list.json"
    not_object.write_text("[1, 2]")
    refused = run.invoke(cli, ["config", "set", "--group", "g", "--file", str(not_object)])
    assert refused.exit_code == 2 and "must hold a JSON object" in refused.output
    unknown = run.invoke(cli, ["config", "set", "--device", "ll-000000000000", "--replace",
                               "a=1"])
    assert unknown.exit_code == 1 and "(404): no device ll-000000000000" in unknown.output

    reader = _token(live_server, "reader")
    forbidden = _runner(live_server, reader).invoke(
        cli, ["config", "set", "--group", "harbour", "--replace", "a=1"])
    assert forbidden.exit_code == 1 and "refused (403)" in forbidden.output


def _mock_server(monkeypatch, answer) -> None:
    real = httpx.Client
    monkeypatch.setattr(api_client.httpx, "Client",
                        lambda **kw: real(**{**kw, "transport": httpx.MockTransport(answer)}))


def test_config_get_and_set_on_a_server_without_a_read_route(monkeypatch):
    """An older server answers GET …/config with 405: set refuses to merge blindly, get shows
    the versions the nodes applied."""
    uid = "ll-00000000abcd"

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/config") and request.method == "GET":
            return httpx.Response(405, json={"detail": "Method Not Allowed"})
        if path == f"/api/v1/devices/{uid}":
            return httpx.Response(200, json={"device_id": uid, "group": "harbour",
                                             "applied_config_version": 2, "last_seen": None})
        if path == "/api/v1/devices":
            return httpx.Response(200, json=[{"device_id": uid, "pole_id": "CFG-1",
                                              "applied_config_version": 2}])
        return httpx.Response(500)

    _mock_server(monkeypatch, answer)
    opts = ["--server", "https://fleet.invalid", "--token", "t"]
    merged = CliRunner().invoke(cli, ["config", "set", "--group", "harbour",
                                      "dimming.dim_level=40", *opts])
    assert merged.exit_code == 1
    assert "no route to read a stored configuration" in merged.output
    assert "--replace" in merged.output and '{"dimming": {"dim_level": 40}}' in merged.output
    got = CliRunner().invoke(cli, ["config", "get", "--device", uid, *opts])
    assert got.exit_code == 1 and "no route to read a stored configuration" in got.output
    assert f"{uid} (group harbour) has applied configuration version 2" in got.output
    group = CliRunner().invoke(cli, ["config", "get", "--group", "harbour", *opts])
    assert group.exit_code == 1 and f"{uid} (CFG-1): applied configuration version" in \
        group.output
    assert "--action config.set --target group:harbour" in group.output


def _token(server, role: str) -> str:
    from sqlmodel import Session

    from fleet.core.db import make_engine
    from fleet.tokens import create_token

    engine = make_engine(server.env["LAMPLIGHTER_DATABASE_URL"])
    with Session(engine) as session:
        token = create_token(session, f"a-{role}", role)
    engine.dispose()
    return token


def test_config_set_shows_the_servers_422_reason(monkeypatch):
    """A server that validates keys answers 422; the reason is printed field by field."""
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"scope": "group", "target": "harbour",
                                             "version": 3,
                                             "config": {"dimming": {"dusk_lux": 20.0}}})
        sent = json.loads(request.content)
        # merged into the stored document key by key
        assert sent == {"config": {"dimming": {"dusk_lux": 20.0, "dim_level": 400}}}
        return httpx.Response(422, json={"detail": [
            {"loc": ["body", "config", "dimming", "dim_level"],
             "msg": "must be an integer 0–100 (%), got 400", "type": "config"}]})

    _mock_server(monkeypatch, answer)
    result = CliRunner().invoke(cli, ["config", "set", "--group", "harbour",
                                      "dimming.dim_level=400",
                                      "--server", "https://fleet.invalid", "--token", "t"])
    assert result.exit_code == 1
    assert "the server refused this configuration (422): config.dimming.dim_level: must be an " \
           "integer 0–100 (%), got 400" in " ".join(result.output.split())


def test_values_parse_as_json_else_strings():
    assert parse_value("40") == 40 and parse_value("2.5") == 2.5
    assert parse_value("true") is True and parse_value("null") is None
    assert parse_value("[1,2]") == [1, 2] and parse_value('{"a":1}') == {"a": 1}
    assert parse_value("auto") == "auto" and parse_value('"40"') == "40"
    assert parse_value("") == ""
    assert parse_assignments(["a=1", "b=x=y", " c =on"], "--arg") == {
        "a": 1, "b": "x=y", "c": "on"}
    assert parse_assignments(["a.b=1", "a.c=2", "d=3"], "KEY=VALUE", dotted=True) == {
        "a": {"b": 1, "c": 2}, "d": 3}
    assert parse_assignments(["a.b=1"], "--arg") == {"a.b": 1}


def test_command_send_and_list(live_server):
    node = live_server.register("CMD-1")
    uid = node["device_id"]
    run = _runner(live_server)

    sent = run.invoke(cli, ["command", "send", uid, "identify"])
    assert sent.exit_code == 0, sent.output
    assert f"command 1 (identify) queued for {uid}" in sent.output
    assert "unless it expires first" in sent.output
    override = run.invoke(cli, ["command", "send", uid, "lamp_override", "--arg",
                                "level_pct=100", "--arg", "minutes=10"])
    assert override.exit_code == 0, override.output
    assert '{"level_pct":100,"minutes":10}' in override.output
    too_bright = run.invoke(cli, ["command", "send", uid, "lamp_override", "--arg",
                                  "level_pct=150"])
    assert too_bright.exit_code == 1
    assert "refused (422): lamp_override needs args.level_pct between 0 and 100" in \
        too_bright.output

    refused = run.invoke(cli, ["command", "send", uid, "explode"])
    assert refused.exit_code == 1
    assert "refused (422): type: Input should be 'reboot', 'identify' or 'lamp_override'" in \
        refused.output
    missing = run.invoke(cli, ["command", "send", "ll-000000000000", "reboot"])
    assert missing.exit_code == 1 and "(404)" in missing.output

    listed = run.invoke(cli, ["command", "list", uid])
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.output.splitlines() if "identify" in line
            or "lamp_override" in line]
    assert "lamp_override" in rows[0] and "identify" in rows[1]  # newest first
    assert all("waiting" in r and "queued" in r for r in rows)
    short = run.invoke(cli, ["command", "send", uid, "reboot", "--expires-in", "120"])
    assert short.exit_code == 0, short.output
    too_short = run.invoke(cli, ["command", "send", uid, "reboot", "--expires-in", "5"])
    assert too_short.exit_code == 1 and "expires_in_s" in too_short.output

    # delivered at the next check-in, acknowledged at the one after
    reply = _check_in(live_server, node, {"fw_version": "1.0.0"})
    first = next(c for c in reply["commands"] if c["type"] == "identify")
    reboot = next(c for c in reply["commands"] if c["type"] == "reboot")
    _check_in(live_server, node, {"fw_version": "1.0.0",
                                  "acks": [{"id": first["id"], "ok": True, "result": "blinked"},
                                           {"id": reboot["id"], "ok": False,
                                            "reason": "unknown command"}]})
    after = run.invoke(cli, ["command", "list", uid])
    row = next(line for line in after.output.splitlines() if "identify" in line)
    assert "blinked" in row and "acked" in row
    assert "waiting" not in row and "not yet" not in row
    refused = next(line for line in after.output.splitlines() if "reboot" in line)
    assert "refused: unknown command" in refused
    pending = next(line for line in after.output.splitlines() if "lamp_override" in line)
    assert "not yet" in pending and "delivered" in pending
    as_json = run.invoke(cli, ["command", "list", uid, "--json"])
    assert [c["type"] for c in json.loads(as_json.output)] == ["reboot", "lamp_override",
                                                               "identify"]

    empty = run.invoke(cli, ["command", "list", live_server.register("CMD-2")["device_id"]])
    assert empty.exit_code == 0 and "no commands for" in empty.output


@pytest.mark.parametrize(("argv", "phrases"), [
    (["device", "list"], ["--group", "--district", "--tag", "--online", "--offline", "--json",
                          "--server", "--token", "--ca"]),
    (["device", "show"], ["last check-in", "key", "--json"]),
    (["config", "get"], ["--group", "--device", "default, group or node", "--all",
                         "no GET route"]),
    (["config", "set"], ["KEY=VALUE", "--file", "--replace", "JSON where it parses",
                         "dimming.dim_level=40", "key by key", "422"]),
    (["command", "send"], ["reboot, identify or lamp_override", "--arg", "KEY=VALUE"]),
    (["command", "list"], ["newest first", "acknowledged"]),
    (["server", "tokens", "list"], ["--all", "--role", "Never a token"]),
    (["config", "get"], ["refused", "drifting", "two check-ins"]),
    (["config", "drift"], ["--group", "more than two check-ins", "reason", "last check-in",
                           "--cursor", "--json"]),
    (["device", "events"], ["newest first", "--kind", "config_refused", "--since", "--until",
                            "--limit", "--cursor", "--json"]),
])
def test_help_texts(argv, phrases):
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    for phrase in phrases:
        assert phrase in text, (argv, phrase)
