"""Node configuration: safe defaults, validation with reasons, versioned atomic save/load."""

from micropython import const
import json


def metric(window, k, alpha, deadband, heartbeat_s, min_mad, deadband_rel=0.0):
    return {"window": window, "k": k, "alpha": alpha, "deadband": deadband,
            "deadband_rel": deadband_rel, "heartbeat_s": heartbeat_s, "min_mad": min_mad}


# Every key the node reads. Times are in the unit their name says. DEFAULTS and _RULES are the
# node's compact rendering of the fleet's configuration schema (fleet/config_schema.py: each
# key's type, range, unit, default and meaning); a change here is a change there, and
# tests/firmware/test_config_schema_agreement.py fails until both agree.
DEFAULTS = {
    "version": 0,
    "checkin_interval_s": 300,  # how often the node talks to the fleet server
    "telemetry_batch": 20,  # records per upload
    "queue_capacity": 2000,  # telemetry records kept on flash while offline
    "log_level": "info",
    "lamp_rated_w": 60.0,  # lamp power at 100 %
    "sample_period_ms": {  # how often each sensor is read
        "bme280": 10000,
        "light": 2000,
        "pms5003": 30000,
        "occupancy": 200,
    },
    "metrics": {  # filter settings per metric (see filters.pipeline_from_config)
        "temperature_c": metric(5, 3.0, 0.3, 0.2, 900, 0.05),
        "humidity_pct": metric(5, 3.0, 0.3, 1.0, 900, 0.2),
        "pressure_hpa": metric(5, 3.0, 0.3, 0.5, 900, 0.05),
        "pm25_ugm3": metric(5, 3.0, 0.3, 1.0, 900, 1.0, 0.05),
        "pm10_ugm3": metric(5, 3.0, 0.3, 1.0, 900, 1.0, 0.05),
        "lux": metric(5, 3.0, 0.5, 2.0, 900, 0.5, 0.1),
    },
    "dimming": {
        "dusk_lux": 30.0,
        "dawn_lux": 60.0,
        "confirm_ms": 30000,
        "dim_level": 30,
        "full_level": 100,
        "ramp_up_ms": 1000,
        "ramp_down_ms": 10000,
        "schedule": [],  # [[start_minute, end_minute, level], ...]
        "override_level": None,  # operator override from configuration; None: no override
    },
    "occupancy": {
        "debounce_ms": 200,
        "hold_ms": 30000,
    },
}

_INT = const("int")
_NUM = const("number")
_STR = const("str")
# key -> (kind, minimum, maximum); for _STR the "minimum" is the tuple of allowed values
_RULES = {
    "version": (_INT, 0, 2**30),
    "checkin_interval_s": (_INT, 10, 86400),
    "telemetry_batch": (_INT, 1, 200),
    "queue_capacity": (_INT, 10, 20000),
    "log_level": (_STR, ("debug", "info", "warn", "error"), None),
    "lamp_rated_w": (_NUM, 1, 2000),
    "sample_period_ms.bme280": (_INT, 1000, 3600000),
    "sample_period_ms.light": (_INT, 100, 3600000),
    "sample_period_ms.pms5003": (_INT, 1000, 3600000),
    "sample_period_ms.occupancy": (_INT, 20, 10000),
    "metrics.*.window": (_INT, 3, 15),
    "metrics.*.k": (_NUM, 1.0, 10.0),
    "metrics.*.alpha": (_NUM, 0.01, 1.0),
    "metrics.*.deadband": (_NUM, 0.0, 10000.0),
    "metrics.*.deadband_rel": (_NUM, 0.0, 1.0),
    "metrics.*.heartbeat_s": (_INT, 10, 86400),
    "metrics.*.min_mad": (_NUM, 0.0, 1000.0),
    "dimming.dusk_lux": (_NUM, 0.0, 1000.0),
    "dimming.dawn_lux": (_NUM, 0.0, 1000.0),
    "dimming.confirm_ms": (_INT, 0, 600000),
    "dimming.dim_level": (_INT, 0, 100),
    "dimming.full_level": (_INT, 1, 100),
    "dimming.ramp_up_ms": (_INT, 0, 60000),
    "dimming.ramp_down_ms": (_INT, 0, 600000),
    "occupancy.debounce_ms": (_INT, 0, 10000),
    "occupancy.hold_ms": (_INT, 0, 3600000),
}


def copy(value):
    if isinstance(value, dict):
        return {k: copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy(v) for v in value]
    return value


def _rule_for(path):
    rule = _RULES.get(path)
    if rule is None and path.startswith("metrics."):
        parts = path.split(".")
        if len(parts) == 3:
            rule = _RULES.get("metrics.*." + parts[2])
    return rule


