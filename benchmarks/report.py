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
