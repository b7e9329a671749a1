"""The slot's entry point: build the board, log why we reset, start the watchdog, run the node."""

import json

from transient import call_loaded

WATCHDOG_MS = 30000
FATAL_RETRY_MS = 5000


def read_json(path):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _assemble(board, log, version):
    """The node, built by node_boot, whose code is then dropped (needed at boot only)."""
    return call_loaded("node_boot", "build", board, log, version)


def main(board_module, app_root):
    board = __import__(board_module).Board()
    from log import Log

    log = Log(clock_ms=board.ticks_ms)
    version = read_json(app_root.rstrip("/") + "/app_version.json") or {}
    log.info("reset", cause=board.reset_cause(), board=board.name, app=app_root,
             version=version.get("version", "unknown"))
    board.start_watchdog(WATCHDOG_MS)
    try:
        node = _assemble(board, log, version)
        node.run()
    except Exception as e:  # noqa: the app itself failed: stay lit, then reboot
        board.pwm_lamp.duty_u16(65535)
        log.error("fatal", error=repr(e))
        board.sleep_ms(FATAL_RETRY_MS)
        board.reset()
