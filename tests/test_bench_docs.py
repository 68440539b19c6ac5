"""The docs quote the benchmarks' measured figures: every bench block equals benchmarks/results/ now."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import docs_figures  # noqa: E402


def test_docs_figures_are_the_results_files():
    assert docs_figures.main(["--check"]) == 0, "run: .venv/bin/python benchmarks/docs_figures.py"


def test_every_block_names_a_results_file_and_every_page_with_figures_has_a_block():
    blocks = {m.group("name") for page in docs_figures.DOCS for m in docs_figures.BLOCK.finditer(page.read_text())}
    assert {"bench_sampling", "bench_dataloader", "bench_default", "bench_cog_tiles"} <= blocks
    for name in blocks:
        assert (docs_figures.RESULTS / f"{name}.md").exists(), name


def test_a_block_is_replaced_by_the_results_page(tmp_path):
    (tmp_path / "bench_x.md").write_text("# bench_x: title\n\nsetup line\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
                                         "\nprose\n\n| c |\n|---|\n")
    page = "before\n<!-- bench: bench_x -->\nstale 0.5x\n<!-- /bench -->\nafter\n"
    full = docs_figures.render(page, tmp_path)
    assert "stale" not in full and "setup line" in full and "# bench_x" not in full and "| 1 | 2 |" in full
    assert full.startswith("before\n<!-- bench: bench_x -->\n*Generated") and full.endswith("<!-- /bench -->\nafter\n")
    tables = docs_figures.render(page.replace("bench_x -->", "bench_x tables -->"), tmp_path)
    assert "setup line" not in tables and "prose" not in tables
    assert "| a | b |\n|---|---|\n| 1 | 2 |\n\n| c |\n|---|\n" in tables
    assert docs_figures.render(full, tmp_path) == full  # idempotent
