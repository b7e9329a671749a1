"""Pure algorithms in MicroPython 1.9 syntax (the micro:bit runs them too)."""
