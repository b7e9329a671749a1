"""Structured server logs: text by default, one JSON object per line when asked."""

from __future__ import annotations

import json
import logging
import sys


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry)


def setup_logging(level: str = "info", as_json: bool = False) -> None:
    """Configure the root logger once for the process."""
    root = logging.getLogger()
    if getattr(root, "_lamplighter", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if as_json else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    root._lamplighter = True  # type: ignore[attr-defined]
