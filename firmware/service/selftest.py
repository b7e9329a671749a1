"""Service script: import the board from the active slot, read each sensor once, print JSON."""

import gc
import json
import sys


def _app_root(root):
    """The active slot's directory (the root itself on a node without slots)."""
    try:
        import bootsel
    except ImportError:
        return root
    pointer = bootsel.load_pointer(root)
    return bootsel.slot_dir(pointer["active"], root) if pointer else root


def _until(board, fn, ms):
    waited = 0
    while waited <= ms:
        if fn():
            return True
        board.sleep_ms(100)
        waited += 100
    return False


def _bme(board):
    from drivers.bme280 import BME280

    d = BME280(board.i2c)
    ok = _until(board, d.read, 500)
    return {"ok": ok, "fault": d.health.last, "temperature_c": d.temperature_c,
            "humidity_pct": d.humidity_pct, "pressure_hpa": d.pressure_hpa}


def _light(board):
    from drivers.veml7700 import VEML7700

    d = VEML7700(board.i2c)
    ok = _until(board, d.read, 500)
    return {"ok": ok, "fault": d.health.last, "lux": d.lux}


def _pms(board):
    from drivers.pms5003 import PMS5003

    d = PMS5003(board.uart_pm)
    ok = _until(board, lambda: d.poll(board.ticks_ms()), 3000)
    return {"ok": ok, "fault": d.health.last, "pm25_ugm3": d.pm25_ugm3,
            "pm10_ugm3": d.pm10_ugm3}


def _radar(board):
    from drivers.ld2410 import LD2410

    d = LD2410(board.uart_radar)
    _until(board, lambda: d.poll(board.ticks_ms()) and False, 1000)
    return {"ok": not d.health.failed, "fault": d.health.last, "presence": d.presence}


def _pir(board):
    from drivers.pir import PIR

    d = PIR(board.pin_pir)
    v = d.read(board.ticks_ms())
    return {"ok": not d.health.failed, "fault": d.health.last, "motion": bool(v)}


SENSORS = (("bme280", _bme), ("veml7700", _light), ("pms5003", _pms), ("ld2410", _radar),
           ("pir", _pir))


def selftest():
    """One JSON line: the app slot, board, reset cause, config errors and each sensor's reading.

    A sensor that raises is reported as {"ok": false, "fault": ...}; the others still run.
    """
    unix = sys.platform in ("linux", "darwin")
    root = "." if unix else ""
    app = _app_root(root)
    for sub in ("/boards", "/lib"):
        if app + sub not in sys.path:
            sys.path.insert(0, app + sub)
    out = {"app": app or "/", "sensors": {}}
    try:
        from core import config

        out["config_errors"] = config.load_with_errors(root + "/config.json")[1]
    except Exception as e:  # reported, not raised: the sensors still get read
        out["config_errors"] = [repr(e)]
    try:
        board = __import__("emulated" if unix else "esp32_devkitc").Board()
    except Exception as e:  # a board that cannot start is the test's finding
        board = None
        out["error"] = "board: " + repr(e)
    if board is not None:
        try:
            out["board"] = board.name
            out["reset_cause"] = board.reset_cause()
            for name, read in SENSORS:
                try:
                    out["sensors"][name] = read(board)
                except Exception as e:  # one sensor's fault is that sensor's result
                    out["sensors"][name] = {"ok": False, "fault": repr(e)}
        finally:
            # an emulated board holds its street's only connection: hand it back
            link = getattr(board, "link", None)
            if link is not None:
                link.sock.close()
    gc.collect()
    out["mem_free"] = gc.mem_free()
    print(json.dumps(out))
