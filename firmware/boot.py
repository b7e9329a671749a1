"""Boot: put the active app's libraries on sys.path and pick this hardware's board module."""

import sys

# The update issue replaces active_app_root(): read the A/B slot pointer, count boot attempts
# and roll back an update that did not prove itself. Until then the app lives at the root.
_UNIX = sys.platform in ("linux", "darwin")


def active_app_root():
    """Directory of the app that should run ("" is the filesystem root on a device)."""
    return "." if _UNIX else ""


def setup_paths(root):
    for sub in ("/boards", "/lib"):
        path = root + sub
        if path not in sys.path:
            sys.path.insert(0, path)


APP_ROOT = active_app_root()
setup_paths(APP_ROOT)
BOARD_MODULE = "emulated" if _UNIX else "esp32_devkitc"
