"""Boot selection: pick the A/B app slot to run, count trial boots, roll back a failing update.

This module lives at the filesystem root and is never replaced by an app update. The slot
pointer /slot.json says which slot is active and which one (if any) is on trial:

    {"active": "a", "previous": "b" | None, "committed_sequence": 12,
     "pending": None | {"slot": "b", "attempts": 0, "rollout_id": 7, "version": "1.5.0",
                        "sequence": 13},
     "rolled_back": None | {"rollout_id": 7, "version": "1.5.0", "sequence": 13, "reason": "..."}}

Every write is a temp file then os.rename, so a power cut leaves the old or the new pointer,
never half of one. The update client (lib/updater/client.py) imports this module for the same
pointer and JSON helpers, so both sides agree on the format.

read_json/write_json here are the stable root's own copy of the app's core/files.py: this
module runs before any slot is chosen (and with no slot at all), so it cannot import from one;
the app keeps its copy in the slot rather than this module resident (boot.py drops it).
"""

import json
import os

MAX_ATTEMPTS = 3  # trial boots of a pending slot before it is given up
SLOTS = ("a", "b")
POINTER = "/slot.json"
VERSION_FILE = "app_version.json"


def read_json(path):
    """The JSON document at `path`, or None when it is missing or unreadable.

    When the file itself is missing, a complete temp file left by a FAT-style rename (remove,
    then rename) is used instead; a half-written temp file fails to parse and is ignored.
    """
    try:
        f = open(path)
    except OSError:
        try:
            f = open(path + ".tmp")
        except OSError:
            return None
    try:
        with f:
            return json.load(f)
    except ValueError:
        return None


def write_json(path, doc):
    """Write `doc` to `path` atomically: temp file, then rename over the old file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    try:
        os.rename(tmp, path)  # atomic on littlefs and POSIX
    except OSError:
        os.remove(path)  # FAT cannot rename over a file; read_json() falls back to the temp
        os.rename(tmp, path)


def slot_dir(slot, root=""):
    """Directory of app slot `slot` ("a" or "b")."""
    return root + "/slots/" + slot


def other(slot):
    return "b" if slot == "a" else "a"


def slot_version(slot, root=""):
    """The slot's {"version", "sequence"} (written last by an install), or None if unusable."""
    if slot not in SLOTS:
        return None
    doc = read_json(slot_dir(slot, root) + "/" + VERSION_FILE)
    if not isinstance(doc, dict) or not isinstance(doc.get("sequence"), int):
        return None
    return doc


def load_pointer(root=""):
    """The slot pointer; rebuilt from the slots themselves when the file is missing."""
    p = read_json(root + POINTER)
    if isinstance(p, dict) and p.get("active") in SLOTS:
        p.setdefault("previous", None)
        p.setdefault("pending", None)
        p.setdefault("rolled_back", None)
        p.setdefault("committed_sequence", 0)
        return p
    # No pointer (first boot after provisioning, or never written): the first usable slot is
    # active. A pending update cannot be lost this way: pending is only ever written into an
    # existing, complete pointer.
    for slot in SLOTS:
        v = slot_version(slot, root)
        if v is not None:
            return {"active": slot, "previous": None, "pending": None, "rolled_back": None,
                    "committed_sequence": v["sequence"]}
    return None


def save_pointer(p, root=""):
    write_json(root + POINTER, p)


def _roll_back(p, reason, root):
    pend = p["pending"]
    p["rolled_back"] = {"rollout_id": pend.get("rollout_id"), "version": pend.get("version"),
                        "sequence": pend.get("sequence"), "reason": reason}
    p["pending"] = None
    save_pointer(p, root)


def select(root=""):
    """Directory of the app to boot now (root itself when the node has no slots yet).

    A pending slot gets at most MAX_ATTEMPTS boots; each attempt is counted on flash before
    the app runs, so a crash, a watchdog reset or a power cut during a trial boot all count.
    A pending slot that is missing or incomplete is rolled back at once.
    """
    p = load_pointer(root)
    if p is None:
        return root
    pend = p["pending"]
    if pend is not None:
        v = slot_version(pend.get("slot"), root)
        if pend.get("slot") == p["active"] or v is None or v["sequence"] != pend.get("sequence"):
            _roll_back(p, "pending slot incomplete", root)
        elif pend.get("attempts", 0) + 1 > MAX_ATTEMPTS:
            _roll_back(p, "no healthy start in %d boots" % MAX_ATTEMPTS, root)
        else:
            pend["attempts"] = pend.get("attempts", 0) + 1
            save_pointer(p, root)
            return slot_dir(pend["slot"], root)
    return slot_dir(p["active"], root)


def running_slot(root=""):
    """The slot select() booted: the pending one while on trial, else the active one."""
    p = load_pointer(root)
    if p is None:
        return None
    return p["pending"]["slot"] if p["pending"] else p["active"]
