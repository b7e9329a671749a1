"""A node's check-in: its status out, then the reply's update, configuration and commands in."""

# Loaded for each check-in (every few minutes) and dropped again: node.Node keeps only the
# loop's code resident.

from core import ondemand



def status(node):
    """What the node reports at each check-in."""
    return {
        "fw_version": node.fw_version,
        "uptime_s": (node.board.ticks_ms() - node._boot_ms) // 1000,
        "mem_free": node.board.mem_free(),
        "rssi": _rssi(node.board),
        "boot_reason": node.boot_reason,
        "sensor_faults": node.sensor_faults(),
        "config_version": node.cfg["version"],
        "queue_len": len(node.queue),
        "queue_dropped": node.queue.dropped,
        "lamp_level_pct": round(node.lamp.level, 1),
        "acks": [{"id": cid, "ok": True} for cid in node._done_cmds],
    }


def _rssi(board):
    rssi = getattr(board, "rssi", None)
    return rssi() if rssi else None


def _keyset(node):
    """(serial, last refusal) of the node's release key set, read once and then kept."""
    keyset = getattr(node, "keyset", None)
    if keyset is None:
        from core.files import read_json

        keys = read_json(node.board.flash_dir.rstrip("/") + "/keys.json") or {}
        serial = keys.get("serial", keys.get("revocation_serial", 0))  # updater.verify.key_serial
        keyset = node.keyset = [serial if isinstance(serial, int) else 0, ""]
    return keyset


def _apply_key_statements(node, statements):
    """Rotations and revocations the server relays, each verified and saved before the next.

    The key-set code is loaded for this and dropped again with what it imported.
    """
    keyset = _keyset(node)
    keyset[0], keyset[1] = ondemand.call("updater.keyring", "apply_statements",
                                         node.board.flash_dir.rstrip("/"), statements, node.log)


def checkin(node, now):
    """Report the status (and the update client's report); act on what the server replies.

    A node with an update client also reports its key set's serial; the reply's key
    statements are applied before its update offer, so a release signed by a key that a
    rotation just introduced is checked against the new key set.
    """
    report = status(node)
    updater = node.updater
    if updater is not None:
        update = updater.report()
        if update is not None:
            report["update"] = update
        keyset = _keyset(node)
        report["keyset"] = keyset[0]
        if keyset[1]:
            report["keyset_error"] = keyset[1]
    try:
        reply = node.uplink.checkin(report)
    except Exception as e:  # noqa: a network failure is not a node failure
        node.uplink_errors += 1
        node.log.warn("checkin_failed", error=repr(e))
        return
    node._done_cmds = []
    if not reply:
        return
    if updater is not None:
        if reply.get("key_statements"):
            _apply_key_statements(node, reply["key_statements"])
        updater.offer(reply.get("update"))
        if updater.on_trial() and proved_healthy(node):
            updater.healthy()
            node.log.info("update_committed", fw=node.fw_version)
    if reply.get("config") is not None and reply.get("config_version") is not None:
        _apply_config(node, reply["config"], reply["config_version"])  # null: nothing newer
    cmds = reply.get("commands")
    if cmds:
        ondemand.call("core.commands", "run_all", node, cmds, now)
    nxt = reply.get("next_checkin_s")
    if isinstance(nxt, int) and 10 <= nxt <= 86400:
        node._next_checkin_s = nxt


def proved_healthy(node):
    """A release on trial is healthy once the loop runs clean and the light sensor reads.

    Checked after a successful check-in. The light sensor is the one the lamp depends on;
    an app that cannot read it, or whose loop throws, is rolled back by the trial timeout.
    """
    return node.loop_errors == 0 and node.lux is not None


def _apply_config(node, new_cfg, version):
    if version == node.cfg["version"]:
        return
    ondemand.call("core.node_setup", "apply_reply_config", node, new_cfg, version)
