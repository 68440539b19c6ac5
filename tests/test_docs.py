"""The README's and docs' examples run exactly as written (each file's blocks in order, in a temp dir)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_examples_run_as_written(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NDPATCH_CACHE", str(tmp_path / "cache"))
    namespace = {"__name__": "__docs__"}
    for block in python_blocks(path):
        exec(compile(block, str(path), "exec"), namespace)


def test_every_feature_page_has_an_example():
    pages = {"README.md", "usage.md", "cache.md", "sampling.md", "torch.md", "geo.md", "video.md", "export.md"}
    assert pages <= {p.name for p in DOCS if python_blocks(p)}
