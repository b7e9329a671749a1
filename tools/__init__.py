"""Technician and developer tooling: the `lamplighter` CLI, flashing, provisioning, board emulator."""
