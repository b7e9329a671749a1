"""Pure algorithms (filters, occupancy, dimming) in MicroPython 1.9 syntax, for the micro:bit too."""
