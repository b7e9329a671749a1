"""The schema of a node's configuration: every key with its type, range, unit, default and
meaning, and the server's validation of a configuration document against it.

This table is the one description of the configuration. The node carries a compact rendering
of it in firmware/lib/core/config.py (`DEFAULTS` and `_RULES`, no units or meanings: the node's
heap), which the fleet server does not import (the server is installed without firmware/).
tests/firmware/test_config_schema_agreement.py proves the two agree: `node_defaults()` and
`node_rules()` equal what config.py holds on the MicroPython unix port, and the same documents
get the same verdict (the same keys refused, the same merge) from `validate` here and from the
node's `validate`. `python -m fleet.config_schema` prints the README's table of it.

A document is partial: it is merged deeply, key by key, over a base (the defaults, or the
defaults merged with a group's document); a refused key keeps the base's value, as on the node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

INT, NUMBER, STR, SCHEDULE, LEVEL_OR_NULL = "int", "number", "str", "schedule", "level_or_null"


@dataclass(frozen=True)
class Setting:
    """One key of the configuration (a leaf: a value, or a list such as the schedule)."""

    path: str  # dotted: "dimming.dim_level"
    kind: str  # INT, NUMBER, STR, SCHEDULE, LEVEL_OR_NULL
    default: Any
    meaning: str
    unit: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    server_set: bool = False  # set by the server, never by a document (the version)

    def rule(self) -> str:
        """The rule a value must follow, as an operator reads it."""
        unit = f" ({self.unit})" if self.unit else ""
        if self.kind == STR:
            return "must be one of " + ", ".join(self.choices)
        if self.kind == SCHEDULE:
            return ("must be a list of [start_minute, end_minute, level]: minutes 0–1439, "
                    "level 0–100 (%)")
        if self.kind == LEVEL_OR_NULL:
            return f"must be null or an integer {_n(self.low)}–{_n(self.high)}{unit}"
        kind = "an integer" if self.kind == INT else "a number"
        return f"must be {kind} {_n(self.low)}–{_n(self.high)}{unit}"


def _n(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# (window, k, alpha, deadband, deadband_rel, heartbeat_s, min_mad) per metric the node filters
METRIC_DEFAULTS: dict[str, tuple[int, float, float, float, float, int, float]] = {
    "temperature_c": (5, 3.0, 0.3, 0.2, 0.0, 900, 0.05),
    "humidity_pct": (5, 3.0, 0.3, 1.0, 0.0, 900, 0.2),
    "pressure_hpa": (5, 3.0, 0.3, 0.5, 0.0, 900, 0.05),
    "pm25_ugm3": (5, 3.0, 0.3, 1.0, 0.05, 900, 1.0),
    "pm10_ugm3": (5, 3.0, 0.3, 1.0, 0.05, 900, 1.0),
    "lux": (5, 3.0, 0.5, 2.0, 0.1, 900, 0.5),
}
# (field, kind, low, high, unit, meaning) of each metric's filter settings
METRIC_FIELDS: tuple[tuple[str, str, float, float, str, str], ...] = (
    ("window", INT, 3, 15, "samples", "the spike filter's median window"),
    ("k", NUMBER, 1.0, 10.0, "σ", "a sample further than k robust standard deviations "
                                  "(1.4826 × MAD) from the window's median is a spike"),
    ("alpha", NUMBER, 0.01, 1.0, "", "smoothing factor of the exponential filter (1: none)"),
    ("deadband", NUMBER, 0.0, 10000.0, "metric's unit",
     "a change smaller than this is not reported"),
    ("deadband_rel", NUMBER, 0.0, 1.0, "fraction",
     "a change smaller than this fraction of the last reported value is not reported"),
    ("heartbeat_s", INT, 10, 86400, "s", "a reading is reported at least this often"),
    ("min_mad", NUMBER, 0.0, 1000.0, "metric's unit",
     "floor of the median absolute deviation (a flat or quantised signal)"),
)


def _settings() -> tuple[Setting, ...]:
    s = Setting
    out = [
        s("version", INT, 0, "the configuration's version (the server sets it: the sum of the "
          "group's and the node's profile versions)", low=0, high=2**30, server_set=True),
        s("checkin_interval_s", INT, 300, "how often the node talks to the fleet server", "s",
          10, 86400),
        s("telemetry_batch", INT, 20, "telemetry records per upload", "records", 1, 200),
        s("queue_capacity", INT, 2000, "telemetry records kept on flash while offline",
          "records", 10, 20000),
        s("log_level", STR, "info", "the node's log verbosity",
          choices=("debug", "info", "warn", "error")),
        s("lamp_rated_w", NUMBER, 60.0, "the lamp's power at 100 % (energy estimates)", "W",
          1, 2000),
        s("sample_period_ms.bme280", INT, 10000, "how often the BME280 (temperature, "
          "humidity, pressure) is read", "ms", 1000, 3600000),
        s("sample_period_ms.light", INT, 2000, "how often the light sensor is read", "ms",
          100, 3600000),
        s("sample_period_ms.pms5003", INT, 30000, "how often the PMS5003 (particulates) is "
          "read", "ms", 1000, 3600000),
        s("sample_period_ms.occupancy", INT, 200, "how often the occupancy sensor is read",
          "ms", 20, 10000),
    ]
    for metric, defaults in METRIC_DEFAULTS.items():
        for (field, kind, low, high, unit, meaning), default in zip(
                METRIC_FIELDS, defaults, strict=True):
            out.append(s(f"metrics.{metric}.{field}", kind, default,
                         f"{metric}: {meaning}", unit, low, high))
    out += [
        s("dimming.dusk_lux", NUMBER, 30.0, "night starts once ambient light stays below this "
          "for dimming.confirm_ms (not above dimming.dawn_lux)", "lx", 0.0, 1000.0),
        s("dimming.dawn_lux", NUMBER, 60.0, "night ends once ambient light stays above this "
          "for dimming.confirm_ms", "lx", 0.0, 1000.0),
        s("dimming.confirm_ms", INT, 30000, "how long the light must stay past a threshold "
          "before the lamp follows", "ms", 0, 600000),
        s("dimming.dim_level", INT, 30, "the lamp's level at night with nobody about, where no "
          "dimming.schedule entry covers the minute (not above dimming.full_level)", "%", 0, 100),
        s("dimming.full_level", INT, 100, "the lamp's level at night when someone is near, "
          "and on a sensor fault or before the first light reading (fail lit)", "%", 1, 100),
        s("dimming.ramp_up_ms", INT, 1000, "time to ramp the lamp up", "ms", 0, 60000),
        s("dimming.ramp_down_ms", INT, 10000, "time to ramp the lamp down", "ms", 0, 600000),
        s("dimming.schedule", SCHEDULE, [], "night levels with nobody about by minute of the "
          "local day, [[start_minute, end_minute, level], ...]: start inclusive, end exclusive, "
          "start > end wraps past midnight; the first entry covering the minute wins over "
          "dimming.dim_level"),
        s("dimming.override_level", LEVEL_OR_NULL, None, "a fixed lamp level set by "
          "configuration, day and night (null: none; 0 still gives full_level on a fault)",
          "%", 0, 100),
        s("occupancy.debounce_ms", INT, 200, "how long a change of the PIR's level must last "
          "to count", "ms", 0, 10000),
        s("occupancy.hold_ms", INT, 30000, "how long the place counts as occupied after the "
          "last evidence (PIR or radar)", "ms", 0, 3600000),
    ]
    return tuple(out)


SETTINGS: tuple[Setting, ...] = _settings()
BY_PATH: dict[str, Setting] = {setting.path: setting for setting in SETTINGS}
# Rules between keys, checked on the merged configuration: (key, must not exceed key)
NOT_ABOVE: tuple[tuple[str, str], ...] = (
    ("dimming.dusk_lux", "dimming.dawn_lux"),
    ("dimming.dim_level", "dimming.full_level"),
)


def _tree(value_of: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for setting in SETTINGS:
        *parents, leaf = setting.path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value_of(setting)
    return tree


def defaults() -> dict[str, Any]:
    """The configuration a node runs with when nothing is set (a fresh copy)."""
    return _tree(lambda setting: json.loads(json.dumps(setting.default)))


def node_defaults() -> dict[str, Any]:
    """What firmware/lib/core/config.py's DEFAULTS must be."""
    return defaults()


