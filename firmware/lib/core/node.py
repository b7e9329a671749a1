"""The lamppost node: reads sensors on their schedules, filters, drives the lamp, queues
telemetry."""

from micropython import const
import gc
import json

from algorithms.dimming import DimmingPolicy, energy_wh
from algorithms.filters import pipeline_from_config
from algorithms.occupancy import Occupancy
from core import ondemand
from core.log import Log
from drivers.bme280 import BME280
from drivers.lamp import Lamp
from drivers.ld2410 import LD2410
from drivers.pir import PIR
from drivers.pms5003 import PMS5003
from drivers.veml7700 import VEML7700
from store.telemetry_queue import TelemetryQueue

FW_VERSION = "0.1.0"
REPORT_INTERVAL_S = 900  # presence_count, lamp_level_pct and energy_wh cover this long
_PMS_DRAIN_MS = const(1000)  # the sensor streams a frame a second; keep its UART buffer drained
_UPLOAD_RETRY_MS = const(60000)
_HOUSEKEEPING_MS = const(3600000)  # heap and stats line once an hour
_MAX_CONSECUTIVE_ERRORS = const(10)  # loop exceptions in a row before the node reboots itself
_UPLOAD_BATCHES_PER_ROUND = const(10)
_FIRST_CHECKIN_MS = const(5000)
_CLOCK_VALID_FROM = const(1735689600)  # core.clock_sync._VALID_FROM: an RTC before it is unset
_CLOCK_RETRY_MS = const(30000)  # NTP, then the fleet server, while the clock is unset
_CLOCK_RESYNC_MS = const(86400000)  # NTP once a day once set
_NET_POLL_MS = const(1000)  # the Wi-Fi link's state, and how long exchanges wait for it

SENSORS = ("bme280", "veml7700", "pms5003", "ld2410", "pir")

# one telemetry record: time, metric and the value in its metric's format (units are in the names)
_RECORD = const('{"ts":%d,"m":"%s","v":%s}')
VALUE_FORMATS = {
    "temperature_c": "%.2f", "humidity_pct": "%.1f", "pressure_hpa": "%.2f",
    "pm25_ugm3": "%.1f", "pm10_ugm3": "%.1f", "lux": "%.1f",
    "presence_count": "%d", "lamp_level_pct": "%.1f", "energy_wh": "%.3f",
}


# the configuration keys the loop still reads once the parts are built (filter, dimming and
# occupancy settings live on only in the objects made from them)
_LOOP_KEYS = const(("version", "checkin_interval_s", "telemetry_batch", "queue_capacity",
                   "log_level", "lamp_rated_w", "sample_period_ms"))



