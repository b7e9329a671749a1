"""Operator commands from a check-in reply (identify, lamp_override, reboot), loaded on demand."""

from micropython import const
import os

from core.files import read_json, write_json

_IDENTIFY_MS = const(10000)


def run(node, cmd, now):
    """Carry out one command on `node` and remember its id for the next check-in's acks."""
    kind = cmd.get("type")
    cid = cmd.get("id")
    args = cmd.get("args") or {}
    node.log.info("command", id=cid, type=kind)
    if kind == "identify":
        node._identify_until = now + _IDENTIFY_MS
    elif kind == "lamp_override":
        level = args.get("level_pct")
        if level is None:
            node.policy.clear_override()
        else:
            minutes = args.get("minutes")
            try:
                node.policy.set_override(
                    level, None if minutes is None else now + minutes * 60000)
            except (ValueError, TypeError):
                node.log.error("command_refused", id=cid, reason="bad level")
    elif kind == "reboot":
        node._done_cmds.append(cid)
        save_done(node.state_path, node._done_cmds)
        node.log.info("reboot", id=cid)
        node.lamp.full()
        node.board.reset()
        return
    else:
        node.log.warn("command_unknown", id=cid, type=kind)
    node._done_cmds.append(cid)


def run_all(node, cmds, now):
    """Run the commands of one check-in reply in order."""
    for cmd in cmds:
        run(node, cmd, now)


def save_done(path, done):
    """Keep the acknowledged ids across a reboot (written atomically)."""
    write_json(path, {"commands_done": done})


def load_done(path):
    """The ids saved before a reboot (the file is consumed), or []."""
    doc = read_json(path)
    for name in (path, path + ".tmp"):
        try:
            os.remove(name)
        except OSError:
            pass
    try:
        return doc.get("commands_done") or []
    except AttributeError:
        return []
