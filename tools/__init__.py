"""Technician and developer tools: the `lamplighter` CLI, flashing, provisioning, emulator."""
