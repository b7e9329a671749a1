"""Type-check the node's code against the ESP32 port's API: mypy over firmware/mypy.ini.

The pinned stub packages (pyproject.toml's dev extras) are laid out for pyright, which looks
in its typeshed before site-packages: micropython-stdlib-stubs puts a reduced, MicroPython
typeshed (builtins, sys, os, io, json, ssl, struct, ...) under site-packages/stdlib, and
micropython-esp32-stubs puts the port's modules (machine, network, esp32, time, socket,
select, gc, vfs, ...) at the top of site-packages. mypy reads neither from there (it takes
only packaged, py.typed stubs from site-packages, and refuses site-packages on its path), so
this joins the two into one typeshed (.venv/esp32-typeshed) and points mypy's
--custom-typeshed-dir at it: those stubs are then the only source of every module's types,
and CPython's typeshed (bundled with mypy) is never read. A module the ESP32 port lacks (say
datetime) is then "not found", not CPython's.

    .venv/bin/python tests/firmware/esp32_typecheck.py [mypy options]   # what `make lint` runs

(Host tooling for the lint, kept beside the firmware's tests rather than in the installed
`tools` package.)
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib.metadata import distribution
from pathlib import Path

PORT_STUBS = "micropython-esp32-stubs"
STDLIB_STUBS = "micropython-stdlib-stubs"
CONFIG = Path(__file__).resolve().parents[2] / "firmware" / "mypy.ini"


def _stub_files(dist_name: str) -> dict[str, Path]:
    """The package's stubs (with typeshed's VERSIONS): path in site-packages -> location."""
    dist = distribution(dist_name)
    return {str(f): Path(str(dist.locate_file(f))) for f in dist.files or ()
            if str(f).endswith(".pyi") or str(f) == "stdlib/VERSIONS"}


def build_typeshed(dest: Path) -> Path:
    """(Re)build the joined typeshed at dest unless it matches the installed stub versions."""
    stamp = " ".join(f"{d}=={distribution(d).version}" for d in (PORT_STUBS, STDLIB_STUBS))
    if (dest / "STAMP").is_file() and (dest / "STAMP").read_text() == stamp:
        return dest
    work = dest.with_name(f"{dest.name}.{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    port_modules = set()
    # the port's files last: where both packages have a module (ssl), the port's own stub,
    # made from what its firmware freezes, replaces the typeshed-derived one
    for rel, src in [*_stub_files(STDLIB_STUBS).items(), *_stub_files(PORT_STUBS).items()]:
        if rel.startswith(("stdlib/", "stubs/")):
            target = work / rel
        else:  # _mpy_shed (the stubs' shared helpers) and the port's own modules
            target = work / "stdlib" / rel
            port_modules.add(rel.split("/")[0].removesuffix(".pyi"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    versions = work / "stdlib" / "VERSIONS"
    if not versions.is_file():
        raise SystemExit(f"{STDLIB_STUBS} has no stdlib/VERSIONS: not a typeshed layout")
    # __builtins__.pyi is pyright's hook for MicroPython's extra builtins (const, ...): the
    # firmware imports const from micropython instead, and mypy has no such hook
    (work / "stdlib" / "__builtins__.pyi").unlink(missing_ok=True)
    port_modules.discard("__builtins__")
    listed = {line.split(":")[0].strip() for line in versions.read_text().splitlines()}
    with versions.open("a") as f:
        f.write("".join(f"{m}: 3.0-\n" for m in sorted(port_modules - listed)))
    (work / "STAMP").write_text(stamp)
    shutil.rmtree(dest, ignore_errors=True)
    try:
        work.rename(dest)
    except OSError:  # another lint run put its (same) copy there first
        shutil.rmtree(work, ignore_errors=True)
    return dest


def main(argv: list[str]) -> int:
    from mypy import api

    typeshed = build_typeshed(Path(sys.prefix) / "esp32-typeshed")
    out, err, status = api.run(["--config-file", str(CONFIG), "--custom-typeshed-dir",
                                str(typeshed), "--cache-dir", str(typeshed / "cache"), *argv])
    sys.stdout.write(out)
    sys.stderr.write(err)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
