"""Where every benchmark's results go: ``benchmarks/results/<name>.md`` and ``.json``.

Written through ndpatch's atomic publish, like every file ndpatch writes.

Example (from a benchmark script)::

    from report import save_results
    save_results("bench_example", "# bench_example\n\n| a | b |", {"ratio": 1.0})
"""
from __future__ import annotations

from pathlib import Path

from ndpatch.cache.store import atomic_publish, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def save_results(name: str, markdown: str, data: dict, out: Path = RESULTS) -> None:
    """Publish ``out/<name>.md`` (the printed table) and ``out/<name>.json`` (the numbers)."""
    atomic_publish(out / f"{name}.md", lambda tmp: Path(tmp).write_text(markdown.rstrip("\n") + "\n"))
    write_json(out / f"{name}.json", data)
