"""Main: build the board, log why we reset, start the watchdog and run the node, fail lit."""

try:
    BOARD_MODULE  # noqa: set by boot.py, which runs first in the same globals on a device
except NameError:
    exec(open("boot.py").read())

WATCHDOG_MS = 30000
FATAL_RETRY_MS = 5000


IDENTITY_FILE = "identity.json"  # {"device_id", "secret" (hex), "server" (URL)}, provisioned


def make_uplink(board, log):
    """The signed HTTP link to the fleet server when the node has an identity; otherwise the
    board's own stand-in (an emulated board reports to its world) or nothing."""
    import json

    try:
        with open(board.flash_dir.rstrip("/") + "/" + IDENTITY_FILE) as f:
            identity = json.loads(f.read())
    except (OSError, ValueError):
        return getattr(board, "uplink", None)
    from uplink import Uplink

    return Uplink(identity, board.epoch_s, log)


def main():
    board = __import__(BOARD_MODULE).Board()
    from log import Log

    log = Log(clock_ms=board.ticks_ms)
    log.info("reset", cause=board.reset_cause(), board=board.name)
    board.start_watchdog(WATCHDOG_MS)
    try:
        from node import Node

        node = Node(board, uplink=make_uplink(board, log), log=log,
                    measure_raw=getattr(board, "measure_raw", False))
        node.run()
    except Exception as e:  # noqa: the app itself failed: stay lit, then reboot
        board.pwm_lamp.duty_u16(65535)
        log.error("fatal", error=repr(e))
        board.sleep_ms(FATAL_RETRY_MS)
        board.reset()


main()
