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
        "rssi": rssi(node.board),
        "boot_reason": node.boot_reason,
        "sensor_faults": node.sensor_faults(),
        "config_version": node.cfg["version"],
        "queue_len": len(node.queue),
        "queue_dropped": node.queue.dropped,
        "lamp_level_pct": round(node.lamp.level, 1),
        "acks": [{"id": cid, "ok": True} for cid in node._done_cmds],
    }


def rssi(board):
    read = getattr(board, "rssi", None)
    return read() if read else None


def keyset(node):
    """(serial, last refusal) of the node's release key set, read once and then kept."""
    kept = getattr(node, "keyset", None)
    if kept is None:
        from core.files import read_json

        keys = read_json(node.board.flash_dir.rstrip("/") + "/keys.json") or {}
        serial = keys.get("serial", keys.get("revocation_serial", 0))  # updater.verify.key_serial
        kept = node.keyset = [serial if isinstance(serial, int) else 0, ""]
    return kept


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
        kept = keyset(node)
        report["keyset"] = kept[0]
        if kept[1]:
            report["keyset_error"] = kept[1]
    try:
        reply = node.uplink.checkin(report)
    except Exception as e:  # a network failure is not a node failure
        node.uplink_errors += 1
        node.log.warn("checkin_failed", error=repr(e))
        return
    node._done_cmds = []
    if not reply:
        return
    if updater is not None:
        if reply.get("key_statements"):
            # rotations and revocations the server relays, each verified and saved before the
            # next; the key-set code is loaded for this and dropped again with what it imported
            kept = keyset(node)
            kept[0], kept[1] = ondemand.call("updater.keyring", "apply_statements",
                                             node.board.flash_dir.rstrip("/"),
                                             reply["key_statements"], node.log)
        updater.offer(reply.get("update"))
        if updater.on_trial() and proved_healthy(node):
            updater.healthy()
            node.log.info("update_committed", fw=node.fw_version)
    if reply.get("config") is not None and reply.get("config_version") is not None:
        apply_config(node, reply["config"], reply["config_version"])  # null: nothing newer
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


def apply_config(node, new_cfg, version):
    if version == node.cfg["version"]:
        return
    node.apply_reply_config(new_cfg, version)
