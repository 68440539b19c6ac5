"""The package's import graph: no cycles, layers on top imported by nothing below, small modules.

Every ``import`` statement of every module counts, at module level and inside
functions, so "imported lazily to dodge a cycle" is still a cycle here.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ndpatch"
#: Integration layers: they may import anything; nothing in the core imports them.
TOP = ("ndpatch", "ndpatch.__main__", "ndpatch.cli", "ndpatch.torch", "ndpatch.lightning", "ndpatch.export",
       "ndpatch.ndsampler", "ndpatch.pairs", "ndpatch.warmup", "ndpatch.showcase", "ndpatch.preview",
       "ndpatch.stats", "ndpatch.testing",
       "ndpatch.regions")   # ndpatch.regions: the old import path of ndpatch.sampling's names


def module_name(path: Path) -> str:
    parts = ("ndpatch",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imported_modules(name: str) -> set[str]:
    """The ndpatch modules that module ``name`` imports anywhere in its code."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package(name) else name.split(".")[:-1]
                base = ".".join(anchor[:len(anchor) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:   # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def in_top(name: str) -> bool:
    return any(name == top or (top != "ndpatch" and name.startswith(top + ".")) for top in TOP)


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_there_is_no_import_cycle():
    state, stack, cycles = {}, [], []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for nxt in sorted(GRAPH[name]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[name] = "done"

    for name in sorted(MODULES):
        if name not in state:
            visit(name)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_core_never_imports_the_layers_on_top():
    wrong = sorted((name, target) for name, targets in GRAPH.items() if not in_top(name)
                   for target in targets if in_top(target))
    assert wrong == []


@pytest.mark.parametrize("low,high", [
    ("ndpatch.geo", "ndpatch.index"),               # index uses geo, never the reverse
    ("ndpatch.index", "ndpatch.record"),            # the index parses; records resolve through a backend
    ("ndpatch.record", "ndpatch.sampler"),
    ("ndpatch.sampling.geometry", "ndpatch.sampling.regions"),
    ("ndpatch.sampling.video", "ndpatch.video.samples"),   # sampling makes targets; it never reads frames
    ("ndpatch.sampling.regions", "ndpatch.sampler"),
    ("ndpatch.video.samples", "ndpatch.sampler"),
])
def test_layers(low, high):
    assert high not in reachable(low)


def test_the_graph_sees_function_level_imports():
    assert "ndpatch.sampling.video" in GRAPH["ndpatch.sampling.regions"]   # imported inside new_sample_grid
    assert "ndpatch.cache.store" in GRAPH["ndpatch.geo"]                   # imported inside write_geotiff


@pytest.mark.parametrize("package", ["sampling", "video"])
def test_sampling_and_video_modules_are_short(package):
    sizes = {name: len(MODULES[name].read_text().splitlines()) for name in MODULES
             if name.startswith(f"ndpatch.{package}.") or name == f"ndpatch.{package}"}
    assert len(sizes) > 3 and max(sizes.values()) <= 400, sizes
