"""Assemble the node at boot (enrollment, uplink, update client); unloaded once it runs."""

from micropython import const
from core import ondemand
from core.files import read_json

# {"device_id", "secret" (hex), "server" (URL)}, provisioned
_IDENTITY_FILE = const("identity.json")
# updater.client.STATE_FILE, read here without importing it
_UPDATE_STATE = const("/update/state.json")


def make_uplink(board, log):
    """The signed HTTP link to the fleet server when the node has an identity; otherwise the
    board's own stand-in (an emulated board reports to its world) or nothing.

    A factory-imaged node first redeems its one-time enrollment code for an identity; when
    the server cannot be reached it tries again at the next boot.
    """
    root = board.flash_dir.rstrip("/")
    if read_json(root + "/enrollment.json") is not None:
        # first boot only: neither enroll nor its HTTP client stays loaded
        log.info("enroll", result=ondemand.call("net.enroll", "redeem", root, None, log))
    identity = read_json(root + "/" + _IDENTITY_FILE)
    if identity is None:
        make = getattr(board, "world_uplink", None)
        return make() if make is not None else None
    from net.uplink import Uplink

    return Uplink(identity, board.epoch_s, log)


def make_updater(board, uplink, log):
    """The A/B update client, for a node that has app slots and talks to a real server."""
    if uplink is None or not hasattr(uplink, "device_id"):
        return None
    root = board.flash_dir.rstrip("/")
    # bootsel (at the flash root) stays loaded only if the update client loads now
    pointer = ondemand.call("bootsel", "load_pointer", root)
    if pointer is None:
        return None
    from core.node import LazyUpdater

    state = read_json(root + _UPDATE_STATE)
    return LazyUpdater(board, uplink, root, log,
                       load_now=state is not None and state.get("phase") != "idle")


def build(board, log, version):
    """The node, wired to its uplink and update client, ready to run."""
    from core.node import FW_VERSION, Node

    uplink = make_uplink(board, log)
    return Node(board, uplink=uplink, log=log, updater=make_updater(board, uplink, log),
                measure_raw=getattr(board, "measure_raw", False),
                fw_version=version.get("version", FW_VERSION))