class Node:
    """One lamppost controller. Time and I/O come only from `board`.

    step() runs one scheduler tick and returns how long to sleep before the next one;
    run() loops until `until_ms` (board ticks) or forever. The lamp starts at full and goes
    back to full on a sensor fault or an exception in the loop (fail lit).
    """

    def __init__(self, board, cfg=None, uplink=None, log=None, measure_raw=False,
                 updater=None, fw_version=FW_VERSION, wifi=None):
        """The lamp at full first, then configuration, queue, sensors, schedule."""
        self.board = board
        self.wifi = wifi  # net.wifi.Wifi on a board with Wi-Fi credentials; None: wired
        self.updater = updater  # the A/B update client (updater/client.py) on a node with slots
        self.fw_version = fw_version
        self.lamp = Lamp(board.pwm_lamp)  # full from the first instant
        self.log = log or Log(clock_ms=board.ticks_ms)
        self.uplink = uplink
        self.measure_raw = measure_raw
        root = board.flash_dir.rstrip("/")
        self.config_path = root + "/config.json"
        self.state_path = root + "/node_state.json"
        cfg = self._read_config(cfg)
        self.boot_reason = board.reset_cause()
        self.queue = TelemetryQueue(root + "/queue", cfg["queue_capacity"])
        if self.queue.discarded_tail:
            self.log.warn("queue_tail_discarded")
        self.bme280 = BME280(board.i2c)
        self.veml7700 = VEML7700(board.i2c)
        self.pms5003 = PMS5003(board.uart_pm)
        self.ld2410 = LD2410(board.uart_radar)
        self.pir = PIR(board.pin_pir)
        self.failed = [False] * len(SENSORS)
        self.uplink_errors = 0  # check-ins and uploads that failed on the network
        self.rejected_records = 0  # records the server refused (dropped from the queue)
        self.loop_errors = 0  # exceptions caught in the loop (counted as "controller" faults)
        self._errors_in_row = 0
        # counters for the benchmark and the status line
        self.queued_bytes = 0
        self.queued_records = 0
        self.raw_bytes = 0
        self.raw_records = 0
        self.heap_peak = 0
        self.lux = None
        self._pms_fresh = False
        self._identify_until = None
        # answers to commands owed from before a reboot
        self._done_cmds = ondemand.call("core.commands", "load_done", self.state_path)
        self._next_checkin_s = None
        # the last configuration a check-in brought that the node refused, reported at each
        # check-in until a later one is applied: {"version", "reason"} (None: none stands)
        self.config_refused = None
        # the RTC (2000-01-01 after a power cut) is set by NTP or the fleet server before any
        # signed request; readings stamped before that are corrected (core/clock_sync.py)
        self.clock_ok = board.epoch_s() >= _CLOCK_VALID_FROM
        self.restamp = ondemand.call("core.clock_sync", "boot", self)
        self._clock_wait = _CLOCK_RETRY_MS
        version = cfg["version"]
        self.apply_config(cfg)
        cfg = None
        self._schedule(board.ticks_ms())
        self.log.info("boot", fw=fw_version, board=board.name, reason=self.boot_reason,
                      config_version=version, queued=len(self.queue))

    # ------------------------------------------------------------------ configuration
    def _read_config(self, cfg):
        """The saved configuration, or `cfg` validated (refusals logged).

        The configuration code (defaults, validation: about 11 KB) is loaded only to read or
        apply a configuration, and dropped again.
        """
        if cfg is None:
            return ondemand.call("core.config", "load", self.config_path, self.log)
        cfg, errors = ondemand.call("core.config", "validate", cfg)
        for reason in errors:
            self.log.error("config_refused", reason=reason)
        return cfg

    def apply_config(self, cfg):
        """Rebuild the filters, dimming policy and occupancy from a validated configuration."""
        self.periods = cfg["sample_period_ms"]
        pipelines = {}
        metrics = cfg["metrics"]
        for metric in metrics:
            pipelines[metric] = pipeline_from_config(metrics[metric])
        self.pipelines = pipelines
        d = cfg["dimming"]
        policy = DimmingPolicy(d["dusk_lux"], d["dawn_lux"], d["dim_level"], d["full_level"],
                               d["ramp_up_ms"], d["ramp_down_ms"], d["schedule"], d["confirm_ms"])
        if d["override_level"] is not None:
            policy.set_override(d["override_level"])
        self.policy = policy
        o = cfg["occupancy"]
        self.occupancy = Occupancy(o["debounce_ms"], o["hold_ms"])
        self.log.set_level(cfg["log_level"])
        kept = {}
        for key in _LOOP_KEYS:
            kept[key] = cfg[key]
        self.cfg = kept

    def apply_reply_config(self, new_cfg, version):
        """Validate and save a configuration a check-in brought, then apply it (unless it is
        the version in force)."""
        if version == self.cfg["version"]:
            return
        ok, errors = ondemand.call("core.config", "apply", self.config_path, new_cfg, version)
        cfg = ondemand.call("core.config", "load", self.config_path, self.log) if ok else None
        if not ok:
            reason = errors[0][:200]  # the first rule it broke (the check-in's limit)
            self.config_refused = {"version": version, "reason": reason}
            self.log.error("config_refused", version=version, reason=reason)
            return
        self.config_refused = None
        self.apply_config(cfg)
        self.log.info("config_applied", version=version)

    def _schedule(self, now):
        """Start the clocks and the task schedule at `now` (board ticks)."""
        self._boot_ms = now
        self.last_ms = now
        self._interval_start_ms = now
        self._interval_energy = 0.0
        self._interval_level_ms = 0.0
        self.energy_total_wh = 0.0
        due = {
            "occupancy": now, "light": now, "bme280": now, "pms_drain": now,
            "pms5003": now + self.periods["pms5003"], "report": now + REPORT_INTERVAL_S * 1000,
            "housekeeping": now, "watchdog": now,
            "clock": now if not self.clock_ok else now + _CLOCK_RESYNC_MS, "net": now,
        }
        if self.uplink is not None:
            due["checkin"] = now + _FIRST_CHECKIN_MS
            due["upload"] = now + _FIRST_CHECKIN_MS
        self._due = due

    # ------------------------------------------------------------------ telemetry
    def _queue(self, metric, value, ts):
        payload = (_RECORD % (ts, metric, VALUE_FORMATS[metric] % value)).encode()
        try:
            self.queue.append(payload)
        except OSError as e:
            self.log.error("queue_write_failed", error=e.args[0] if e.args else 0)
            return
        self.queued_bytes += len(payload)
        self.queued_records += 1

    def _sample(self, metric, raw, now, ts):
        """Feed one raw reading through its filter; queue it when it is worth reporting."""
        if self.measure_raw:
            # what raw 1 Hz reporting would send: every reading, encoded the same way
            self.raw_bytes += len(_RECORD % (ts, metric, VALUE_FORMATS[metric] % raw))
            self.raw_records += 1
        value = self.pipelines[metric].push(now, raw)
        if value is not None:
            self._queue(metric, value, ts)

    # ------------------------------------------------------------------ sensor tasks
    def _read_light(self, now, ts):
        if self.veml7700.read():
            self._sample("lux", self.veml7700.lux, now, ts)
            self.lux = self.pipelines["lux"].last
        elif self.veml7700.health.failed:
            self.lux = None

    def _read_bme280(self, now, ts):
        b = self.bme280
        if b.read():
            self._sample("temperature_c", b.temperature_c, now, ts)
            self._sample("humidity_pct", b.humidity_pct, now, ts)
            self._sample("pressure_hpa", b.pressure_hpa, now, ts)

    def _report_pms(self, now, ts):
        if self._pms_fresh:
            self._pms_fresh = False
            self._sample("pm25_ugm3", self.pms5003.pm25_ugm3, now, ts)
            self._sample("pm10_ugm3", self.pms5003.pm10_ugm3, now, ts)

    def _report_interval(self, now, ts):
        span = now - self._interval_start_ms
        if span > 0:
            self._queue("presence_count", self.occupancy.take_count(), ts)
            self._queue("lamp_level_pct", self._interval_level_ms / span, ts)
            self._queue("energy_wh", self._interval_energy, ts)
        self._interval_start_ms = now
        self._interval_energy = 0.0
        self._interval_level_ms = 0.0

    def sensor_faults(self):
        """Fault count per sensor (plus "controller" for exceptions caught in the loop)."""
        out = {}
        for name in SENSORS:
            out[name] = getattr(self, name).health.faults
        out["controller"] = self.loop_errors
        return out

    def _log_sensor_changes(self):
        failed = self.failed
        for i in range(len(SENSORS)):
            health = getattr(self, SENSORS[i]).health
            if health.failed != failed[i]:
                failed[i] = health.failed
                if health.failed:
                    self.log.warn("sensor_fault", sensor=SENSORS[i], kind=health.last,
                                  count=health.faults)
                else:
                    self.log.info("sensor_ok", sensor=SENSORS[i])

    def dimming_fault(self):
        """True when the lamp cannot be dimmed safely: no light reading or no radar."""
        return self.veml7700.health.failed or self.ld2410.health.failed

    # ------------------------------------------------------------------ lamp
    def _drive_lamp(self, now, ts):
        if self._identify_until is not None:
            if now < self._identify_until:
                self.lamp.set(100 if (now // 1000) % 2 else 0, 0, now)
                return
            self._identify_until = None
        minute = (ts % 86400) // 60
        fault = self.dimming_fault()
        level, ramp_ms = self.policy.decide(now, self.lux, self.occupancy.occupied, fault, minute)
        if level != self.lamp.target:
            self.log.info("lamp", level=level, ramp_ms=ramp_ms, fault=fault,
                          occupied=self.occupancy.occupied, night=self.policy.state == "night")
        self.lamp.set(level, ramp_ms, now)
        self.lamp.update(now)

    # ------------------------------------------------------------------ uplink
    def status(self):
        """What the node reports at each check-in."""
        board = self.board
        report = {
            "fw_version": self.fw_version,
            "uptime_s": (board.ticks_ms() - self._boot_ms) // 1000,
            "mem_free": board.mem_free(),
            "rssi": self.wifi.rssi if self.wifi is not None else None,
            "wifi_reconnects": self.wifi.reconnects if self.wifi is not None else None,
            "boot_reason": self.boot_reason,
            "sensor_faults": self.sensor_faults(),
            "config_version": self.cfg["version"],
            "queue_len": len(self.queue),
            "queue_dropped": self.queue.dropped,
            "lamp_level_pct": round(self.lamp.level, 1),
            "acks": self._done_cmds,  # answers to commands (core/commands.py makes them)
        }
        if self.config_refused is not None:
            report["config_refused"] = self.config_refused
        return report

    def checkin(self, now):
        """Report the status (and the update client's report); act on what the server replies.

        A node with an update client also reports its key set's serial; the reply's key
        statements are applied before its update offer, so a release signed by a key that a
        rotation just introduced is checked against the new key set.
        """
        report = self.status()
        updater = self.updater
        if updater is not None:
            _report_update(self, updater, report)
        try:
            reply = self.uplink.checkin(report)
        except Exception as e:  # a network failure is not a node failure
            self.uplink_errors += 1
            self.log.warn("checkin_failed", error=repr(e))
            return
        self._done_cmds = []
        if not reply:
            return
        if updater is not None:
            _follow_update(self, updater, reply)
        if reply.get("config") is not None and reply.get("config_version") is not None:
            self.apply_reply_config(reply["config"], reply["config_version"])  # null: nothing newer
        cmds = reply.get("commands")
        if cmds:
            ondemand.call("core.commands", "run_all", self, cmds, now)
        nxt = reply.get("next_checkin_s")
        if isinstance(nxt, int) and 10 <= nxt <= 86400:
            self._next_checkin_s = nxt

    def upload(self):
        """Send queued records in batches; stop at the first batch that is not acknowledged."""
        batch = self.cfg["telemetry_batch"]
        for _ in range(_UPLOAD_BATCHES_PER_ROUND):
            records = self.queue.peek(batch)
            if records and self.restamp:  # readings stamped before the clock was set
                records = ondemand.call("core.clock_sync", "restamp", self, records)
            if not records:
                return True
            try:
                top = self.uplink.post_telemetry(records)
            except Exception as e:  # never let the uplink stop the lamp
                if type(e).__name__ != "Rejected":
                    self.uplink_errors += 1
                    self.log.warn("upload_failed", error=repr(e))
                    return False
                # the server refuses this batch for its content: resending cannot help
                top = _drop_refused(self, records, e)
            if top is None:
                return False
            self.queue.ack(top)
        return True

    # ------------------------------------------------------------------ scheduler
    def _housekeeping(self, now):
        gc.collect()
        # the app's heap; on the emulated board the code image's buffer (flash on a device)
        # is in the heap too and is reported on its own
        image = getattr(self.board, "app_image_heap", 0)
        alloc = gc.mem_alloc() - image
        if alloc > self.heap_peak:
            self.heap_peak = alloc
        self.log.info("heap", alloc=alloc, free=gc.mem_free(), peak=self.heap_peak, image=image)
        self.log.info("stats", queued_records=self.queued_records, queued_bytes=self.queued_bytes,
                      raw_records=self.raw_records, raw_bytes=self.raw_bytes,
                      queue_len=len(self.queue), dropped=self.queue.dropped,
                      energy_wh=self.energy_total_wh, faults=self._faults_text())

    def _faults_text(self):
        parts = []
        for name, count in self.sensor_faults().items():
            if count:
                parts.append(name + ":" + str(count))
        return ",".join(parts) or "none"

    def step(self):
        """One scheduler tick: run every task that is due; return ms until the next one."""
        board = self.board
        now = board.ticks_ms()
        due = self._due
        periods = self.periods
        if now >= due["watchdog"]:
            board.feed_watchdog()
            due["watchdog"] = now + 1000
        if now >= due["net"]:
            due["net"] = now + _NET_POLL_MS
            if self.wifi is not None:
                self.wifi.poll(now)
        if now >= due["clock"]:
            self._sync_clock(now)
        ts = board.epoch_s()
        # accounting for the time since the previous tick, at the level the lamp had
        dt = now - self.last_ms
        if dt > 0:
            wh = energy_wh(self.lamp.level, dt, self.cfg["lamp_rated_w"])
            self._interval_energy += wh
            self.energy_total_wh += wh
            self._interval_level_ms += self.lamp.level * dt
            self.last_ms = now
        if now >= due["occupancy"]:
            pir = self.pir.read(now)
            # a UART's silence is timed from when it was read, not from the tick's start
            self.ld2410.poll(board.ticks_ms())
            self.occupancy.update(now, pir, self.ld2410.presence)
            due["occupancy"] = now + periods["occupancy"]
        if now >= due["light"]:
            self._read_light(now, ts)
            due["light"] = now + periods["light"]
        if now >= due["pms_drain"]:
            if self.pms5003.poll(board.ticks_ms()):
                self._pms_fresh = True
            due["pms_drain"] = now + min(_PMS_DRAIN_MS, periods["pms5003"])
        if now >= due["pms5003"]:
            self._report_pms(now, ts)
            due["pms5003"] = now + periods["pms5003"]
        if now >= due["bme280"]:
            self._read_bme280(now, ts)
            due["bme280"] = now + periods["bme280"]
        self._drive_lamp(now, ts)
        if now >= due["report"]:
            self._report_interval(now, ts)
            due["report"] = now + REPORT_INTERVAL_S * 1000
        wifi = self.wifi
        linked = wifi is None or wifi.isconnected()
        # no request is signed with an unset clock (an uplink that signs can ask the server's
        # time), and none is tried without a link
        if self.uplink is not None and not (
                linked and (self.clock_ok or not hasattr(self.uplink, "server_time"))):
            for key in ("checkin", "upload"):
                if due[key] <= now:
                    due[key] = now + _NET_POLL_MS
        elif self.uplink is not None:
            if now >= due["checkin"]:
                interval = self._next_checkin_s or self.cfg["checkin_interval_s"]
                due["checkin"] = now + interval * 1000
                self.checkin(now)
                due["upload"] = now
            if now >= due["upload"]:
                self.upload()
                due["upload"] = now + _UPLOAD_RETRY_MS
            updater = self.updater
            if updater is not None:
                if updater.busy():
                    updater.step()  # one phase per tick: the lamp keeps being driven
                updater.poll((now - self._boot_ms) // 1000)
        if now >= due["housekeeping"]:
            self._housekeeping(now)
            due["housekeeping"] = now + _HOUSEKEEPING_MS
        self._log_sensor_changes()
        self._errors_in_row = 0
        nxt = due["occupancy"]
        for key in due:
            if due[key] < nxt:
                nxt = due[key]
        if self.lamp.level != self.lamp.target and now + 200 < nxt:
            nxt = now + 200  # keep a ramp smooth
        wait = nxt - board.ticks_ms()
        return wait if wait > 0 else 0

    def _sync_clock(self, now):
        """Set the clock (NTP, else the fleet server's time while unset) once the link is up."""
        if self.wifi is not None and not self.wifi.isconnected():
            self._due["clock"] = now + _NET_POLL_MS
            return
        if ondemand.call("core.clock_sync", "sync", self):
            self._clock_wait = _CLOCK_RETRY_MS
            self._due["clock"] = now + _CLOCK_RESYNC_MS
        else:  # 30 s, 1 min, … up to 16 min between attempts
            self._due["clock"] = now + self._clock_wait
            self._clock_wait = min(self._clock_wait * 2, 32 * _CLOCK_RETRY_MS)

    def _loop_failed(self, exc):
        """An exception escaped a tick: light the lamp, count it, reboot if it keeps happening."""
        self.loop_errors += 1
        self._errors_in_row += 1
        try:
            self.lamp.full()
        except Exception:  # the lamp output itself failing must not stop the loop
            pass
        self.log.error("loop_error", error=repr(exc), in_row=self._errors_in_row)
        if self._errors_in_row >= _MAX_CONSECUTIVE_ERRORS:
            self.log.error("rebooting", reason="repeated loop errors")
            self.board.reset()

    def run(self, until_ms=None):
        """Run the scheduler until board ticks reach `until_ms` (None: forever)."""
        board = self.board
        while until_ms is None or board.ticks_ms() < until_ms:
            try:
                wait = self.step()
            except Exception as e:  # fail lit, never crash
                self._loop_failed(e)
                wait = 1000
            if until_ms is not None:
                left = until_ms - board.ticks_ms()
                if wait > left:
                    wait = left
            board.sleep_ms(wait)


def keyset(node):
    """(serial, last refusal) of the node's release key set, read once and then kept."""
    kept = getattr(node, "keyset", None)
    if kept is None:
        from core.files import read_json

        keys = read_json(node.board.flash_dir.rstrip("/") + "/keys.json") or {}
        serial = keys.get("serial", keys.get("revocation_serial", 0))  # updater.verify.key_serial
        kept = node.keyset = [serial if isinstance(serial, int) else 0, ""]
    return kept


def _report_update(node, updater, report):
    """Add the update client's report and the key set's serial (and refusal) to `report`."""
    update = updater.report()
    if update is not None:
        report["update"] = update
    kept = keyset(node)
    report["keyset"] = kept[0]
    if kept[1]:
        report["keyset_error"] = kept[1]


def _follow_update(node, updater, reply):
    """A check-in reply's key statements, then its update offer; commit a healthy trial."""
    if reply.get("key_statements"):
        # rotations and revocations the server relays, each verified and saved before the
        # next; the key-set code is loaded for this and dropped again with what it imported
        kept = keyset(node)
        kept[0], kept[1] = ondemand.call("updater.keyring", "apply_statements",
                                         node.board.flash_dir.rstrip("/"),
                                         reply["key_statements"], node.log)
    updater.offer(reply.get("update"))
    if updater.on_trial() and proved_healthy(node):
        updater.healthy()
        node.log.info("update_committed", fw=node.fw_version)


def proved_healthy(node):
    """A release on trial is healthy once the loop runs clean and the light sensor reads.

    Checked after a successful check-in. The light sensor is the one the lamp depends on;
    an app that cannot read it, or whose loop throws, is rolled back by the trial timeout.
    """
    return node.loop_errors == 0 and node.lux is not None


def _drop_refused(node, records, refusal):
    """Drop only the reading the server named (sending those before it); else the batch.

    Returns the seq up to which the queue may be acknowledged, or None to retry later.
    """
    bad = _refused_index(refusal, len(records))
    if bad is None:
        node.rejected_records += len(records)
        node.log.error("telemetry_rejected", first=records[0][0], last=records[-1][0],
                       detail=repr(refusal)[:120])
        return records[-1][0]
    if bad > 0:
        try:
            top = node.uplink.post_telemetry(records[:bad])
        except Exception as e:  # the next round retries from the same place
            node.log.warn("upload_failed", error=repr(e)[:120])
            return None
        if top is None:
            return None
        node.queue.ack(top)
    node.rejected_records += 1
    node.log.error("telemetry_rejected", seq=records[bad][0], detail=repr(refusal)[:120])
    return records[bad][0]


def _refused_index(refusal, count):
    """Index of the reading a 422 names ({"detail": {"index": i, …}}), or None."""
    try:
        body = refusal.args[1]
        index = json.loads(body)["detail"]["index"]
    except (IndexError, ValueError, KeyError, TypeError):
        return None
    if isinstance(index, int) and 0 <= index < count:
        return index
    return None


# the update client's stand-in, resident on a node with slots and a server (node_main makes it):
# the client itself (about 20 KB of code) is loaded only when there is work
class LazyUpdater:
    """The update client, loaded only when there is an update to handle: at boot when one is
    under way or unreported (`load_now`), else when a check-in reply assigns one."""

    def __init__(self, board, uplink, root, log, load_now):
        self.board = board
        self.uplink = uplink
        self.root = root
        self.log = log
        self.real = None
        if load_now:
            self.load()

    def load(self):
        if self.real is None:
            from updater.client import Updater

            board = self.board
            self.real = Updater(self.uplink, board.name, board.epoch_s, board.reset,
                                 root=self.root, ota=getattr(board, "ota", None),
                                 feed=board.feed_watchdog, log=self.log)
        return self.real

    def report(self):
        return self.real.report() if self.real is not None else None

    def offer(self, assignment):
        if self.real is not None or assignment is not None:
            self.load().offer(assignment)

    def on_trial(self):
        return self.real is not None and self.real.on_trial()

    def healthy(self):
        return self.real is not None and self.real.healthy()

    def busy(self):
        return self.real is not None and self.real.busy()

    def step(self):
        return self.real is not None and self.real.step()

    def poll(self, uptime_s):
        if self.real is not None:
            self.real.poll(uptime_s)
