"""Live telemetry stream: server-sent events of readings posted after it opened, resumable."""

from __future__ import annotations

import json
import time

PATH = "/device/v1/telemetry"
STREAM = "/api/v1/telemetry/stream"


def read_events(lines, count: int) -> tuple[list[dict], list[str]]:
    """Parse SSE lines until `count` reading events (or the stream ends); also the comments."""
    events, comments, current = [], [], {}
    for line in lines:
        if line.startswith(":"):
            comments.append(line)
        elif line == "":
            if current.get("event") == "reading":
                events.append({"id": current["id"], **json.loads(current["data"])})
                if len(events) == count:
                    break
            current = {}
        else:
            key, _, value = line.partition(": ")
            current[key] = value
    return events, comments


def post(device_call, creds, seqs, metric="temperature_c", v=18.0):
    batch = [{"seq": s, "ts": int(time.time()) - 5, "m": metric, "v": v + s} for s in seqs]
    assert device_call(creds, PATH, {"readings": batch}).status_code == 200


def test_stream_yields_readings_posted_after_it_opened(register, device_call, client, tokens):
    north, south = register(group="north"), register(group="south")
    post(device_call, north, [1])  # before the stream: not part of it
    query = "?group=north&max_events=3&timeout_s=20&poll_s=0.2"
    with client.stream("GET", STREAM + query, headers=tokens["reader"]) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        assert next(lines).startswith("retry:")  # the stream is open
        post(device_call, south, [1, 2])  # filtered out
        post(device_call, north, [2, 3])
        post(device_call, north, [4])
        events, _ = read_events(lines, 3)
    assert [(e["device_id"], e["seq"]) for e in events] == [
        (north["device_id"], 2), (north["device_id"], 3), (north["device_id"], 4)]
    first = events[0]
    assert first["value"] == 20.0 and first["unit"] == "°C" and first["group"] == "north"


def test_last_event_id_resumes_after_the_last_seen_event(register, device_call, client, tokens):
    creds = register()
    with client.stream("GET", STREAM + "?max_events=2&poll_s=0.2&timeout_s=20",
                       headers=tokens["reader"]) as resp:
        lines = resp.iter_lines()
        next(lines)
        post(device_call, creds, [1, 2, 3, 4])
        first, _ = read_events(lines, 2)
    assert [e["seq"] for e in first] == [1, 2]
    resume = {**tokens["reader"], "Last-Event-ID": first[-1]["id"]}
    with client.stream("GET", STREAM + "?max_events=2&poll_s=0.2&timeout_s=20",
                       headers=resume) as resp:
        rest, _ = read_events(resp.iter_lines(), 2)
    assert [e["seq"] for e in rest] == [3, 4]


def test_quiet_stream_sends_heartbeats_and_ends_at_timeout(client, tokens):
    started = time.monotonic()
    with client.stream("GET", STREAM + "?timeout_s=2.5&heartbeat_s=1&poll_s=0.2",
                       headers=tokens["reader"]) as resp:
        events, comments = read_events(resp.iter_lines(), 1)
    assert events == []
    assert any(c.startswith(": heartbeat") for c in comments) and ": timeout" in comments
    assert time.monotonic() - started < 10


def test_stream_refuses_bad_resume_id_and_technicians(client, tokens):
    bad = client.get(STREAM + "?max_events=1", headers={**tokens["reader"],
                                                        "Last-Event-ID": "nonsense"})
    assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["detail"]
    assert client.get(STREAM + "?max_events=1", headers=tokens["technician"]).status_code == 403
