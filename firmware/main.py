"""Main (stable, at the flash root): run the selected slot's node application."""

try:
    APP_ROOT  # type: ignore[name-defined]  # set by boot.py, run first in the same globals
except NameError:
    exec(open("boot.py").read())

try:
    from core import node_main
except Exception as e:  # the slot's app cannot even load: reset, bootsel counts it
    print("0 ERROR app_unloadable error=%r" % (e,))
    try:
        import machine

        machine.reset()
    except ImportError:
        import sys

        sys.exit(3)
node_main.main(BOARD_MODULE, APP_ROOT)  # type: ignore[name-defined]  # noqa: F821 (boot.py)
