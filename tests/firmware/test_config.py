"""Config on MicroPython: defaults, refusals with reasons, corrupt files, atomic save."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time

from tests.rigs.micropython import micropython_command, micropython_env

VALIDATE = """
import json
from core.config import validate
merged, errors = validate(json.loads(%r))
print(json.dumps([merged, errors]))
"""


def validate(mpy, new_cfg) -> tuple[dict, list[str]]:
    merged, errors = mpy(VALIDATE % json.dumps(new_cfg))[0]
    return merged, errors


def defaults(mpy) -> dict:
    return mpy("import json\nfrom core.config import DEFAULTS\nprint(json.dumps(DEFAULTS))\n")[0]


def test_defaults_cover_every_setting_and_pass_their_own_validation(mpy):
    base = defaults(mpy)
    assert set(base["metrics"]) == {
        "temperature_c",
        "humidity_pct",
        "pressure_hpa",
        "pm25_ugm3",
        "pm10_ugm3",
        "lux",
    }
    for key in ("checkin_interval_s", "telemetry_batch", "lamp_rated_w", "version"):
        assert key in base
    assert {"dusk_lux", "dawn_lux", "dim_level", "schedule"} <= set(base["dimming"])
    assert {"debounce_ms", "hold_ms"} <= set(base["occupancy"])
    assert {"bme280", "light", "pms5003", "occupancy"} <= set(base["sample_period_ms"])
    merged, errors = validate(mpy, base)
    assert errors == [] and merged == base
    merged, errors = validate(mpy, {})
    assert errors == [] and merged == base


def test_valid_keys_are_merged_over_the_defaults(mpy):
    base = defaults(mpy)
    merged, errors = validate(
        mpy,
        {
            "checkin_interval_s": 600,
            "dimming": {"dim_level": 20, "schedule": [[60, 300, 10]]},
            "metrics": {"lux": {"deadband": 10.0}},
        },
    )
    assert errors == []
    assert merged["checkin_interval_s"] == 600
    assert merged["dimming"]["dim_level"] == 20
    assert merged["dimming"]["schedule"] == [[60, 300, 10]]
    assert merged["dimming"]["dusk_lux"] == base["dimming"]["dusk_lux"]
    assert merged["metrics"]["lux"]["deadband"] == 10.0
    assert merged["metrics"]["lux"]["window"] == base["metrics"]["lux"]["window"]
    assert merged["metrics"]["pm25_ugm3"] == base["metrics"]["pm25_ugm3"]


def test_bad_values_and_unknown_keys_are_refused_with_a_reason(mpy):
    base = defaults(mpy)
    cases = [
        ({"checkin_interval_s": "300"}, "checkin_interval_s: must be an integer"),
        ({"checkin_interval_s": True}, "checkin_interval_s: must be an integer"),
        ({"checkin_interval_s": 2}, "checkin_interval_s: must be between 10 and 86400"),
        ({"telemetry_batch": 2.5}, "telemetry_batch: must be an integer"),
        ({"wifi_password": "x"}, "wifi_password: unknown key"),
        ({"dimming": {"dim_level": 150}}, "dimming.dim_level: must be between 0 and 100"),
        ({"dimming": {"brightness": 1}}, "dimming.brightness: unknown key"),
        ({"dimming": 5}, "dimming: must be an object"),
        ({"metrics": {"co2_ppm": {"k": 3}}}, "metrics.co2_ppm: unknown key"),
        ({"metrics": {"lux": {"alpha": 0}}}, "metrics.lux.alpha: must be between"),
        ({"log_level": "loud"}, "log_level: must be one of debug, info, warn, error"),
        ({"dimming": {"schedule": [[60, 2000, 10]]}}, "dimming.schedule: entry 0 item 1"),
        ({"dimming": {"schedule": "nightly"}}, "dimming.schedule: must be a list"),
        ({"dimming": {"override_level": -1}}, "dimming.override_level: must be between"),
        ({"dimming": {"dusk_lux": 80.0}}, "dimming.dusk_lux: must not exceed dimming.dawn_lux"),
    ]
    for new_cfg, reason in cases:
        merged, errors = validate(mpy, new_cfg)
        assert len(errors) == 1 and errors[0].startswith(reason), (new_cfg, errors)
        if "dusk_lux" not in reason:
            assert merged == base, new_cfg  # a refused value never replaces the default
    # several problems at once: every one is reported, the good key is still merged
    merged, errors = validate(mpy, {"telemetry_batch": 0, "bogus": 1, "checkin_interval_s": 60})
    assert sorted(e.split(":")[0] for e in errors) == ["bogus", "telemetry_batch"]
    assert merged["checkin_interval_s"] == 60


LOAD = """
import json
from core.config import load_with_errors, load
from core.log import Log
class Lines:
    def __init__(self):
        self.lines = []
    def write(self, text):
        self.lines.append(text)
