"""Boot (stable, at the flash root): select the A/B app slot and put its code on sys.path."""

import sys

_UNIX = sys.platform in ("linux", "darwin")
ROOT = "." if _UNIX else ""  # the flash root: the process's directory on the emulated board


def active_app_root():
    """Directory of the app to run: the slot bootsel picks (counting trial boots), or the
    root itself on a node without slots (a development checkout)."""
    try:
        import bootsel
    except ImportError:
        return ROOT
    try:
        return bootsel.select(ROOT)
    finally:
        # only the update client needs it again (it imports it then): keep the heap for the app
        del sys.modules["bootsel"]


def setup_paths(root):
    for sub in ("/boards", "/lib"):
        path = root + sub
        if path not in sys.path:
            sys.path.insert(0, path)


APP_ROOT = active_app_root()
setup_paths(APP_ROOT)
BOARD_MODULE = "emulated" if _UNIX else "esp32_devkitc"
