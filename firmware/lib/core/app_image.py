"""The slot's compiled code packed into a ROMFS image, so imports run bytecode in place."""

# A module imported from a file is copied into the heap: its bytecode, constants and tables.
# Imported from a ROMFS image that is memory-mapped (flash on an ESP32), the bytecode and
# constants stay where they are and only the function objects take heap.
#
# The slot's files stay the truth (updates and rollbacks write and pick slots as before); the
# image is derived from them at boot:
# - an ESP32 whose firmware has a ROMFS partition keeps the running slot's image there. Its
#   stamp (a hash of the slot, its release and every file's name and size) says whether the
#   partition already holds this slot; if not it is rewritten, its first block last, so a
#   power cut mid-write leaves no valid image and the next boot writes it again;
# - the emulated board has no memory-mapped flash: the image is built into one buffer that
#   stands for the flash window (its bytes are reported apart from the app's heap);
# - without either, or for a slot with no .mpy files (a source checkout), nothing is mounted
#   and modules load from the files as before.

import os
import sys

import vfs
from micropython import const

_MOUNT = const("/app")
_SUBDIRS = const(("boards", "lib"))  # each put first on sys.path in turn: /app/lib ends up first
_STAMP = const("stamp")  # file in the image: the stamp of the slot it was packed from
_MAGIC = const(b"\xd2\xcd\x31")
_KIND_DATA = const(2)
_KIND_DIR = const(4)
_KIND_FILE = const(5)
_CHUNK = const(4096)  # flash writes, and how much of a file is read at a time
_DIR_BIT = const(0x4000)


def _ulen(value):
    """Bytes of value as a ROMFS variable-length unsigned integer."""
    n = 1
    while value > 0x7F:
        value >>= 7
        n += 1
    return n


def uint(value):
    out = bytearray(_ulen(value))
    i = len(out) - 1
    out[i] = value & 0x7F
    while i:
        value >>= 7
        i -= 1
        out[i] = 0x80 | (value & 0x7F)
    return out


def _record_len(payload_len):
    return 1 + _ulen(payload_len) + payload_len  # kinds used here fit one byte


def scan(path):
    """[(name, size, path) for a file | (name, children, path) for a directory], sorted, names
    as bytes; only .mpy files, and only directories that hold some."""
    entries = []
    for name in sorted(os.listdir(path)):
        full = path + "/" + name
        st = os.stat(full)
        if st[0] & _DIR_BIT:
            children = scan(full)
            if children:
                entries.append((name.encode(), children, full))
        elif name.endswith(".mpy"):
            entries.append((name.encode(), st[6], full))
    return entries


def payload_len(entry):
    """Length of the payload of the record for entry (a file's or a directory's)."""
    name, body = entry[0], entry[1]
    head = _ulen(len(name)) + len(name)
    if isinstance(body, int):
        return head + _record_len(body)
    total = head
    for child in body:
        total += _record_len(payload_len(child))
    return total


class _Writer:
    """Writes the image in order to a buffer (emulated board) or a ROMFS segment (flash);
    to flash in whole chunks, keeping the first chunk back until everything else is down."""

    def __init__(self, buffer=None, segment=None):
        self.buffer = buffer
        self.segment = segment
        self.pos = 0
        if segment is not None:
            self.chunk = bytearray(_CHUNK)
            self.first = bytearray(_CHUNK)

    def write(self, data):
        n = len(data)
        if self.buffer is not None:
            self.buffer[self.pos:self.pos + n] = data
            self.pos += n
            return
        view = memoryview(data)
        done = 0
        while done < n:
            at = self.pos % _CHUNK
            take = min(n - done, _CHUNK - at)
            self.chunk[at:at + take] = view[done:done + take]
            done += take
            self.pos += take
            if self.pos % _CHUNK == 0:
                self.flush(self.pos - _CHUNK)

    def flush(self, offset):
        if offset == 0:
            self.first[:] = self.chunk
        else:
            vfs.rom_ioctl(4, self.segment, offset, self.chunk)  # type: ignore[attr-defined]

    def copy_file(self, path, size):
        with open(path, "rb") as f:
            if self.buffer is not None:
                view = memoryview(self.buffer)
                got = f.readinto(view[self.pos:self.pos + size])
                if got != size:
                    raise OSError("short read: " + path)
                self.pos += size
                return
            left = size
            while left:
                data = f.read(min(left, _CHUNK - self.pos % _CHUNK))
                if not data:
                    raise OSError("short read: " + path)
                self.write(data)
                left -= len(data)

    def finish(self):
        if self.buffer is not None:
            return
        if self.pos % _CHUNK:
            at = self.pos % _CHUNK
            for i in range(at, _CHUNK):
                self.chunk[i] = 0
            self.flush(self.pos - at)
        # the magic goes down last
        vfs.rom_ioctl(4, self.segment, 0, self.first)  # type: ignore[attr-defined]
        vfs.rom_ioctl(5, self.segment)  # type: ignore[attr-defined]


def _emit(writer, entry):
    name, body, source = entry
    file = isinstance(body, int)
    writer.write(uint(_KIND_FILE if file else _KIND_DIR))
    writer.write(uint(payload_len(entry)))
    writer.write(uint(len(name)))
    writer.write(name)
    if not file:
        for child in body:
            _emit(writer, child)
        return
    writer.write(uint(_KIND_DATA))
    writer.write(uint(body))
    if isinstance(source, str):
        writer.copy_file(source, body)
    else:
        writer.write(source)  # bytes made here (the stamp), not a file


