"""The node's release key set (/keys.json): read it, apply signed statements to it atomically."""

from updater.format import Refused
from updater.verify import check_statement, key_serial

KEYS_FILE = "/keys.json"
MAX_PER_CHECKIN = 8


def load(root=""):
    """The key set as provisioned and since rotated: {"keys", "revoked", "serial"}."""
    import bootsel  # at the flash root; apply() needs nothing but the verifier

    doc = bootsel.read_json(root + KEYS_FILE)
    return doc if isinstance(doc, dict) else {"keys": {}, "revoked": [], "serial": 0}


def trusted_and_revoked(keys):
    """({key id: 32-byte key}, [revoked key ids]) as the verifier takes them."""
    from binascii import unhexlify

    trusted = {}
    hexkeys = keys.get("keys", {})
    for kid in hexkeys:
        trusted[kid] = unhexlify(hexkeys[kid])
    return trusted, keys.get("revoked", [])


def apply(keys, envelope):
    """The key set after one signed statement (a new dict), or Refused; `keys` is unchanged."""
    kind, doc = check_statement(envelope, keys)
    new = {"keys": dict(keys.get("keys", {})), "revoked": list(keys.get("revoked", [])),
           "serial": doc["serial"]}
    if kind == "rotation":
        new["keys"][doc["new_key_id"]] = doc["new_public_key"]
        if doc["retire_old"] and doc["old_key_id"] not in new["revoked"]:
            new["revoked"].append(doc["old_key_id"])
    else:
        for kid in doc["revoked"]:
            if kid not in new["revoked"]:
                new["revoked"].append(kid)
    return new


def apply_statements(root, statements, log=None):
    """Apply a check-in reply's statements in order, each saved atomically before the next.

    Returns (serial, error): the key set's serial afterwards, and "" or the first refusal as
    "<reason>: <detail>" (the statements after a refused one are not applied).
    """
    import bootsel

    keys = load(root)
    if not isinstance(statements, list):
        return key_serial(keys), "malformed: key_statements is not a list"
    error = ""
    for envelope in statements[:MAX_PER_CHECKIN]:
        try:
            keys = apply(keys, envelope)
        except Refused as exc:
            error = (exc.reason + ": " + str(exc.detail))[:200]
            if log:
                log.warn("key_statement_refused", reason=exc.reason, detail=exc.detail)
            break
        bootsel.write_json(root + KEYS_FILE, keys)
        if log:
            log.info("key_statement_applied", serial=keys["serial"])
    return key_serial(keys), error
