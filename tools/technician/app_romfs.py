"""The app's code image for a firmware's ROMFS partition, packed as the node packs it."""

# firmware/lib/core/app_image.py packs the running slot's .mpy files into a ROMFS image at
# boot and keeps it in the firmware's `romfs` partition; it rewrites the partition only when
# the stamp file inside the image differs from the slot's. A factory image that carries the
# same image, with the same stamp, gives a node whose code runs from flash from its first
# boot, and the node leaves it as it is. The stamp is SHA-256 over the slot's path as the
# node names it, its app_version.json and every .mpy file's name and size (directories and
# files sorted by name, only directories that hold .mpy files, boards/ then lib/).

from __future__ import annotations

import hashlib

from tools.firmware_tree import APP_DIRS, APP_SLOT

# An ESP32 node's flash root is "" (firmware/boot.py), and bootsel.slot_dir("a", "") is
# "/slots/a": the path the node hashes into the stamp.
NODE_APP_ROOT = "/" + APP_SLOT
IMAGE_DIRS = ("boards", "lib")  # app_image._SUBDIRS: the order the image lists them
STAMP_FILE = "stamp"
ROMFS_MAGIC = b"\xd2\xcd\x31"  # a ROMFS image's first bytes (extmod/vfs_rom.c)

Tree = dict[str, "Tree | bytes"]


def code_tree(app: dict[str, bytes]) -> Tree:
    """The slot's .mpy files as nested dicts ({dir: {...}, file: bytes}), boards/ and lib/
    only, directories without .mpy files left out; {} for a slot of sources."""
    assert set(IMAGE_DIRS) == set(APP_DIRS)
    tree: Tree = {}
    prefix = APP_SLOT + "/"
    for path, data in app.items():
        if not (path.startswith(prefix) and path.endswith(".mpy")):
            continue
        parts = path[len(prefix):].split("/")
        if parts[0] not in IMAGE_DIRS or len(parts) < 2:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[parts[-1]] = data
    return tree


def stamp(app: dict[str, bytes], app_root: str | None = None) -> bytes:
    """The stamp the node computes for this slot (app_image.stamp_of), the slot being at
    `app_root` on the node (default NODE_APP_ROOT)."""
    h = hashlib.sha256((app_root or NODE_APP_ROOT).encode())
    h.update(app.get(f"{APP_SLOT}/app_version.json", b""))

    def walk(node: Tree) -> None:
        for name in sorted(node):
            body = node[name]
            h.update(name.encode())
            if isinstance(body, bytes):
                h.update(str(len(body)).encode())
            else:
                walk(body)

    tree = code_tree(app)
    for sub in IMAGE_DIRS:
        if sub in tree:
            h.update(sub.encode())
            walk(tree[sub])  # type: ignore[arg-type]
    return h.digest()


def code_image(app: dict[str, bytes], app_root: str | None = None) -> bytes | None:
    """The ROMFS image the node would pack for this slot, stamp included (None: the slot has
    no .mpy files, so the node mounts nothing and runs from its files)."""
    from mpremote.romfs import VfsRomWriter

    tree = code_tree(app)
    if not tree:
        return None
    writer = VfsRomWriter()

    def add(node: Tree) -> None:
        for name in sorted(node):
            body = node[name]
            if isinstance(body, bytes):
                writer.mkfile(name, body)
            else:
                writer.opendir(name)
                add(body)
                writer.closedir()

    for sub in IMAGE_DIRS:
        if sub in tree:
            writer.opendir(sub)
            add(tree[sub])  # type: ignore[arg-type]
            writer.closedir()
    writer.mkfile(STAMP_FILE, stamp(app, app_root))
    return bytes(writer.finalise())


def holds_code_image(region: bytes) -> bool:
    """True when a partition's bytes start with a ROMFS image."""
    return region[:len(ROMFS_MAGIC)] == ROMFS_MAGIC
