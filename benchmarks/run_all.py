"""Run every ``benchmarks/bench_*.py`` in turn (what ``make bench`` does).

Each benchmark is its own process (so GDAL caches and page mappings do not
leak between them), prints its table and writes ``benchmarks/results/``.
Then every target the benchmarks record is printed with met / not met, and
the docs' figures are regenerated from the results (``docs_figures.py``).
Exits non-zero when any benchmark fails (a target not met is reported, not
an error: the machine may be busy).

Example:
    .venv/bin/python benchmarks/run_all.py                   # every benchmark
    .venv/bin/python benchmarks/run_all.py sampling          # names containing "sampling"
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import docs_figures

HERE = Path(__file__).resolve().parent


def summary(names: list[str]) -> list[str]:
    """One line per target of the benchmarks ``names`` (their results JSON), with met / not met."""
    lines = []
    for name in names:
        path = HERE / "results" / f"{name}.json"
        if not path.exists():
            continue
        for target in json.loads(path.read_text()).get("targets", []):
            value = "n/a" if target["value"] is None else f"{target['value']:.2f}"
            met = {True: "met", False: "NOT MET", None: "n/a"}[target["met"]]
            goal = "no target" if target["goal"] is None else f"goal {target['op']} {target['goal']}"
            lines.append(f"  {met:<8} {name}: {target['target']} = {value} ({goal})")
    return lines


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
    print("== targets")
    print("\n".join(summary([script.stem for script in scripts if script.name not in failed])))
    docs_figures.main([])
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
