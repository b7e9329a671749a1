"""The slot's entry point: mount its code image, build the board, start the watchdog, run."""

# Imported from the slot's files, before the code image is mounted: it imports the rest of
# the app only inside its functions, once the image is there (app_image forgets what `core`
# had loaded from the files), and keeps no module of its own but this one.

from micropython import const

_WATCHDOG_MS = const(30000)
# what node_boot builds and the running node keeps: these modules stay loaded after it
# (core.node with its parts, the update client with its LazyUpdater stand-in, the uplink)
_RESIDENT = const(("core.node", "net.uplink", "algorithms", "drivers",
                   "store.telemetry_queue", "core.files", "core.log", "updater", "bootsel"))
_FATAL_RETRY_MS = const(5000)


def _mount_image(app_root):
    """Mount the slot's code image (app_image.py) before the rest of the app is imported;
    returns (where, size, heap bytes, error). The node runs without it if it fails."""
    from core import ondemand  # from the files; the image's copy replaces it once mounted

    try:
        return ondemand.call("core.app_image", "mount", app_root) + (None,)
    except Exception as e:  # modules then load from the slot's files, as without ROMFS
        return None, 0, 0, e


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
    board.start_watchdog(_WATCHDOG_MS)
    try:
        from core import ondemand

        # the node, built by node_boot, whose code is then dropped (needed at boot only)
        node = ondemand.call("core.node_boot", "build", board, log, version, keep=_RESIDENT)
        node.run()
    except Exception as e:  # the app itself failed: stay lit, then reboot
        board.pwm_lamp.duty_u16(65535)
        log.error("fatal", error=repr(e))
        board.sleep_ms(_FATAL_RETRY_MS)
        board.reset()
