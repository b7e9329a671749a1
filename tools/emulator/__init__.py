"""The emulated lamppost (a world with sensor models a MicroPython node talks to), sim, demo."""
