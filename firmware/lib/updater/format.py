"""The update format on the node: constants, refusal reasons, the path rule (update-format.md)."""

from micropython import const

MAGIC = b"LLBUNDLE"
BUNDLE_FORMAT = const(1)
HEADER_SIZE = const(86)  # magic 8, format 2, manifest length 4, key id 8, signature 64
MIN_MANIFEST_SIZE = const(2)
MAX_MANIFEST_SIZE = const(16384)
MANIFEST_TAG = b"LLv1-manifest"
ROTATION_TAG = b"LLv1-rotation"
REVOCATION_TAG = b"LLv1-revocation"
# A clock before 2024-01-01 has not been set: expiry cannot be judged, so nothing is installed.
MIN_VALID_CLOCK = const(1704067200)

MAX_FILES = const(255)
MAX_PATH = const(96)
MAX_FILE_SIZE = const(16777216)
MAX_NAMES = const(8)  # board and hardware lists
MAX_NAME = const(32)  # a board or hardware name, a version
MAX_SEQUENCE = const(2147483647)
MAX_TIME = 4294967295
MAX_REVOKED = const(16)
RESERVED_PATH = "app_version.json"  # written by the installer, last
FIRMWARE_FILE = "firmware.bin"

REASONS = (
    # the verifier
    "malformed", "unknown_key", "revoked_key", "bad_signature", "expired", "clock_unset",
    "rollback", "wrong_board", "wrong_hardware", "file_too_long", "file_truncated",
    "bad_file_hash",
    # key statements
    "replayed", "out_of_order", "no_key_left",
    # the download
    "over_budget", "too_many_attempts", "not_announced",
)


class Refused(ValueError):
    """Something the node must not install or apply; `reason` is one of REASONS."""

    def __init__(self, reason, detail=""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _name_char(c, upper):
    return ("a" <= c <= "z" or "0" <= c <= "9" or c == "_" or c == "." or c == "-"
            or (upper and "A" <= c <= "Z"))


def is_part(text, limit, upper=True):
    """Whether `text` is one path part (or name): 1..limit characters of letters, digits,
    '_', '.', '-', not starting with '.' or '-'."""
    n = len(text)
    if n == 0 or n > limit or text[0] == "." or text[0] == "-":
        return False
    for c in text:
        if not _name_char(c, upper):
            return False
    return True


def check_path(path):
    """Raise Refused('malformed') unless `path` may be written inside an app slot.

    Relative, '/'-separated parts of [A-Za-z0-9_.-] not starting with '.' or '-', at most
    MAX_PATH characters, and not the installer's own app_version.json. Applied when the
    manifest is checked and again when each file is written.
    """
    if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH or path == RESERVED_PATH:
        raise Refused("malformed", "file path")
    start = 0
    while True:
        end = path.find("/", start)
        part = path[start:] if end < 0 else path[start:end]
        if not is_part(part, MAX_PATH):
            raise Refused("malformed", "file path " + path)
        if end < 0:
            return
        start = end + 1
