"""Telemetry on flash: the queue, opening and recovering it, dropping refused records."""
