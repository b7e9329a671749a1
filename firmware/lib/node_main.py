"""The slot's entry point: build the board, log why we reset, start the watchdog, run the node."""

import json

WATCHDOG_MS = 30000
FATAL_RETRY_MS = 5000
IDENTITY_FILE = "identity.json"  # {"device_id", "secret" (hex), "server" (URL)}, provisioned


def read_json(path):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def make_uplink(board, log):
    """The signed HTTP link to the fleet server when the node has an identity; otherwise the
    board's own stand-in (an emulated board reports to its world) or nothing.

    A factory-imaged node first redeems its one-time enrollment code for an identity; when
    the server cannot be reached it tries again at the next boot.
    """
    root = board.flash_dir.rstrip("/")
    if read_json(root + "/enrollment.json") is not None:
        import enroll

        log.info("enroll", result=enroll.redeem(root, log=log))
    identity = read_json(root + "/" + IDENTITY_FILE)
    if identity is None:
        return getattr(board, "uplink", None)
    from uplink import Uplink

    return Uplink(identity, board.epoch_s, log)


UPDATE_STATE = "/update/state.json"  # updater.STATE_FILE, read here without importing it


class LazyUpdater:
    """The update client, loaded (about 20 KB of code) only when there is an update to handle:
    at boot when one is under way or unreported, else when a check-in reply assigns one."""

    def __init__(self, factory, root):
        self._factory = factory
        self._real = None
        state = read_json(root + UPDATE_STATE)
        if state is not None and state.get("phase") != "idle":
            self._load()

    def _load(self):
        if self._real is None:
            self._real = self._factory()
        return self._real

    def report(self):
        return self._real.report() if self._real is not None else None

    def offer(self, assignment):
        if self._real is not None or assignment is not None:
            self._load().offer(assignment)

    def on_trial(self):
        return self._real is not None and self._real.on_trial()

    def healthy(self):
        return self._real is not None and self._real.healthy()

    def busy(self):
        return self._real is not None and self._real.busy()

    def step(self):
        return self._real is not None and self._real.step()

    def poll(self, uptime_s):
        if self._real is not None:
            self._real.poll(uptime_s)


def make_updater(board, uplink, log):
    """The A/B update client, for a node that has app slots and talks to a real server."""
    if uplink is None or not hasattr(uplink, "device_id"):
        return None
    import bootsel

    root = board.flash_dir.rstrip("/")
    if bootsel.load_pointer(root) is None:
        return None

    def factory():
        from updater import Updater

        return Updater(uplink, board.name, board.epoch_s, board.reset, root=root,
                       ota=getattr(board, "ota", None), feed=board.feed_watchdog, log=log)

    return LazyUpdater(factory, root)


def main(board_module, app_root):
    board = __import__(board_module).Board()
    from log import Log

    log = Log(clock_ms=board.ticks_ms)
    version = read_json(app_root.rstrip("/") + "/app_version.json") or {}
    log.info("reset", cause=board.reset_cause(), board=board.name, app=app_root,
             version=version.get("version", "unknown"))
    board.start_watchdog(WATCHDOG_MS)
    try:
        from node import FW_VERSION, Node

        uplink = make_uplink(board, log)
        node = Node(board, uplink=uplink, log=log, updater=make_updater(board, uplink, log),
                    measure_raw=getattr(board, "measure_raw", False),
                    fw_version=version.get("version", FW_VERSION))
        node.run()
    except Exception as e:  # noqa: the app itself failed: stay lit, then reboot
        board.pwm_lamp.duty_u16(65535)
        log.error("fatal", error=repr(e))
        board.sleep_ms(FATAL_RETRY_MS)
        board.reset()
