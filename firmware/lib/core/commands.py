"""Operator commands from a check-in reply (identify, lamp_override, reboot), loaded on demand.

Each command is answered at the next check-in: node._done_cmds holds the answers, which the
status report sends as they are ({"id", "ok": true, "result"} or {"id", "ok": false,
"reason"}: short strings, the check-in's body is small) and which are kept in node_state.json
across the reboot a `reboot` command makes.
"""

from micropython import const
import os

from core.files import read_json, write_json

_IDENTIFY_MS = const(10000)


def _answer(node, cid, reason, result):
    """Remember the answer for the next check-in: refused with `reason`, else ok."""
    if reason:
        node._done_cmds.append({"id": cid, "ok": False, "reason": reason})
    else:
        node._done_cmds.append({"id": cid, "ok": True, "result": result})


def _override(node, args, now):
    """lamp_override: (reason, result). No level_pct clears an override; minutes is optional."""
    level = args.get("level_pct")
    if level is None:
        node.policy.clear_override()
        return None, "override cleared"
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not 0 <= level <= 100:
        return "bad level_pct", None
    minutes = args.get("minutes")
    if minutes is not None and (not isinstance(minutes, int) or isinstance(minutes, bool)
                                or not 1 <= minutes <= 1440):
        return "bad minutes", None
    node.policy.set_override(level, None if minutes is None else now + minutes * 60000)
    if minutes is None:
        return None, "level %s %% until cleared" % level
    return None, "level %s %% for %d min" % (level, minutes)


def run(node, cmd, now):
    """Carry out one command on `node` and remember its answer for the next check-in."""
    kind = cmd.get("type")
    cid = cmd.get("id")
    args = cmd.get("args") or {}
    node.log.info("command", id=cid, type=kind)
    reason = result = None
    try:
        if not isinstance(args, dict):
            reason = "bad args"
        elif kind == "identify":
            node._identify_until = now + _IDENTIFY_MS
            result = "blinking %d s" % (_IDENTIFY_MS // 1000)
        elif kind == "lamp_override":
            reason, result = _override(node, args, now)
        elif kind == "reboot":
            _answer(node, cid, None, "rebooting")
            save_done(node.state_path, node._done_cmds)
            node.log.info("reboot", id=cid)
            node.lamp.full()
            node.board.reset()
            return
        else:
            reason = "unknown command"
    except Exception as e:  # one command failing must not keep the others from their answers
        reason = ("failed: " + repr(e))[:64]
    if reason:
        node.log.warn("command_refused", id=cid, type=kind, reason=reason)
    _answer(node, cid, reason, result)


def run_all(node, cmds, now):
    """Run the commands of one check-in reply in order."""
    for cmd in cmds:
        run(node, cmd, now)


def save_done(path, done):
    """Keep the answers across a reboot (written atomically)."""
    write_json(path, {"commands_done": done})


def load_done(path):
    """The answers saved before a reboot (the file is consumed), or [].

    Firmware before answers saved bare ids: each becomes an ok answer.
    """
    doc = read_json(path)
    for name in (path, path + ".tmp"):
        try:
            os.remove(name)
        except OSError:
            pass
    try:
        done = doc.get("commands_done") or []
    except AttributeError:
        return []
    return [a if isinstance(a, dict) else {"id": a, "ok": True} for a in done]
