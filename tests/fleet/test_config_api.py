"""Configuration through the API: documents refused by the node's schema (422 naming the key and
its rule), group and node documents merged deeply, GET with each key's source."""

from __future__ import annotations

from fleet.config_schema import defaults
from tests.fleet.test_checkin import REPORT


def put(client, tokens, path, config):
    return client.put(path, json={"config": config}, headers=tokens["operator"])


def test_a_value_out_of_range_or_an_unknown_key_is_refused_naming_key_and_rule(client, tokens,
                                                                            register):
    resp = put(client, tokens, "/api/v1/groups/harbour/config",
               {"dimming": {"dim_level": 500}, "log_level": "loud", "dim_pct": 40,
                "checkin_interval_s": 600})
    assert resp.status_code == 422, resp.text
    detail = {tuple(d["loc"]): d["msg"] for d in resp.json()["detail"]}
    assert detail == {
        ("body", "config", "dimming", "dim_level"): "must be an integer 0–100 (%), got 500",
        ("body", "config", "log_level"): 'must be one of debug, info, warn, error, got "loud"',
        ("body", "config", "dim_pct"): "unknown key (not a setting of the node)",
    }
    # nothing was stored: the group still has the defaults
    view = client.get("/api/v1/groups/harbour/config", headers=tokens["reader"]).json()
    assert view["version"] == 0 and view["config"] == {} and view["desired"] == defaults()
    for bad, msg in (({"dimming": 5}, "must be an object, got 5"),
                     ({"version": 7}, "is set by the server"),
                     ({"dimming": {"schedule": [[0, 2000, 10]]}}, "list of [start_minute"),
                     ({"telemetry_batch": 2.5}, "must be an integer 1–200 (records), got 2.5"),
                     ({"dimming": {"override_level": True}}, "must be null or an integer"),
                     ({"dimming": {"dusk_lux": 80.0}},
                      "must not exceed dimming.dawn_lux (60.0), got 80.0")):
        resp = put(client, tokens, "/api/v1/groups/harbour/config", bad)
        assert resp.status_code == 422 and msg in resp.json()["detail"][0]["msg"], (bad, resp.text)
    uid = register(group="harbour")["device_id"]
    resp = put(client, tokens, f"/api/v1/devices/{uid}/config", {"occupancy": {"hold_ms": -1}})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "config", "occupancy", "hold_ms"]
    audit = client.get("/api/v1/audit", params={"action": "config.set"},
                       headers=tokens["operator"]).json()["records"]
    assert audit and all(r["outcome"] == "refused" and r["status"] == 422 for r in audit)


def test_a_node_override_is_checked_over_its_groups_configuration(client, tokens, register):
    uid = register(group="harbour")["device_id"]
    assert put(client, tokens, "/api/v1/groups/harbour/config",
               {"dimming": {"full_level": 60}}).status_code == 200
    resp = put(client, tokens, f"/api/v1/devices/{uid}/config", {"dimming": {"dim_level": 70}})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["msg"] == \
        "must not exceed dimming.full_level (60), got 70"
    assert put(client, tokens, f"/api/v1/devices/{uid}/config",
               {"dimming": {"dim_level": 50}}).status_code == 200
    # and the group may not then lower full_level under that node's own dim_level
    resp = put(client, tokens, "/api/v1/groups/harbour/config", {"dimming": {"full_level": 40}})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["msg"] == (
        f"with the override of node {uid}: must not exceed dimming.full_level (40), got 50")


