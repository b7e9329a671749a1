"""The fleet server's configuration schema (fleet.config_schema) and the node's own validation
(firmware/lib/core/config.py on the MicroPython unix port) agree: the node's DEFAULTS and rules
are the schema's, and the same documents get the same verdict from both — the same keys
refused, and the same configuration merged from what is accepted."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from fleet import config_schema
from fleet.config_schema import BY_PATH, SETTINGS, defaults, find, node_defaults, node_rules

DUMP = """
import json
from core import config
print(json.dumps(config.DEFAULTS))
print(json.dumps(config._RULES))
"""

VERDICTS = """
import json
from core.config import validate
f = open('docs.jsonl')
for line in f:
    merged, errors = validate(json.loads(line))
    print(json.dumps([merged, sorted(e.split(': ')[0] for e in errors)]))
f.close()
"""


def test_the_nodes_defaults_and_rules_are_the_schemas(mpy):
    node_defaults_json, node_rules_json = mpy(DUMP)
    assert node_defaults_json == json.loads(json.dumps(node_defaults()))
    assert node_rules_json == node_rules()


def test_every_setting_has_a_meaning_and_its_default_follows_its_rule():
    for setting in SETTINGS:
        assert setting.meaning and setting.kind in ("int", "number", "str", "schedule",
                                                    "level_or_null"), setting.path
        if setting.kind in ("int", "number"):
            assert setting.low is not None and setting.high is not None, setting.path
    merged, refusals = config_schema.validate(defaults(), allow_server_set=True)
    assert refusals == [] and merged == defaults()
    _, refusals = config_schema.validate(defaults())
    assert [r.path for r in refusals] == ["version"]  # the server sets it, never a document


HAND_PICKED: list[Any] = [
    {}, [], "dimming", None, 5,
    {"checkin_interval_s": 10}, {"checkin_interval_s": 9}, {"checkin_interval_s": 86400},
    {"checkin_interval_s": 86401}, {"checkin_interval_s": 300.0}, {"checkin_interval_s": True},
    {"checkin_interval_s": "300"}, {"checkin_interval_s": None}, {"checkin_interval_s": 2**40},
    {"lamp_rated_w": 1}, {"lamp_rated_w": 0.999}, {"lamp_rated_w": 2000.0}, {"lamp_rated_w": False},
    {"log_level": "debug"}, {"log_level": "loud"}, {"log_level": ["info"]}, {"log_level": 1},
    {"dim_pct": 40}, {"wifi_password": "x", "telemetry_batch": 0, "queue_capacity": 10},
    {"dimming": 5}, {"dimming": []}, {"dimming": None}, {"dimming": {}},
    {"dimming": {"dim_level": 500}}, {"dimming": {"dim_level": 100}},
    {"dimming": {"dim_level": 100, "full_level": 100}}, {"dimming": {"full_level": 0}},
    {"dimming": {"dim_level": 500, "full_level": 20}}, {"dimming": {"dim_level": 20.0}},
    {"dimming": {"dusk_lux": 80.0}}, {"dimming": {"dusk_lux": 80, "dawn_lux": 90}},
    {"dimming": {"dusk_lux": 60, "dawn_lux": 60.0}}, {"dimming": {"dawn_lux": 10}},
    {"dimming": {"schedule": []}}, {"dimming": {"schedule": [[0, 1439, 100]]}},
    {"dimming": {"schedule": [[0, 1440, 1]]}}, {"dimming": {"schedule": [[0, 1, True]]}},
    {"dimming": {"schedule": [[0, 1]]}}, {"dimming": {"schedule": "nightly"}},
    {"dimming": {"schedule": [[1.0, 2, 3]]}}, {"dimming": {"schedule": [[-1, 2, 3]]}},
    {"dimming": {"schedule": [[60, 300, 10], [1200, 1439, 101]]}},
    {"dimming": {"schedule": [[60, 300, 10], [1200, 1439, 0]]}}, {"dimming": {"schedule": None}},
    {"dimming": {"override_level": None}}, {"dimming": {"override_level": 0}},
    {"dimming": {"override_level": 101}}, {"dimming": {"override_level": 50.5}},
    {"dimming": {"override_level": True}}, {"dimming": {"override_level": "50"}},
    {"dimming": {"brightness": 1, "ramp_up_ms": 60000, "ramp_down_ms": 600001}},
    {"metrics": {}}, {"metrics": []}, {"metrics": {"co2_ppm": {"k": 3}}},
    {"metrics": {"lux": {"alpha": 0}}}, {"metrics": {"lux": {"alpha": 0.01, "window": 15}}},
    {"metrics": {"lux": {"window": 16}}}, {"metrics": {"lux": 3}},
    {"metrics": {"lux": {"gain": 2}}}, {"metrics": {"pm25_ugm3": {"deadband_rel": 1.5}}},
    {"metrics": {"temperature_c": {"heartbeat_s": 9.5, "min_mad": 0}}},
    {"sample_period_ms": {"occupancy": 19, "light": 100, "bme280": 3600000}},
    {"sample_period_ms": {"lidar": 100}}, {"occupancy": {"hold_ms": -1, "debounce_ms": 10000}},
    {"version": 3}, {"version": -1}, {"version": "3"},
]


def _interesting(path: str, rng: random.Random) -> Any:
    """A value near the rule of `path`'s setting, or of another type."""
    setting = BY_PATH.get(path)
    if setting is not None and rng.random() < 0.7:  # mostly a valid value
        if setting.kind == "int":
            return rng.randint(int(setting.low or 0), int(setting.high or 0))
        if setting.kind == "number":
            return round(rng.uniform(setting.low or 0, setting.high or 0), 3)
        if setting.kind == "str":
            return rng.choice(setting.choices)
        if setting.kind == "level_or_null":
            return rng.choice([None, rng.randint(0, 100)])
        return [[rng.randint(0, 1439), rng.randint(0, 1439), rng.randint(0, 100)]
                for _ in range(rng.randint(0, 3))]
    pool: list[Any] = [None, True, "x", [], {}, -1, 0, 1, 0.5, 2**31]
    if setting is not None and setting.low is not None and setting.high is not None:
        low, high = setting.low, setting.high
        pool += [low, high, low - 1, high + 1, (low + high) / 2, int((low + high) // 2),
                 float(low), float(high) + 0.001]
    if setting is not None and setting.choices:
        pool += list(setting.choices) + [setting.choices[0].upper()]
    if path == "dimming.schedule":
        pool += [[[0, 60, 10]], [[0, 1440, 10]], [[0, 60]], [[0, 60, 10.0]], [["0", 60, 10]]]
    return rng.choice(pool)


def _random_document(rng: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(rng.randint(1, 3)):
        setting = rng.choice(SETTINGS)
        parts = setting.path.split(".")
        roll = rng.random()
        if roll < 0.05:  # an unknown key somewhere on the way
            parts = [*parts[:rng.randrange(len(parts))], "bogus"]
        elif roll < 0.08 and len(parts) > 1:  # a value where an object belongs
            parts = parts[:rng.randrange(1, len(parts))]
        path = ".".join(parts)
        node = doc
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = _interesting(path, rng)
    return doc


def test_the_same_documents_get_the_same_verdicts_on_the_node_and_the_server(mpy, tmp_path: Path):
    rng = random.Random(14)
    docs = HAND_PICKED + [_random_document(rng) for _ in range(400)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    node = mpy(VERDICTS)
    assert len(node) == len(docs)
    refused_some = 0
    for doc, (node_merged, node_refused) in zip(docs, node, strict=True):
        merged, refusals = config_schema.validate(doc, allow_server_set=True)
        assert sorted(r.path for r in refusals) == node_refused, doc
        assert json.loads(json.dumps(merged)) == node_merged, doc
        # a document: the server also refuses the version, which only the server sets
        _, strict = config_schema.validate(doc)
        extra = sorted(r.path for r in strict if r.path not in node_refused)
        assert extra == (["version"] if isinstance(doc, dict) and find(doc, "version")
                         and "version" not in node_refused else []), doc
        refused_some += bool(node_refused)
    assert 100 < refused_some < len(docs) - 100  # both verdicts are well represented
