"""Put the figures of benchmarks/results/ into the docs, so the docs quote what was measured.

A docs page marks where a benchmark's figures go::

    <!-- bench: bench_sampling tables -->
    (generated: replaced on every run)
    <!-- /bench -->

Between the markers this script writes ``benchmarks/results/<name>.md``
without its title (or, with ``tables``, only its tables). ``make bench`` runs
it after the benchmarks; ``tests/test_bench_docs.py`` checks that the docs
match the results files, so a figure in the docs is never older than them.

Example:
    .venv/bin/python benchmarks/docs_figures.py            # rewrite the docs from the results
    .venv/bin/python benchmarks/docs_figures.py --check    # exit 1 when a page is out of date
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"(<!-- bench: (?P<name>\w+)(?P<tables> tables)? -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)


def figures(name: str, tables_only: bool, results: Path = RESULTS) -> str:
    """The body of a block: the results page of benchmark ``name`` (its title dropped)."""
    lines = (results / f"{name}.md").read_text().splitlines()
    lines = [line for line in lines if not line.startswith("# ")]
    if tables_only:
        kept, in_table = [], False
        for line in lines:
            if line.startswith("|"):
                if kept and not in_table:
                    kept.append("")  # tables apart in the results stay apart
                kept.append(line)
            in_table = line.startswith("|")
        lines = kept
    text = "\n".join(lines).strip("\n")
    return f"*Generated from `benchmarks/results/{name}.md` by `benchmarks/docs_figures.py`.*\n\n{text}\n"


def render(text: str, results: Path = RESULTS) -> str:
    """``text`` with every bench block's body replaced by the current figures."""
    return BLOCK.sub(lambda m: m.group(1) + figures(m.group("name"), bool(m.group("tables")), results)
                     + m.group(5), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="report pages out of date instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for page in DOCS:
        text = page.read_text()
        new = render(text)
        if new != text:
            stale.append(page)
            if not args.check:
                page.write_text(new)
    for page in stale:
        print(f"{'out of date' if args.check else 'updated'}: {page.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