def test_group_and_node_documents_merge_deeply_at_check_in_and_in_get(
        client, tokens, register, device_call):
    creds = register(group="harbour")
    uid = creds["device_id"]
    put(client, tokens, "/api/v1/groups/harbour/config",
        {"checkin_interval_s": 600, "dimming": {"dim_level": 40, "dusk_lux": 25.0}})
    stored = put(client, tokens, f"/api/v1/devices/{uid}/config", {"dimming": {"dusk_lux": 20.0}})
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"scope": "device", "target": uid, "version": 1,
                             "config": {"dimming": {"dusk_lux": 20.0}}}
    reply = device_call(creds, "/device/v1/checkin", REPORT).json()
    assert reply["config"] == {"checkin_interval_s": 600,
                               "dimming": {"dim_level": 40, "dusk_lux": 20.0}}
    assert reply["config_version"] == 2

    view = client.get(f"/api/v1/devices/{uid}/config", headers=tokens["reader"])
    assert view.status_code == 200, view.text
    body = view.json()
    assert (body["scope"], body["target"], body["version"], body["group"]) == \
        ("device", uid, 1, "harbour")
    assert body["config"] == {"dimming": {"dusk_lux": 20.0}}
    assert body["desired_version"] == 2 and body["applied_version"] == 0
    assert body["desired"]["dimming"]["dim_level"] == 40  # the group's, kept by the node's
    assert body["desired"]["dimming"]["dusk_lux"] == 20.0  # override of a neighbouring key
    sources = {k["key"]: (k["value"], k["source"]) for k in body["keys"]}
    assert sources["dimming.dusk_lux"] == (20.0, "node")
    assert sources["dimming.dim_level"] == (40, "group")
    assert sources["checkin_interval_s"] == (600, "group")
    assert sources["dimming.full_level"] == (100, "default")
    assert sources["metrics.lux.alpha"] == (0.5, "default")
    assert sources["dimming.schedule"] == ([], "default")
    assert set(sources) == {k["key"] for k in client.get(
        "/api/v1/groups/harbour/config", headers=tokens["reader"]).json()["keys"]}
    assert body["refused"] == []

    group = client.get("/api/v1/groups/harbour/config", headers=tokens["reader"]).json()
    assert group["version"] == 1 and group["desired_version"] == 1
    assert group["group"] is None and group["applied_version"] is None
    gsources = {k["key"]: k["source"] for k in group["keys"]}
    assert gsources["dimming.dusk_lux"] == "group" and gsources["log_level"] == "default"
    assert group["desired"]["dimming"]["dusk_lux"] == 25.0

    assert client.get("/api/v1/devices/ll-000000000000/config",
                      headers=tokens["reader"]).status_code == 404
    assert client.get("/api/v1/groups/harbour/config").status_code == 401


def test_get_shows_what_a_node_would_refuse_of_a_document_stored_before_validation(
        client, tokens, register, session):
    from fleet.models import ConfigProfile

    uid = register(group="old")["device_id"]
    session.add(ConfigProfile(scope="group", target="old", version=3,
                              body={"dim_pct": 40, "dimming": {"dim_level": 20}}))
    session.commit()
    view = client.get(f"/api/v1/devices/{uid}/config", headers=tokens["reader"]).json()
    assert view["refused"] == ["dim_pct: unknown key (not a setting of the node)"]
    assert {"key": "dim_pct", "value": 40, "source": "group"} in view["keys"]
    # a node override is still checked over the group's valid keys only
    assert put(client, tokens, f"/api/v1/devices/{uid}/config",
               {"dimming": {"full_level": 15}}).status_code == 422
    assert put(client, tokens, f"/api/v1/devices/{uid}/config",
               {"dimming": {"full_level": 25}}).status_code == 200


def test_the_schema_is_served_and_the_readme_shows_it(client, tokens):
    from pathlib import Path

    from fleet.config_schema import SETTINGS, markdown_table

    served = client.get("/api/v1/config/schema", headers=tokens["reader"])
    assert served.status_code == 200, served.text
    by_key = {s["key"]: s for s in served.json()}
    assert list(by_key) == [s.path for s in SETTINGS]
    assert by_key["dimming.dim_level"] | {"meaning": None} == {
        "key": "dimming.dim_level", "type": "int", "min": 0, "max": 100, "choices": None,
        "unit": "%", "default": 30, "rule": "must be an integer 0–100 (%)", "meaning": None,
        "set_by_server": False}
    assert by_key["log_level"]["choices"] == ["debug", "info", "warn", "error"]
    assert by_key["version"]["set_by_server"] is True
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert markdown_table() in readme, "README's table: python -m fleet.config_schema"


def test_nan_and_infinity_are_refused_like_any_value_out_of_range(client, tokens):
    for raw, msg in ((b'{"config": {"lamp_rated_w": NaN}}', "must be a number 1–2000 (W), got NaN"),
                     (b'{"config": {"dimming": {"dusk_lux": Infinity}}}',
                      "must be a number 0–1000 (lx), got Infinity")):
        resp = client.put("/api/v1/groups/g/config", content=raw,
                          headers={**tokens["operator"], "Content-Type": "application/json"})
        assert resp.status_code == 422, resp.text
        assert resp.json()["detail"][0]["msg"] == msg
