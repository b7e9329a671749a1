"""Where the node's firmware lives in the source tree, and which files are its stable root."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
FIRMWARE_LIB = FIRMWARE_DIR / "lib"

# Files at the node's flash root that boot it and pick its A/B slot; installed once (at
# provisioning or in a factory image) and never replaced by an update.
STABLE_ROOT_FILES = ("boot.py", "main.py", "bootsel.py")

# Where a provisioned node keeps its app: slot a, holding these folders of the build.
APP_SLOT = "slots/a"
APP_DIRS = ("lib", "boards")
