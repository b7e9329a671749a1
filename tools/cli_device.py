"""`lamplighter device …`: commands a technician runs against one node."""

from __future__ import annotations

from tools.cli import device_app  # noqa: F401
