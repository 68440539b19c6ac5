"""The README's and docs' examples run as written: each page's blocks, in order, as one script.

Each page becomes a file run by a fresh ``python`` in a temp dir with its own
``NDPATCH_CACHE``, exactly as a reader who saves the examples and runs them
would: imports must be real, and work that starts worker processes must sit
under ``if __name__ == "__main__":``.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Terms docs/glossary.md must define (the issue that asked for it named these).
GLOSSARY_TERMS = ["gid", "aid", "vidid", "target", "sample", "window", "space_slice", "pad", "tf_rel_to_abs",
                  "coverage epoch", "positive", "negative", "backend", "cache entry", "sidecar", "bundle"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def page_script(path: Path) -> str:
    """The page's python blocks, in order, each headed by a comment naming it (for tracebacks)."""
    return "\n".join(f"# --- {path.name}, example {i}\n{block}" for i, block in enumerate(python_blocks(path), 1))


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_examples_run_as_a_script(path, tmp_path):
    script = tmp_path / f"{path.stem}_examples.py"
    script.write_text(page_script(path))
    env = {**os.environ, "NDPATCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, script.name], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{path.name}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


def test_every_feature_page_has_an_example():
    pages = {"README.md", "usage.md", "cache.md", "sampling.md", "torch.md", "geo.md", "video.md", "export.md",
             "cli.md"}
    assert pages <= {p.name for p in DOCS if python_blocks(p)}


def test_glossary_defines_the_terms_and_every_page_links_it():
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    defined = {term.strip("*` ").lower() for row in re.findall(r"^\| (.+?) \|", glossary, flags=re.M)
               for term in row.split(",")}
    assert set(GLOSSARY_TERMS) <= defined, set(GLOSSARY_TERMS) - defined
    for page in DOCS:
        if page.name not in ("glossary.md", "architecture.md"):
            link = "docs/glossary.md" if page.name == "README.md" else "glossary.md"
            assert f"]({link}" in page.read_text(), page.name
