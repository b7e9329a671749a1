"""Telemetry reads: roles, filters by node/group/district/area/time/metric, pages, aggregates."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

PATH = "/device/v1/telemetry"
T0 = (int(time.time()) // 3600 - 10) * 3600  # an hour boundary ten hours ago

NODES = {  # name -> registration fields
    "a": {"group": "north", "district": "harbour", "lat": 51.50, "lon": -0.12},
    "b": {"group": "north", "district": "old_town", "lat": 51.52, "lon": -0.10},
    "c": {"group": "south", "district": "harbour", "lat": 51.60, "lon": 0.05},
}
DATA = [  # node, seconds after T0, metric, value
    ("a", 0, "temperature_c", 10.0), ("a", 600, "temperature_c", 12.5),
    ("a", 3660, "temperature_c", 14.0), ("a", 120, "humidity_pct", 80.0),
    ("b", 300, "temperature_c", 9.0), ("b", 3700, "temperature_c", 11.0),
    ("b", 3900, "temperature_c", 13.5), ("c", 30, "temperature_c", 7.0),
    ("c", 7200, "lux", 15000.0), ("c", 7300, "lux", 0.0),
]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@pytest.fixture
def fleet_data(register, device_call) -> dict[str, str]:
    """Three nodes with the readings of DATA; returns node name -> device uid."""
    uids = {}
    for name, fields in NODES.items():
        creds = register(**fields)
        uids[name] = creds["device_id"]
        batch = [{"seq": i, "ts": T0 + dt, "m": m, "v": v}
                 for i, (node, dt, m, v) in enumerate(DATA) if node == name]
        assert device_call(creds, PATH, {"readings": batch}).status_code == 200
    return uids


def expected(uids: dict[str, str], keep=lambda node, dt, m: True) -> list[tuple]:
    rows = [(T0 + dt, uids[node], i, m, v) for i, (node, dt, m, v) in enumerate(DATA)
            if keep(node, dt, m)]
    return [(iso(ts), uid, seq, m, v) for ts, uid, seq, m, v in sorted(rows)]


def fetch(client, tokens, query: str = "", role: str = "reader") -> list[tuple]:
    resp = client.get(f"/api/v1/telemetry/readings?{query}", headers=tokens[role])
    assert resp.status_code == 200, resp.text
    return [(r["ts"], r["device_id"], r["seq"], r["metric"], r["value"])
            for r in resp.json()["readings"]]


def test_reader_and_operator_read_but_technician_cannot(fleet_data, client, tokens):
    assert fetch(client, tokens) == expected(fleet_data)
    assert fetch(client, tokens, role="operator") == expected(fleet_data)
    resp = client.get("/api/v1/telemetry/readings", headers=tokens["technician"])
    assert resp.status_code == 403 and "technician" in resp.json()["detail"]
    assert client.get("/api/v1/telemetry/readings").status_code == 401


def test_reading_carries_node_identity_and_unit(fleet_data, client, tokens):
    first = client.get("/api/v1/telemetry/readings?limit=1", headers=tokens["reader"]).json()
    row = first["readings"][0]
    assert row["device_id"] == fleet_data["a"] and row["group"] == "north"
    assert row["district"] == "harbour" and row["pole_id"].startswith("P-")
    assert row["unit"] == "°C" and row["ts"] == iso(T0)


@pytest.mark.parametrize(("query", "keep"), [
    ("group=north", lambda n, dt, m: n in "ab"),
    ("district=harbour", lambda n, dt, m: n in "ac"),
    ("group=north&district=harbour", lambda n, dt, m: n == "a"),
    ("min_lat=51.49&min_lon=-0.11&max_lat=51.61&max_lon=0.1", lambda n, dt, m: n in "bc"),
    ("metric=lux", lambda n, dt, m: m == "lux"),
    ("metric=lux&metric=humidity_pct", lambda n, dt, m: m in ("lux", "humidity_pct")),
    (f"start={T0 + 300}&end={T0 + 3700}", lambda n, dt, m: 300 <= dt < 3700),
    (f"start={iso(T0 + 3600)}", lambda n, dt, m: dt >= 3600),
    (f"end={iso(T0 + 7200).replace('.000Z', '%2B01:00')}", lambda n, dt, m: dt < 3600),
    (f"end={iso(T0 + 7200).replace('.000Z', '+01:00')}", lambda n, dt, m: dt < 3600),
], ids=["group", "district", "group+district", "bbox", "metric", "metrics", "epoch range",
        "iso start", "iso end with offset", "unencoded plus"])
def test_filters(fleet_data, client, tokens, query, keep):
    got = fetch(client, tokens, query)
    assert got and got == expected(fleet_data, keep)


def test_filter_by_node(fleet_data, client, tokens):
    b, c = fleet_data["b"], fleet_data["c"]
    assert fetch(client, tokens, f"device={b}") == expected(fleet_data, lambda n, dt, m: n == "b")
    both = fetch(client, tokens, f"device={b}&device={c}&metric=temperature_c")
    assert both == expected(fleet_data, lambda n, dt, m: n in "bc" and m == "temperature_c")


def test_keyset_pages_cover_everything_once(fleet_data, client, tokens):
    seen, after, pages = [], "", 0
    while True:
        resp = client.get(f"/api/v1/telemetry/readings?limit=3{after}",
                          headers=tokens["reader"]).json()
        seen += [(r["ts"], r["device_id"], r["seq"], r["metric"], r["value"])
                 for r in resp["readings"]]
        pages += 1
        if resp["next"] is None:
            break
        after = f"&after={resp['next']}"
    assert pages == 4 and seen == expected(fleet_data)


@pytest.mark.parametrize("query", [
    "metric=co2_ppm", "min_lat=51", "start=yesterday", f"start={T0}&end={T0}",
    "after=garbage", "limit=0", "min_lat=100&min_lon=0&max_lat=101&max_lon=1",
])
def test_bad_filters_are_422_with_a_reason(client, tokens, query):
    resp = client.get(f"/api/v1/telemetry/readings?{query}", headers=tokens["reader"])
    assert resp.status_code == 422 and resp.json()["detail"]


def model_buckets(uids, bucket_s, by, keep=lambda n, dt, m: True) -> list[dict]:
    groups: dict[tuple, list[float]] = {}
    for node, dt, m, v in DATA:
        if not keep(node, dt, m):
            continue
        start = (T0 + dt) // bucket_s * bucket_s
        who = {"none": None, "device": uids[node], "group": NODES[node]["group"]}[by]
        groups.setdefault((start, "" if who is None else who, m), []).append(v)
    out = []
    for (start, who, m), values in sorted(groups.items()):
        row = {"bucket_start": iso(start), "metric": m, "min": min(values),
               "avg": sum(values) / len(values), "max": max(values), "count": len(values)}
        if by != "none":
            row["device_id" if by == "device" else "group"] = who
        out.append(row)
    return out


@pytest.mark.parametrize(("bucket", "bucket_s"), [("1h", 3600), ("30m", 1800), ("1d", 86400)])
@pytest.mark.parametrize("by", ["none", "device", "group"])
def test_aggregates_match_the_data(fleet_data, client, tokens, bucket, bucket_s, by):
    resp = client.get(f"/api/v1/telemetry/aggregate?bucket={bucket}&by={by}",
                      headers=tokens["reader"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["bucket_s"] == bucket_s and body["truncated"] is False
    got = [{k: v for k, v in r.items() if v is not None and k != "unit"} for r in body["rows"]]
    want = model_buckets(fleet_data, bucket_s, by)
    assert [{k: r[k] for k in r if k != "avg"} for r in got] == \
           [{k: r[k] for k in r if k != "avg"} for r in want]
    assert [r["avg"] for r in got] == pytest.approx([r["avg"] for r in want])


def test_aggregate_with_filters_and_units(fleet_data, client, tokens):
    resp = client.get("/api/v1/telemetry/aggregate?bucket=1h&metric=temperature_c&group=north",
                      headers=tokens["reader"]).json()
    want = model_buckets(fleet_data, 3600, "none",
                         lambda n, dt, m: m == "temperature_c" and n in "ab")
    assert [(r["bucket_start"], r["count"], r["min"], r["max"]) for r in resp["rows"]] == \
           [(r["bucket_start"], r["count"], r["min"], r["max"]) for r in want]
    assert {r["unit"] for r in resp["rows"]} == {"°C"}


def test_aggregate_limit_reports_truncation(fleet_data, client, tokens):
    resp = client.get("/api/v1/telemetry/aggregate?bucket=1h&limit=2",
                      headers=tokens["reader"]).json()
    assert len(resp["rows"]) == 2 and resp["truncated"] is True


@pytest.mark.parametrize("query", ["bucket=1w", "bucket=0s", "bucket=1h&by=pole"])
def test_bad_aggregate_parameters(client, tokens, query):
    resp = client.get(f"/api/v1/telemetry/aggregate?{query}", headers=tokens["reader"])
    assert resp.status_code == 422


def test_technician_cannot_aggregate_or_see_catalogue(client, tokens):
    for path in ("aggregate?bucket=1h", "metrics", "export.csv", "stream?max_events=1"):
        resp = client.get(f"/api/v1/telemetry/{path}", headers=tokens["technician"])
        assert resp.status_code == 403, path


def test_catalogue_lists_every_metric_with_unit_and_range(client, tokens):
    rows = client.get("/api/v1/telemetry/metrics", headers=tokens["reader"]).json()
    by_name = {r["name"]: r for r in rows}
    assert by_name["pressure_hpa"]["unit"] == "hPa"
    assert (by_name["pressure_hpa"]["low"], by_name["pressure_hpa"]["high"]) == (300, 1100)
    assert by_name["presence_count"]["integer"] is True
    assert all(r["meaning"] for r in rows) and len(rows) == 9
