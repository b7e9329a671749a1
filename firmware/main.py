"""Main (stable, at the flash root): run the selected slot's node application."""

try:
    APP_ROOT  # set by boot.py, which runs first in the same globals on a device
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
node_main.main(BOARD_MODULE, APP_ROOT)  # noqa: F821 (both set by boot.py, above)
