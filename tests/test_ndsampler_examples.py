"""ndsampler 0.8.1's own examples, run against ``ndpatch.ndsampler``.

Every example of the docstrings of ndsampler's ``coco_sampler``, ``coco_regions``,
``coco_frames`` and ``abstract_frames`` modules, and the example of its README,
is read at test time from the installed ndsampler (nothing of its text is kept
here), its imports pointed at ``ndpatch.ndsampler``, and run by xdoctest with
its own assertions and printed output checks. Three examples fail on ndsampler
0.8.1 itself with today's kwcoco; for those, ndpatch must fail the same way or
differ only as docs/differences.md says.
"""
import importlib.util
import re
from importlib import metadata
from pathlib import Path

import pytest

xdoctest = pytest.importorskip("xdoctest")
if importlib.util.find_spec("ndsampler") is None:
    pytest.skip("ndsampler 0.8.1 is not installed", allow_module_level=True)

from xdoctest import core, static_analysis  # noqa: E402
from xdoctest.doctest_example import DocTest  # noqa: E402

import ndpatch.ndsampler  # noqa: E402

OURS = Path(ndpatch.ndsampler.__file__).parent
MODULES = ["coco_sampler", "coco_regions", "coco_frames", "abstract_frames"]
#: What every ndsampler module has imported at its top, which its examples use without importing.
PRELUDE = "import ubelt as ub\nimport numpy as np\nimport kwimage\nimport kwarray\nimport kwcoco"
#: Examples that fail on ndsampler 0.8.1 itself (kwcoco 0.9.1, kwimage 0.12): what ndpatch's run must show.
NDSAMPLER_FAILS = {
    # ndsampler: TypeError, a pathlib file_name is not JSON serializable (its hashid). ndpatch runs it; its
    # Detections also carry kwimage's class_idxs and a PolygonList (docs/differences.md).
    "coco_sampler.__doc__:0": "'class_idxs': [0]",
    # ndsampler: `assert shape2 == shape3` fails (realigned native-scale shapes); so does ndpatch's, the same way.
    "coco_sampler.CocoSampler._load_slice:2": "assert shape2 == shape3",
    # kwcoco 0.9.1's CocoDataset repr is not the README's (the same for both); its sample keys are checked
    # against ndsampler's in test_ndsampler_compat.py.
    "README:0": "n_videos=0",
}


def ported(source: str) -> str:
    """An example's source with its ndsampler imports pointed at ndpatch.ndsampler."""
    source = re.sub(r"(>>>\s*)import ndsampler\b(?!\.)", r"\1import ndpatch.ndsampler as ndsampler", source)
    return re.sub(r"(>>>\s*)from ndsampler\b", r"\1from ndpatch.ndsampler", source)


def readme_blocks() -> list[str]:
    """The ``>>>`` code blocks of ndsampler's README (its package description)."""
    # the METADATA file's body (importlib_metadata, which dask installs, gives its Message no payload)
    text = metadata.distribution("ndsampler").read_text("METADATA").split("\n\n", 1)[1]
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
    return [re.sub(r"^    ", "", block, flags=re.M) for block in blocks if ">>>" in block]


def examples():
    for mod in MODULES:
        path = importlib.util.find_spec(f"ndsampler.{mod}").origin
        for callname, calldef in static_analysis.parse_static_calldefs(fpath=path).items():
            for example in core.parse_docstr_examples(calldef.docstr or "", callname=callname, modpath=path,
                                                      lineno=calldef.doclineno):
                if example.block_type.lower().startswith("benchmark"):
                    continue   # timings, not examples
                yield pytest.param(mod, callname, example.num, example.docsrc,
                                   id=f"{mod}.{callname}:{example.num}")
    for num, block in enumerate(readme_blocks()):
        yield pytest.param("coco_sampler", "README", num, block, id=f"README:{num}")


EXAMPLES = list(examples())


def test_every_example_is_collected():
    ids = {param.id for param in EXAMPLES}
    assert len(ids) == len(EXAMPLES) >= 40
    assert {"coco_sampler.CocoSampler.load_sample:7", "coco_regions.new_image_sample_grid:0",
            "coco_frames.CocoFrames:0", "abstract_frames.Frames.prepare:1", "README:0"} <= ids


@pytest.mark.parametrize("mod,callname,num,source", EXAMPLES)
def test_ndsampler_example_runs_on_ndpatch(mod, callname, num, source, capsys):
    name = f"{mod if callname != 'README' else 'README'}{'' if callname == 'README' else '.' + callname}:{num}"
    doctest = DocTest(ported(source), modpath=str(OURS / f"{mod}.py"), callname=callname, num=num)
    doctest.config["global_exec"] = PRELUDE
    summary = doctest.run(verbose=0, on_error="return")
    if name in NDSAMPLER_FAILS:
        assert not summary["passed"]
        assert NDSAMPLER_FAILS[name] in "\n".join(doctest.repr_failure())
    else:
        assert summary["passed"], "\n".join(doctest.repr_failure())
