"""Build a Node's parts and apply a configuration to it; loaded only for that, then dropped."""

from micropython import const
from algorithms.dimming import DimmingPolicy
from drivers.bme280 import BME280
from drivers.lamp import Lamp
from drivers.ld2410 import LD2410
from drivers.pir import PIR
from drivers.pms5003 import PMS5003
from drivers.veml7700 import VEML7700
from algorithms.filters import pipeline_from_config
from core.log import Log
from core.node import REPORT_INTERVAL_S, SENSORS
from core import ondemand
from algorithms.occupancy import Occupancy
from store.telemetry_queue import TelemetryQueue

_FIRST_CHECKIN_MS = const(5000)

# the configuration keys the loop still reads once the parts are built (filter, dimming and
# occupancy settings live on only in the objects made from them)
_LOOP_KEYS = const(("version", "checkin_interval_s", "telemetry_batch", "queue_capacity",
                   "log_level", "lamp_rated_w", "sample_period_ms"))


def build(node, board, cfg, uplink, log, measure_raw, updater, fw_version):
    """Node.__init__: the lamp at full first, then configuration, queue, sensors, schedule."""
    node.board = board
    node.updater = updater  # the A/B update client (lib/updater/client.py), when the node has slots
    node.fw_version = fw_version
    node.lamp = Lamp(board.pwm_lamp)  # full from the first instant
    node.log = log or Log(clock_ms=board.ticks_ms)
    node.uplink = uplink
    node.measure_raw = measure_raw
    root = board.flash_dir.rstrip("/")
    node.config_path = root + "/config.json"
    node.state_path = root + "/node_state.json"
    # configuration code (defaults, validation: about 11 KB) is loaded only to read or apply
    # a configuration, and dropped again
    if cfg is None:
        cfg = ondemand.call("core.config", "load", node.config_path, node.log)
    else:
        cfg, errors = ondemand.call("core.config", "validate", cfg)
        for reason in errors:
            node.log.error("config_refused", reason=reason)
    node.boot_reason = board.reset_cause()
    node.queue = TelemetryQueue(root + "/queue", cfg["queue_capacity"])
    if node.queue.discarded_tail:
        node.log.warn("queue_tail_discarded")
    node.bme280 = BME280(board.i2c)
    node.veml7700 = VEML7700(board.i2c)
    node.pms5003 = PMS5003(board.uart_pm)
    node.ld2410 = LD2410(board.uart_radar)
    node.pir = PIR(board.pin_pir)
    node.failed = [False] * len(SENSORS)
    node.uplink_errors = 0  # check-ins and uploads that failed on the network
    node.rejected_records = 0  # records the server refused (dropped from the queue)
    node.loop_errors = 0  # exceptions caught in the loop (counted as "controller" faults)
    node._errors_in_row = 0
    # counters for the benchmark and the status line
    node.queued_bytes = 0
    node.queued_records = 0
    node.raw_bytes = 0
    node.raw_records = 0
    node.heap_peak = 0
    node.lux = None
    node._pms_fresh = False
    node._identify_until = None
    # acks owed from before a reboot
    node._done_cmds = ondemand.call("core.commands", "load_done", node.state_path)
    node._next_checkin_s = None
    version = cfg["version"]
    apply_config(node, cfg)
    cfg = None
    now = board.ticks_ms()
    node._boot_ms = now
    node.last_ms = now
    node._interval_start_ms = now
    node._interval_energy = 0.0
    node._interval_level_ms = 0.0
    node.energy_total_wh = 0.0
    due = {
        "occupancy": now, "light": now, "bme280": now, "pms_drain": now,
        "pms5003": now + node.periods["pms5003"], "report": now + REPORT_INTERVAL_S * 1000,
        "housekeeping": now, "watchdog": now,
    }
    if uplink is not None:
        due["checkin"] = now + _FIRST_CHECKIN_MS
        due["upload"] = now + _FIRST_CHECKIN_MS
    node._due = due
    node.log.info("boot", fw=fw_version, board=board.name, reason=node.boot_reason,
                  config_version=version, queued=len(node.queue))


def apply_config(node, cfg):
    """Rebuild the filters, dimming policy and occupancy from a validated configuration."""
    node.periods = cfg["sample_period_ms"]
    pipelines = {}
    metrics = cfg["metrics"]
    for metric in metrics:
        pipelines[metric] = pipeline_from_config(metrics[metric])
    node.pipelines = pipelines
    d = cfg["dimming"]
    policy = DimmingPolicy(d["dusk_lux"], d["dawn_lux"], d["dim_level"], d["full_level"],
                           d["ramp_up_ms"], d["ramp_down_ms"], d["schedule"], d["confirm_ms"])
    if d["override_level"] is not None:
        policy.set_override(d["override_level"])
    node.policy = policy
    o = cfg["occupancy"]
    node.occupancy = Occupancy(o["debounce_ms"], o["hold_ms"])
    node.log.set_level(cfg["log_level"])
    kept = {}
    for key in _LOOP_KEYS:
        kept[key] = cfg[key]
    node.cfg = kept


def apply_reply_config(node, new_cfg, version):
    """Validate and save a configuration a check-in brought, then apply it."""
    ok, errors = ondemand.call("core.config", "apply", node.config_path, new_cfg, version)
    cfg = ondemand.call("core.config", "load", node.config_path, node.log) if ok else None
    if not ok:
        node.log.error("config_refused", version=version, reason=errors[0])
        return
    apply_config(node, cfg)
    node.log.info("config_applied", version=version)
