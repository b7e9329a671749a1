"""Run the benchmarks (`python -m bench [name …]`) and print every figure against its baseline."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

from bench.report import print_figures

SKIP = {"report", "__main__"}  # and every _private helper


def available() -> list[str]:
    """Names of the benchmark modules in this package (each exposes `run() -> list[Figure]`)."""
    import bench

    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                  if m.name not in SKIP and not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(available())}")
        return 2
    missed = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        started = time.monotonic()
        figures = module.run()
        headline = (module.__doc__ or name).strip().splitlines()[0]
        title = f"{name}: {headline} ({time.monotonic() - started:.0f} s)"
        print_figures(title, figures)
        missed += sum(1 for f in figures if f.met is False)
    print(f"{missed} target(s) missed" if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
