"""Service script: print the node's own view of itself (platform, identity, half-done marker)."""

import json
import sys


def _read_json(path):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def node_state(identity_path, marker_path):
    """One JSON line: {"platform", "identity", "marker"}; an unreadable file is None."""
    print(json.dumps({"platform": sys.platform, "identity": _read_json(identity_path),
                      "marker": _read_json(marker_path)}))
