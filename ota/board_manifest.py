"""Board manifests: which files of the app tree an app slot of a given board holds.

An app tree (`firmware/`) may hold `boards/<board>.manifest`, one per board. A manifest is
plain text, read line by line:

    # a comment (a line whose first non-blank character is #); blank lines are ignored
    lib/core/**              a glob pattern, relative to the app tree, with "/" between parts
    !lib/drivers/esp32_ota.py   a "!" pattern removes files that earlier lines added

A pattern is matched part by part against the tree's files: `*`, `?` and `[...]` match within
one part (fnmatch, case-sensitive) and a part `**` matches any number of parts, none included.
Lines apply in order. A pattern that matches nothing (an exclusion too), one that leaves the
tree (absolute, `..`) or that reaches a file outside it through a symlink is refused, as is an
unknown board: every problem is a `BuildError` naming the manifest and line.

`board_files(app_dir, boards)` is the sorted union of the boards' files. Hidden files,
`__pycache__`, compiled files beside their source and the manifests themselves are never
candidates. The stable root files (boot.py, main.py, bootsel.py) are installed once at
provisioning, never from a slot, and service/ holds scripts the technician's tools send over
the REPL, so the manifests list neither.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from ota.errors import BuildError

BOARDS_DIR = "boards"
MANIFEST_SUFFIX = ".manifest"


def app_sources(app_dir: Path) -> list[Path]:
    """Files of the app, relative to app_dir, in a stable order (no caches or hidden files)."""
    found = []
    for path in sorted(Path(app_dir).rglob("*")):
        rel = path.relative_to(app_dir)
        if not path.is_file() or any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            continue
        if path.suffix in (".pyc", ".mpy") and path.with_suffix(".py").exists():
            continue
        found.append(rel)
    return found


def manifest_path(app_dir: Path, board: str) -> Path:
    return Path(app_dir) / BOARDS_DIR / f"{board}{MANIFEST_SUFFIX}"


def known_boards(app_dir: Path) -> list[str]:
    """The boards that have a manifest in app_dir/boards/, sorted."""
    folder = Path(app_dir) / BOARDS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name[:-len(MANIFEST_SUFFIX)] for p in folder.glob(f"*{MANIFEST_SUFFIX}")
                  if p.is_file())


def has_manifests(app_dir: Path) -> bool:
    """True when the app tree picks its files per board (a boards/ folder with manifests)."""
    return bool(known_boards(app_dir))


def _is_manifest(rel: PurePosixPath) -> bool:
    return len(rel.parts) == 2 and rel.parts[0] == BOARDS_DIR and rel.suffix == MANIFEST_SUFFIX


def _match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], head) and _match(rest, parts[1:])


def read_manifest(app_dir: Path, board: str) -> list[tuple[int, bool, str]]:
    """(line number, exclude, pattern) of every rule in the board's manifest."""
    path = manifest_path(app_dir, board)
    if not path.is_file():
        known = known_boards(app_dir)
        raise BuildError(f"unknown board {board!r}: {Path(app_dir) / BOARDS_DIR} has manifests "
                         f"for {', '.join(known) if known else 'no board'}")
    rules = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = line.startswith("!")
        pattern = line[1:].strip() if exclude else line
        where = f"{path.name} line {number}"
        parts = pattern.split("/")
        if not pattern or pattern.startswith("/") or "\\" in pattern or \
                any(p in ("", ".", "..") for p in parts):
            raise BuildError(f"{where}: {line!r} is not a pattern under the app tree "
                             "(relative, '/' between parts, no '.', '..' or empty part)")
        rules.append((number, exclude, pattern))
    if not any(not exclude for _, exclude, _ in rules):
        raise BuildError(f"{path.name}: the manifest adds no file")
    return rules


def board_files(app_dir: Path, boards: list[str] | tuple[str, ...]) -> list[str]:
    """The files (relative, '/'-separated, sorted) an app slot of any of `boards` holds."""
    app_dir = Path(app_dir)
    if not app_dir.is_dir():
        raise BuildError(f"app directory {app_dir} does not exist")
    if not boards:
        raise BuildError("name at least one board")
    root = app_dir.resolve()
    candidates = [PurePosixPath(rel.as_posix()) for rel in app_sources(app_dir)]
    candidates = [rel for rel in candidates if not _is_manifest(rel)]
    chosen: set[str] = set()
    for board in dict.fromkeys(boards):
        picked: set[str] = set()
        for number, exclude, pattern in read_manifest(app_dir, board):
            parts = tuple(pattern.split("/"))
            hits = {rel.as_posix() for rel in candidates if _match(parts, rel.parts)}
            if exclude:
                hits &= picked
            if not hits:
                raise BuildError(
                    f"{board}{MANIFEST_SUFFIX} line {number}: {'!' if exclude else ''}{pattern} "
                    f"{'removes' if exclude else 'matches'} no file of {app_dir}")
            if exclude:
                picked -= hits
            else:
                picked |= hits
        for name in picked:
            if not (app_dir / name).resolve().is_relative_to(root):
                raise BuildError(f"{board}{MANIFEST_SUFFIX}: {name} is a link to a file outside "
                                 f"{app_dir}")
        chosen |= picked
    return sorted(chosen, key=lambda name: name.split("/"))