def layout(app_root):
    """(root entries, image size) of the slot at app_root, or (None, 0) with no .mpy files.

    The last entry is the stamp file: (name, size, the stamp's bytes)."""
    root = app_root.rstrip("/") or "."
    entries = []
    for sub in _SUBDIRS:
        try:
            children = scan(root + "/" + sub)
        except OSError:
            continue
        if children:
            entries.append((sub.encode(), children, root + "/" + sub))
    if not entries:
        return None, 0
    stamp = stamp_of(app_root, entries)
    entries.append((_STAMP.encode(), len(stamp), stamp))
    body = _body_len(entries)
    head = len(_MAGIC) + _ulen(body)
    if (head + body) % 2:
        head += 1  # a redundant 0x80 before the length keeps the image an even size
    return entries, head + body


def _body_len(entries):
    total = 0
    for entry in entries:
        total += _record_len(payload_len(entry))
    return total


def stamp_of(app_root, entries):
    """32 bytes naming this slot's contents: its path, release and every file's size."""
    import hashlib

    h = hashlib.sha256(app_root.encode())
    try:
        with open(app_root.rstrip("/") + "/app_version.json", "rb") as f:
            h.update(f.read())
    except OSError:
        pass

    def walk(items):
        for name, body, _ in items:
            h.update(name)
            if isinstance(body, int):
                h.update(str(body).encode())
            else:
                walk(body)

    walk(entries)
    return h.digest()


def write_image(writer, entries):
    """Write the image of entries (from layout()) through writer."""
    body = _body_len(entries)
    writer.write(_MAGIC)
    length = uint(body)
    if (len(_MAGIC) + len(length) + body) % 2:
        writer.write(b"\x80")
    writer.write(length)
    for entry in entries:
        _emit(writer, entry)
    writer.finish()


def _mount(device):
    vfs.mount(vfs.VfsRom(device), _MOUNT)  # type: ignore[attr-defined]
    for sub in _SUBDIRS:
        path = _MOUNT + "/" + sub
        if path not in sys.path:
            sys.path.insert(0, path)
    # A package imported from the slot's files before the mount (`core`, whose node_main
    # mounts the image) finds its submodules through its own __path__, on the files: forget
    # it and the submodules it loaded, so that the next import takes them from the image
    # (the caller keeps no reference to them).
    for name in [n for n in sys.modules if "." not in n]:
        path = getattr(sys.modules[name], "__path__", None)
        if path and not path.startswith(_MOUNT) and path.endswith("/" + name):
            for sub in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
                del sys.modules[sub]


def _segment_holds(device, stamp):
    """True when a ROMFS segment already holds a valid image with this stamp."""
    try:
        fs = vfs.VfsRom(device)  # type: ignore[attr-defined]
    except OSError:
        return False  # no valid image (erased, or a write cut short)
    vfs.mount(fs, _MOUNT)
    try:
        with open(_MOUNT + "/" + _STAMP, "rb") as f:
            return f.read() == stamp
    except OSError:
        return False
    finally:
        vfs.umount(_MOUNT)


def _prepare(segment, size):
    """Erase what the image will take of a ROMFS segment (in pieces where the port erases
    blocks); raise OSError if the port cannot write in our chunks."""
    block = vfs.rom_ioctl(6, segment)  # type: ignore[attr-defined]
    if 0 < block < len(vfs.rom_ioctl(2, segment)):  # type: ignore[attr-defined]
        offset = 0
        while offset < size:
            piece = (min(size - offset, 32768) + block - 1) // block * block
            least = vfs.rom_ioctl(3, segment, offset, piece)  # type: ignore[attr-defined]
            offset += piece
    else:
        least = vfs.rom_ioctl(3, segment, size)  # type: ignore[attr-defined]
    if least > _CHUNK or _CHUNK % max(least, 1):
        raise OSError("ROMFS writes need %d-byte pieces" % least)


def mount(app_root):
    """Mount the slot's code image at /app and put its directories first on sys.path.

    Returns (where, size, heap): where is "flash", "ram" or None (nothing mounted: no .mpy
    files, a firmware without ROMFS, or a flash partition too small), size the image's bytes
    and heap the bytes of heap its buffer takes (0 on flash).
    """
    if not hasattr(vfs, "VfsRom"):  # a firmware built without ROMFS (ESP32_GENERIC's is)
        return None, 0, 0
    entries, size = layout(app_root)
    if entries is None:
        return None, 0, 0
    # vfs.rom_ioctl and vfs.VfsRom: MicroPython v1.25 and later, in a firmware built with
    # ROMFS only (ESP32_GENERIC's is not); used only after these probes, hence the
    # `type: ignore[attr-defined]` on their lines in this module
    if hasattr(vfs, "rom_ioctl") and vfs.rom_ioctl(1) > 0:  # type: ignore[attr-defined]
        # MicroPython mounts the first ROMFS segment at /rom by itself; the image is ours
        try:
            vfs.umount("/rom")
        except OSError:
            pass
        for path in ("/rom", "/rom/lib"):
            while path in sys.path:
                sys.path.remove(path)
        device = vfs.rom_ioctl(2, 0)  # type: ignore[attr-defined]
        if len(device) < (size + _CHUNK - 1) // _CHUNK * _CHUNK:
            return None, size, 0
        if not _segment_holds(device, entries[-1][2]):
            _prepare(0, size)
            write_image(_Writer(segment=0), entries)
        _mount(device)
        return "flash", size, 0
    import gc

    gc.collect()
    before = gc.mem_alloc()
    buffer = bytearray(size)
    heap = gc.mem_alloc() - before
    write_image(_Writer(buffer=buffer), entries)
    _mount(buffer)
    return "ram", size, heap
