"""Register-level models of the lamppost's peripherals, driven by the world's true conditions."""
