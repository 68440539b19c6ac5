"""Run every ``benchmarks/bench_*.py`` in turn (what ``make bench`` does).

Each benchmark is its own process (so GDAL caches and page mappings do not
leak between them), prints its table and writes ``benchmarks/results/``.
Exits non-zero when any benchmark fails.

Example:
    .venv/bin/python benchmarks/run_all.py                   # every benchmark
    .venv/bin/python benchmarks/run_all.py sampling          # names containing "sampling"
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not argv or any(a in p.stem for a in argv))
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.perf_counter()
        code = subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode
        print(f"== {script.name}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
