"""The HTTP layer: one router module per resource (device-facing ones in device/), their deps."""
