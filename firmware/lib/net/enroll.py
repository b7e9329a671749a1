"""First boot of a factory-imaged node: trade the one-time enrollment code for its identity.

The factory image carries /enrollment.json {"code", "server", "pole_id"} instead of a secret.
redeem() posts the code to the fleet server, writes /identity.json atomically (temp file,
then rename) and only then removes the enrollment file, so a power cut at any point leaves
either the code (retried next boot) or the identity. A code the server refuses for good
(unknown, used, expired) is kept and reported, never retried in a loop by this module. A reply
not signed with the code for this request (an impostor, an altered reply) is refused and the
code kept: a lost or refused reply is redeemed again, and the server's grace period gives
the node a fresh identity then.
"""

import hashlib
import json
import os
from binascii import hexlify

from core.files import read_json, write_json
from crypto.hmac_sha256 import HmacSha256
from net.http_client import HttpClient, HttpError

ENROLL_PATH = "/device/v1/enroll"
ENROLLMENT_FILE = "/enrollment.json"
IDENTITY_FILE = "/identity.json"
# server answers that mean the code will never work: do not retry
REFUSED = {403: "device retired", 404: "unknown code", 409: "code already used",
           410: "code expired", 422: "bad code"}  # 429 (too many attempts): retried later


def pending(root=""):
    """The enrollment document when this node still has to enroll, else None."""
    if read_json(root + IDENTITY_FILE) is not None:
        return None
    return read_json(root + ENROLLMENT_FILE)


def redeem(root="", http=None, log=None):
    """Enroll if needed. Returns "enrolled", "already", "retry" (network) or "refused"."""
    doc = pending(root)
    if doc is None:
        return "already"
    http = http or HttpClient(doc["server"], insecure_http=doc.get("insecure_http", False),
                              root=root)
    code = doc["code"]
    body = json.dumps({"code": code}).encode()
    nonce = hexlify(os.urandom(12)).decode()
    try:
        resp = http.request("POST", ENROLL_PATH, body=body,
                            headers={"Content-Type": "application/json", "X-Nonce": nonce})
    except (HttpError, OSError) as e:
        if log:
            log.warn("enroll_retry", error=repr(e))
        return "retry"
    # the reply must be signed with the code, for this request: else it is not the server's
    from net.uplink_exchange import reply_signed  # interned by the check-ins that follow

    if not reply_signed(HmacSha256(code.encode()), nonce, resp.status, resp.headers,
                        hexlify(hashlib.sha256(resp.body).digest())):
        if log:
            log.error("reply_refused", path=ENROLL_PATH, status=resp.status, why="enrollment")
        return "retry"
    if resp.status != 200 and resp.status != 201:
        if log:
            log.error("enroll_refused", status=resp.status,
                      reason=REFUSED.get(resp.status, "server error"))
        return "refused" if resp.status in REFUSED else "retry"
    creds = json.loads(resp.body)
    identity = {"device_id": creds["device_id"], "secret": creds["secret"],
                "key_version": creds.get("key_version", 1), "server": doc["server"],
                "pole_id": creds.get("pole_id", doc.get("pole_id"))}
    if doc.get("insecure_http"):
        identity["insecure_http"] = True  # the factory image's choice, kept for every exchange
    write_json(root + IDENTITY_FILE, identity)
    os.remove(root + ENROLLMENT_FILE)
    if log:
        log.info("enrolled", device=identity["device_id"])
    return "enrolled"
