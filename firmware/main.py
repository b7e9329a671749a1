"""Main: build the board, log why we reset, start the watchdog and run the node, fail lit."""

try:
    BOARD_MODULE  # noqa: set by boot.py, which runs first in the same globals on a device
except NameError:
    exec(open("boot.py").read())

WATCHDOG_MS = 30000
FATAL_RETRY_MS = 5000


def make_uplink(board):
    """The link to the fleet server; an emulated board without a server reports to its world."""
    return getattr(board, "uplink", None)


def main():
    board = __import__(BOARD_MODULE).Board()
    from log import Log

    log = Log(clock_ms=board.ticks_ms)
    log.info("reset", cause=board.reset_cause(), board=board.name)
    board.start_watchdog(WATCHDOG_MS)
    try:
        from node import Node

        node = Node(board, uplink=make_uplink(board), log=log,
                    measure_raw=getattr(board, "measure_raw", False))
        node.run()
    except Exception as e:  # noqa: the app itself failed: stay lit, then reboot
        board.pwm_lamp.duty_u16(65535)
        log.error("fatal", error=repr(e))
        board.sleep_ms(FATAL_RETRY_MS)
        board.reset()


main()