def node_rules() -> dict[str, list[Any]]:
    """What config.py's _RULES must be (as JSON: tuples become lists): key -> [kind, min, max],
    the metrics' keys once as "metrics.*.<field>"; for a string, [kind, [choices], null]. The
    schedule and the override level are checked by code of their own on the node."""
    rules: dict[str, list[Any]] = {}
    for setting in SETTINGS:
        parts = setting.path.split(".")
        path = "metrics.*." + parts[2] if parts[0] == "metrics" else setting.path
        if setting.kind == STR:
            rules[path] = ["str", list(setting.choices), None]
        elif setting.kind in (INT, NUMBER):
            rules[path] = [setting.kind, setting.low, setting.high]
    return rules


def _got(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Refusal:
    """One refused key of a document: its dotted path, the rule, and the value given."""

    path: str
    rule: str
    value: Any = None
    has_value: bool = True
    between_keys: bool = False  # a rule between two keys (NOT_ABOVE), not of one value

    @property
    def message(self) -> str:
        """The rule, and the value given: "must be an integer 0–100 (%), got 500"."""
        return self.rule + (f", got {_got(self.value)}" if self.has_value else "")

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _scalar_ok(setting: Setting, value: Any) -> bool:
    if setting.kind == STR:
        return isinstance(value, str) and value in setting.choices
    if setting.kind == LEVEL_OR_NULL and value is None:
        return True
    if setting.kind == SCHEDULE:
        return _schedule_ok(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if setting.kind in (INT, LEVEL_OR_NULL) and not isinstance(value, int):
        return False
    assert setting.low is not None and setting.high is not None
    return setting.low <= value <= setting.high


def _schedule_ok(value: Any) -> bool:
    if not isinstance(value, list):
        return False
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 3:
            return False
        for item, high in zip(entry, (1439, 1439, 100), strict=True):
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= high:
                return False
    return True


def _merge_checked(prefix: str, base: dict[str, Any], doc: dict[str, Any],
                   refusals: list[Refusal], allow_server_set: bool) -> dict[str, Any]:
    merged = dict(base)
    for key, value in doc.items():
        path = prefix + key
        if not isinstance(key, str) or key not in base:
            refusals.append(Refusal(path, "unknown key (not a setting of the node)",
                                    has_value=False))
            continue
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                refusals.append(Refusal(path, "must be an object", value))
                continue
            merged[key] = _merge_checked(path + ".", base[key], value, refusals,
                                         allow_server_set)
            continue
        setting = BY_PATH[path]
        if setting.server_set and not allow_server_set:
            refusals.append(Refusal(path, "is set by the server (the profile versions), not "
                                          "by a document", value))
        elif not _scalar_ok(setting, value):
            refusals.append(Refusal(path, setting.rule(), value))
        else:
            merged[key] = json.loads(json.dumps(value))
    return merged


def lookup(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = node[part]
    return node


def validate(doc: Any, base: dict[str, Any] | None = None,
             allow_server_set: bool = False) -> tuple[dict[str, Any], list[Refusal]]:
    """(merged, refusals): `doc` merged deeply over `base` (default: the defaults), and what
    the node would refuse of it. A refused key keeps the base's value. `version` is refused
    unless `allow_server_set` (the node's own saved file carries it)."""
    base = base if base is not None else defaults()
    if not isinstance(doc, dict):
        return base, [Refusal("config", "must be an object", doc)]
    refusals: list[Refusal] = []
    merged = _merge_checked("", base, doc, refusals, allow_server_set)
    for low, high in NOT_ABOVE:
        if lookup(merged, low) > lookup(merged, high):
            refusals.append(Refusal(low, f"must not exceed {high} ({_got(lookup(merged, high))})",
                                    lookup(merged, low), between_keys=True))
    return merged, refusals


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base` key by key: objects merge, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def find(doc: Any, path: str) -> bool:
    """Whether `doc` holds a value at the dotted `path` (or at an object's place on it)."""
    node = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def leaves(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted path: value} of every key that is not an object."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, prefix + str(key) + "."))
        else:
            out[prefix + str(key)] = value
    return out


def _cell(value: Any) -> str:
    return "`" + json.dumps(value) + "`"


def markdown_table() -> str:
    """The schema as the README's table: one row per key, a metric's settings once as
    metrics.*.<field> (their defaults per metric where they differ)."""
    rows = ["| key | type and range | unit | default | meaning |",
            "| --- | --- | --- | --- | --- |"]
    done: set[str] = set()
    for setting in SETTINGS:
        parts = setting.path.split(".")
        if parts[0] == "metrics":
            field = parts[2]
            if field in done:
                continue
            done.add(field)
            path = "metrics.*." + field
            values = {m: lookup(defaults(), f"metrics.{m}.{field}") for m in METRIC_DEFAULTS}
            default = (_cell(next(iter(values.values()))) if len(set(values.values())) == 1
                       else ", ".join(f"{m} {_cell(v)}" for m, v in values.items()))
            meaning = setting.meaning.split(": ", 1)[1] + " (per metric: " + ", ".join(
                METRIC_DEFAULTS) + ")" if field == "window" else setting.meaning.split(": ", 1)[1]
        else:
            path, default, meaning = setting.path, _cell(setting.default), setting.meaning
        rule = setting.rule().removeprefix("must be ")
        if setting.unit:
            rule = rule.replace(f" ({setting.unit})", "")
        rows.append(f"| `{path}` | {rule} | {setting.unit} | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def schema_document() -> list[dict[str, Any]]:
    """Every key of the schema as the API shows it (GET /api/v1/config/schema)."""
    return [{"key": s.path, "type": s.kind, "min": s.low, "max": s.high,
             "choices": list(s.choices) or None, "unit": s.unit or None, "default": s.default,
             "meaning": s.meaning, "rule": s.rule(), "set_by_server": s.server_set}
            for s in SETTINGS]


if __name__ == "__main__":  # python -m fleet.config_schema: the README's table
    print(markdown_table(), end="")
