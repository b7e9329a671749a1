"""A next device key from a signed check-in reply, stored and switched to (loaded only then).

The key comes hidden: XOR HMAC-SHA256(current key, "rotate\\n<device id>\\n<version>"). It is
written into the identity file atomically (temp, rename) and signs every request from the
next one; the server keeps the current key until that request, so a power cut before or after
the write leaves the node able to talk.
"""

from binascii import hexlify, unhexlify

from core.files import read_json, write_json


def take(up, mac, key):
    """Store `key` ({"version", "key"}) for the Uplink `up`; `mac` signs with its current key."""
    path = up.root + "/identity.json"
    identity = read_json(path)
    version = key.get("version")
    if (identity is None or not isinstance(version, int)
            or version <= identity.get("key_version", 1)):
        return
    pad = mac.digest(b"rotate\n", up.device_id.encode(), b"\n", str(version).encode())
    hidden = unhexlify(key["key"])
    if len(hidden) != 32:
        return
    identity["secret"] = hexlify(bytes(hidden[i] ^ pad[i] for i in range(32))).decode()
    identity["key_version"] = version
    write_json(path, identity)
    up.secret = identity["secret"]
    if up.log:
        up.log.info("key_rotated", key_version=version)
