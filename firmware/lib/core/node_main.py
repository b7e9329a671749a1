"""The slot's entry point: mount its code image, build board and node, start the watchdog, run."""

# Imported from the slot's files, before the code image is mounted: it imports the rest of
# the app only inside its functions, once the image is there (app_image forgets what `core`
# had loaded from the files), and keeps no module of its own but this one.

from micropython import const

_WATCHDOG_MS = const(30000)
_FATAL_RETRY_MS = const(5000)
# {"device_id", "secret" (hex), "server" (URL)}, provisioned
_IDENTITY_FILE = const("identity.json")
# updater.client.STATE_FILE, read here without importing it
_UPDATE_STATE = const("/update/state.json")
_ENROLLMENT_FILE = const("/enrollment.json")  # {"code", "server", ...}, factory images
_WIFI_FILE = const("/wifi.json")  # {"ssid", "password"}, provisioned; never logged
_ENROLL_WAIT_MS = const(30000)  # how long a first boot waits for Wi-Fi before enrolling


def _mount_image(app_root):
    """Mount the slot's code image (app_image.py) before the rest of the app is imported;
    returns (where, size, heap bytes, error). The node runs without it if it fails."""
    from core import ondemand  # from the files; the image's copy replaces it once mounted

    try:
        return ondemand.call("core.app_image", "mount", app_root) + (None,)
    except Exception as e:  # modules then load from the slot's files, as without ROMFS
        return None, 0, 0, e


def make_wifi(board, log):
    """The Wi-Fi link for a board with a radio and provisioned credentials; None: the node is
    wired (an emulated board without credentials) or has no way out (logged)."""
    from core.files import read_json

    make = getattr(board, "wlan", None)
    if make is None:
        return None
    creds = read_json(board.flash_dir.rstrip("/") + _WIFI_FILE)
    if not isinstance(creds, dict) or not creds.get("ssid"):
        if not hasattr(board, "world_uplink"):  # a real board: nothing will reach the server
            log.warn("wifi_unconfigured", file=_WIFI_FILE)
        return None
    from net.wifi import Wifi

    return Wifi(make(), creds, log)


def make_uplink(board, log, wifi=None):
    """The signed HTTP link to the fleet server when the node has an identity; otherwise the
    board's own stand-in (an emulated board reports to its world) or nothing.

    A factory-imaged node first redeems its one-time enrollment code for an identity; when
    the server cannot be reached (no link within _ENROLL_WAIT_MS, a server down) the node runs
    with an _Enrolling stand-in that tries again at each check-in.
    """
    from core import ondemand
    from core.files import read_json

    root = board.flash_dir.rstrip("/")
    if read_json(root + _ENROLLMENT_FILE) is not None:
        # the link first: poll it for up to _ENROLL_WAIT_MS (the watchdog fed)
        end = board.ticks_ms() + _ENROLL_WAIT_MS
        while wifi is not None and not wifi.poll(board.ticks_ms()) and board.ticks_ms() < end:
            board.feed_watchdog()
            board.sleep_ms(500)
        # neither enroll nor its HTTP client stays loaded
        result = ondemand.call("net.enroll", "redeem", root, None, log)
        log.info("enroll", result=result)
        if result == "retry":
            return _Enrolling(board, log)
    identity = read_json(root + "/" + _IDENTITY_FILE)
    if identity is None:
        make = getattr(board, "world_uplink", None)
        return make() if make is not None else None
    from net.uplink import Uplink

    return Uplink(identity, board.epoch_s, log, root=root)


class _Enrolling:
    """The uplink of a node whose enrollment code is not redeemed yet: each check-in tries the
    code again (once the link is up; no clock needed) and, once it is redeemed, resets the
    board, which boots with its identity (the RTC keeps its time). Telemetry stays queued."""

    def __init__(self, board, log):
        self.board = board
        self.log = log

    def checkin(self, status):
        from core import ondemand

        result = ondemand.call("net.enroll", "redeem", self.board.flash_dir.rstrip("/"), None,
                               self.log)
        self.log.info("enroll", result=result)
        if result == "enrolled":
            self.board.reset()
        return None

    def post_telemetry(self, records):
        return None


def make_updater(board, uplink, log):
    """The A/B update client, for a node that has app slots and talks to a real server."""
    if uplink is None or not hasattr(uplink, "device_id"):
        return None
    from core import ondemand
    from core.files import read_json

    root = board.flash_dir.rstrip("/")
    # bootsel (at the flash root) stays loaded only if the update client loads now
    pointer = ondemand.call("bootsel", "load_pointer", root)
    if pointer is None:
        return None
    from core.node import LazyUpdater

    state = read_json(root + _UPDATE_STATE)
    return LazyUpdater(board, uplink, root, log,
                       load_now=state is not None and state.get("phase") != "idle")


def build(board, log, version):
    """The node, wired to its uplink and update client, ready to run."""
    from core.node import FW_VERSION, Node

    wifi = make_wifi(board, log)
    uplink = make_uplink(board, log, wifi)
    return Node(board, uplink=uplink, log=log, updater=make_updater(board, uplink, log),
                measure_raw=getattr(board, "measure_raw", False),
                fw_version=version.get("version", FW_VERSION), wifi=wifi)


def main(board_module, app_root):
    where, size, heap, error = _mount_image(app_root)
    board = __import__(board_module).Board()
    board.app_image_heap = heap  # the image's buffer: flash on a device, apart from the app
    from core.files import read_json
    from core.log import Log

    log = Log(clock_ms=board.ticks_ms)
    version = read_json(app_root.rstrip("/") + "/app_version.json") or {}
    log.info("reset", cause=board.reset_cause(), board=board.name, app=app_root,
             version=version.get("version", "unknown"))
    if error is not None:
        log.warn("app_image_failed", error=repr(error))
    elif where is not None:
        log.info("app_image", where=where, size=size)
    elif size:  # a ROMFS partition smaller than the image: modules load from the files
        log.warn("app_image_too_big", size=size)
    else:  # no ROMFS in this firmware (or a source slot): the code loads from its files, once
        log.info("app_image", where="files", size=0)
    board.start_watchdog(_WATCHDOG_MS)
    try:
        build(board, log, version).run()
    except Exception as e:  # the app itself failed: stay lit, then reboot
        board.pwm_lamp.duty_u16(65535)
        log.error("fatal", error=repr(e))
        board.sleep_ms(_FATAL_RETRY_MS)
        board.reset()
