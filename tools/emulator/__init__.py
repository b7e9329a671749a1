"""Emulated lamppost: a CPython world with peripheral models that a MicroPython node talks to."""
