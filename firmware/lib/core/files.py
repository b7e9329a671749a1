"""JSON files replaced atomically: a temp file, then a rename (remove first where FAT must).

The app's one copy of the write; bootsel.py, at the flash root, keeps its own because it runs
before (and without) any slot.
"""

import json
import os


def replace(src, dst):
    """Rename src over dst: atomic on littlefs and POSIX; FAT cannot rename over a file, so
    dst is removed first (a reader then falls back to the complete temp file)."""
    try:
        os.rename(src, dst)
    except OSError:
        os.remove(dst)
        os.rename(src, dst)


def write_json(path, doc, tmp=None):
    """Write `doc` to `path` atomically: the temp file (default path + ".tmp"), then a rename.

    A power cut leaves the old document or the new one, never half of one.
    """
    tmp = tmp or path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(doc))
    replace(tmp, path)


def read_json(path, tmp=None):
    """The JSON document at `path`, or None when it is missing or unreadable.

    When the file itself is missing, a complete temp file left by a FAT-style replace (remove,
    then rename) is used instead; a half-written temp file fails to parse and is ignored.
    """
    try:
        f = open(path)
    except OSError:
        try:
            f = open(tmp or path + ".tmp")
        except OSError:
            return None
    try:
        with f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None
