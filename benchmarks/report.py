"""Where every benchmark's results go: ``benchmarks/results/<name>.md`` and ``.json``.

Written through ndpatch's atomic publish, like every file ndpatch writes.

Example (from a benchmark script)::

    from report import save_results
    save_results("bench_example", "# bench_example\n\n| a | b |", {"ratio": 1.0})
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ndpatch.cache.store import atomic_publish, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def save_results(name: str, markdown: str, data: dict, out: Path = RESULTS) -> None:
    """Publish ``out/<name>.md`` (the printed table) and ``out/<name>.json`` (the numbers)."""
    atomic_publish(out / f"{name}.md", lambda tmp: Path(tmp).write_text(markdown.rstrip("\n") + "\n"))
    write_json(out / f"{name}.json", data)


def median_row(values: list[float]) -> dict:
    """``{"median", "min", "max", "runs"}`` of repeated measurements (every figure the benchmarks report).

    >>> median_row([3.0, 1.0, 2.0])
    {'median': 2.0, 'min': 1.0, 'max': 3.0, 'runs': [3.0, 1.0, 2.0]}
    """
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values)),
            "runs": [float(v) for v in values]}


def spread(row: dict, digits: int = 0) -> str:
    """A :func:`median_row` as ``median (min–max)``.

    >>> spread(median_row([3.0, 1.0, 2.0]))
    '2 (1–3)'
    """
    return f"{row['median']:.{digits}f} ({row['min']:.{digits}f}–{row['max']:.{digits}f})"


def interleaved(runs: dict, repeats: int) -> dict[str, dict]:
    """``{name: median_row}`` of ``repeats`` rounds, each calling every ``runs[name]()`` once, in turn.

    Interleaving spreads a noisy neighbour's load over every configuration
    instead of penalising whichever ran while it was busy.

    >>> rows = interleaved({"a": lambda: 1.0, "b": lambda: 2.0}, repeats=3)
    >>> rows["b"]["median"], rows["a"]["runs"]
    (2.0, [1.0, 1.0, 1.0])
    """
    values: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            values[name].append(run())
    return {name: median_row(v) for name, v in values.items()}


def target_row(target: str, value: float | None, goal: float | None, op: str = ">=") -> dict:
    """One target as every benchmark records it (``make bench`` prints them all with met / not met).

    ``goal=None`` records a figure the issue lists without a target (``met`` is None).

    >>> target_row("x >= 2", 2.5, 2.0)["met"], target_row("y <= 1", 1.5, 1.0, "<=")["met"]
    (True, False)
    """
    met = None if value is None or goal is None else bool(value >= goal if op == ">=" else value <= goal)
    return {"target": target, "value": value, "goal": goal, "op": op, "met": met}


def target_table(targets: list[dict]) -> list[str]:
    """The markdown lines of a benchmark's :func:`target_row` results.

    >>> print("\\n".join(target_table([target_row("x", 2.5, 2.0), target_row("y", 0.5, None)])))
    | target | value | goal | met |
    |---|---:|---:|---|
    | x | 2.50 | >= 2.0 | met |
    | y | 0.50 | — | n/a |
    """
    lines = ["| target | value | goal | met |", "|---|---:|---:|---|"]
    for t in targets:
        value = "n/a" if t["value"] is None else f"{t['value']:.2f}"
        goal = "—" if t["goal"] is None else f"{t['op']} {t['goal']}"
        met = {True: "met", False: "NOT MET", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {value} | {goal} | {met} |")
    return lines