def _check_scalar(path, value, rule):
    kind, low, high = rule
    if kind == _STR:
        if value not in low:
            return "must be one of " + ", ".join(low)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number" if kind == _NUM else "must be an integer"
    if kind == _INT and not isinstance(value, int):
        return "must be an integer"
    if value < low or value > high:
        return "must be between %s and %s" % (low, high)
    return None


def _check_schedule(value):
    if not isinstance(value, list):
        return "must be a list of [start_minute, end_minute, level]"
    for i, entry in enumerate(value):
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            return "entry %d must be [start_minute, end_minute, level]" % i
        for j, (low, high) in enumerate(((0, 1439), (0, 1439), (0, 100))):
            item = entry[j]
            if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
                return "entry %d item %d must be an integer %d..%d" % (i, j, low, high)
    return None


def _check_special(path, value):
    if path == "dimming.schedule":
        return _check_schedule(value)
    if path == "dimming.override_level":
        if value is None:
            return None
        return _check_scalar(path, value, (_INT, 0, 100))
    return "unknown key"


def _merge(path, default, new, errors):
    """Merge `new` over a copy of `default` (both dicts); record refusals in `errors`."""
    merged = copy(default)
    for key, value in new.items():
        full = path + key
        if key not in default:
            errors.append(full + ": unknown key")
            continue
        if isinstance(default[key], dict):
            if not isinstance(value, dict):
                errors.append(full + ": must be an object")
                continue
            merged[key] = _merge(full + ".", default[key], value, errors)
            continue
        rule = _rule_for(full)
        reason = _check_scalar(full, value, rule) if rule else _check_special(full, value)
        if reason:
            errors.append(full + ": " + reason)
        else:
            merged[key] = copy(value)
    return merged


def validate(new_cfg, base=None):
    """Return (merged_cfg, errors): `new_cfg` merged over `base` (default DEFAULTS).

    Each error is "key: reason"; refused keys keep the base value.
    """
    errors = []
    if not isinstance(new_cfg, dict):
        return copy(base or DEFAULTS), ["config: must be an object"]
    merged = _merge("", base or DEFAULTS, new_cfg, errors)
    dim = merged["dimming"]
    if dim["dusk_lux"] > dim["dawn_lux"]:
        errors.append("dimming.dusk_lux: must not exceed dimming.dawn_lux")
    if dim["dim_level"] > dim["full_level"]:
        errors.append("dimming.dim_level: must not exceed dimming.full_level")
    return merged, errors


def read_json(path):
    """Parsed JSON of `path`; None if the file is missing; ValueError if it is not JSON."""
    try:
        f = open(path)
    except OSError:
        return None
    try:
        return json.loads(f.read())
    except OSError as e:  # unreadable: treat like garbage
        raise ValueError(str(e)) from None
    finally:
        f.close()


def load_with_errors(path):
    """Return (cfg, errors): the saved config, or DEFAULTS with the reason it was unusable."""
    try:
        saved = read_json(path)
    except ValueError:
        return copy(DEFAULTS), ["config file: corrupt (not JSON), using defaults"]
    if saved is None:
        # A file system whose rename cannot replace (FAT) lost power between removing the old
        # file and renaming the new one: the temp file is then complete and the newest. If
        # it is not valid either, the very first save was cut: never configured.
        try:
            saved = read_json(path + ".tmp")
        except ValueError:
            saved = None
        if saved is None or validate(saved)[1]:
            return copy(DEFAULTS), []
    cfg, errors = validate(saved)
    if errors:
        return copy(DEFAULTS), ["config file: invalid, using defaults: " + errors[0]]
    return cfg, []


def load(path, log=None):
    """Return the saved config, or DEFAULTS if missing or corrupt (corruption is logged)."""
    cfg, errors = load_with_errors(path)
    if log is not None:
        for reason in errors:
            log.error("config_corrupt", reason=reason)
    return cfg


def save(path, cfg, version):
    """Write `cfg` with its `version` atomically: temp file, then rename over the old one."""
    from core.files import write_json  # here: the host loads this file alone (its DEFAULTS)

    data = copy(cfg)
    data["version"] = version
    write_json(path, data)  # on FAT, load() may find only the complete temp file


def apply(path, new_cfg, version):
    """Validate `new_cfg` and save it as `version`; on any error keep the saved config.

    Returns (ok, errors). A version older than the saved one is refused.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        return False, ["version: must be a non-negative integer"]
    current, _ = load_with_errors(path)
    if version < current["version"]:
        return False, ["version: %d is older than the current %d" % (version, current["version"])]
    merged, errors = validate(new_cfg)
    if errors:
        return False, errors
    save(path, merged, version)
    return True, []