cfg, errors = load_with_errors("node.json")
stream = Lines()
load("node.json", log=Log(clock_ms=lambda: 0, stream=stream))
print(json.dumps([cfg, errors, stream.lines]))
"""


def test_a_missing_or_corrupt_file_gives_the_defaults_and_says_why(mpy, tmp_path):
    base = defaults(mpy)
    cfg, errors, logged = mpy(LOAD)[0]
    assert cfg == base and errors == [] and logged == []  # never configured is not an error
    bad_files = {
        b"\x00\xff\x13garbage": "corrupt",
        b'{"checkin_interval_s": 6': "corrupt",
        json.dumps({"checkin_interval_s": -5}).encode(): "invalid",
        b"[1, 2, 3]": "invalid",
    }
    for content, word in bad_files.items():
        (tmp_path / "node.json").write_bytes(content)
        cfg, errors, logged = mpy(LOAD)[0]
        assert cfg == base, content
        assert len(errors) == 1 and word in errors[0], (content, errors)
        assert len(logged) == 1 and " ERROR config_corrupt " in logged[0], logged


APPLY = """
import json
from core.config import apply, load
ok, errors = apply("node.json", json.loads(%r), %d)
print(json.dumps([ok, errors, load("node.json")]))
"""


def apply(mpy, new_cfg: dict, version: int) -> tuple[bool, list[str], dict]:
    ok, errors, cfg = mpy(APPLY % (json.dumps(new_cfg), version))[0]
    return ok, errors, cfg


def test_apply_saves_good_config_and_keeps_the_last_good_one_on_bad_input(mpy, tmp_path):
    ok, errors, cfg = apply(mpy, {"dimming": {"dim_level": 15}}, 3)
    assert ok and errors == []
    assert cfg["version"] == 3 and cfg["dimming"]["dim_level"] == 15
    saved = (tmp_path / "node.json").read_bytes()

    ok, errors, cfg = apply(mpy, {"dimming": {"dim_level": 15, "full_level": "max"}}, 4)
    assert not ok and errors == ["dimming.full_level: must be an integer"]
    assert (tmp_path / "node.json").read_bytes() == saved  # untouched
    assert cfg["version"] == 3

    ok, errors, cfg = apply(mpy, {"dimming": {"dim_level": 40}}, 2)
    assert not ok and errors == ["version: 2 is older than the current 3"]
    assert cfg["dimming"]["dim_level"] == 15

    # a temp file left by a save that lost power is ignored
    (tmp_path / "node.json.tmp").write_bytes(b'{"version": 9, "chec')
    ok, _, cfg = apply(mpy, {"checkin_interval_s": 120}, 5)
    assert ok and cfg["version"] == 5 and cfg["checkin_interval_s"] == 120
    assert cfg["dimming"]["dim_level"] == 30  # each version is complete, merged over defaults


SAVER = """
from core.config import apply, load
n = load("node.json")["version"] + 1
while True:
    apply("node.json", {"checkin_interval_s": 10 + n % 1000, "metrics": {"lux": {"k": 2.5}}}, n)
    print(n)  # saved
    n += 1
"""


def test_power_cuts_while_saving_never_leave_a_broken_config(mpy, tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    rng = random.Random(42)
    versions = []
    for _ in range(20):
        proc = subprocess.Popen(
            micropython_command(script),
            cwd=tmp_path,
            env=micropython_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        first = proc.stdout.readline()  # one save done, however slowly the process started
        time.sleep(rng.uniform(0.0, 0.05))  # then cut at a random point of a later save
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, (first + out + err).decode()
        saved = [int(line) for line in (first + out).split()]
        assert saved, (first + out + err).decode()
        cfg, errors, _ = mpy(LOAD)[0]
        assert errors == []
        # every save that finished is there; the one cut may have finished or not
        assert saved[-1] <= cfg["version"] <= saved[-1] + 1
        assert cfg["checkin_interval_s"] == 10 + cfg["version"] % 1000
        assert cfg["metrics"]["lux"]["k"] == 2.5
        versions.append(cfg["version"])
    print(f"config versions found after each power cut: {versions}")
    assert versions == sorted(set(versions)) and versions[-1] >= 20


def test_a_complete_temp_file_is_used_when_the_config_file_vanished(mpy, tmp_path):
    # FAT cannot rename over a file: save() removes the old file first; a power cut right
    # then leaves only the complete temp file
    (tmp_path / "node.json.tmp").write_text(json.dumps({"version": 8, "telemetry_batch": 5}))
    cfg, errors, _ = mpy(LOAD)[0]
    assert errors == [] and cfg["version"] == 8 and cfg["telemetry_batch"] == 5
    # a torn temp file from the very first save means "never configured"
    (tmp_path / "node.json.tmp").write_text('{"version": 8, "tele')
    cfg, errors, _ = mpy(LOAD)[0]
    assert errors == [] and cfg == defaults(mpy)
