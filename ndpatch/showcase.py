"""The ``ndpatch demo`` job: sample a toy dataset and draw the windows as one mosaic.

Example:
    >>> import tempfile
    >>> summary = run_demo(tempfile.mkdtemp(), n_each=1)
    >>> "mosaic.png" in summary
    True
"""
from __future__ import annotations

import time
from pathlib import Path

import kwimage
import numpy as np

from ndpatch.demo import kwcoco_demo
from ndpatch.sampler import CocoSampler

TILE = 160  # pixels per mosaic cell


def _draw(sample: dict, title: str) -> np.ndarray:
    """The sample's pixels with its annotations drawn, letterboxed into a TILE×TILE cell."""
    canvas = np.ascontiguousarray(sample["im"][..., :3]).astype(np.uint8)
    dets = sample["annots"]["frame_dets"][0]
    if len(dets):
        canvas = dets.draw_on(canvas, color="lime")
    canvas = kwimage.imresize(canvas, dsize=(TILE, TILE), letterbox=True)
    canvas = kwimage.draw_text_on_image(canvas, title, org=(2, 2), valign="top", color="white",
                                        fontScale=0.4, thickness=1, border=1)
    return kwimage.ensure_uint255(canvas)[..., :3]


def run_demo(out_dir: str, backend=None, workdir: str | None = None, seed: int = 0,
             n_each: int = 4) -> str:
    """Sample positives, negatives and arbitrary windows of kwcoco's 'shapes8'; write a mosaic.

    Returns a one-line summary naming the PNG written.
    """
    start = time.perf_counter()
    sampler = CocoSampler(kwcoco_demo("shapes8"), backend=backend, workdir=workdir)
    rng = np.random.default_rng(seed)
    cells, n_annots = [], 0
    kinds = [("pos", sampler.load_positive), ("neg", sampler.load_negative)]
    for name, load in kinds:
        for _ in range(n_each):
            sample = load(rng=rng)
            n_annots += len(sample["annots"]["aids"])
            cells.append(_draw(sample, f"{name} img {sample['target']['gid']}"))
    gids = sorted(sampler.dset.imgs)
    for _ in range(n_each):
        gid = int(rng.choice(gids))
        height, width = sampler.entry(gid).height, sampler.entry(gid).width
        target = {"gid": gid, "cx": float(rng.uniform(0, width)), "cy": float(rng.uniform(0, height)),
                  "width": 192, "height": 192}
        sample = sampler.load_sample(target)
        n_annots += len(sample["annots"]["aids"])
        cells.append(_draw(sample, f"any img {gid}"))
    mosaic = kwimage.stack_images_grid(cells, chunksize=n_each, pad=4, bg_value=(40, 40, 40))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "mosaic.png"
    kwimage.imwrite(str(path), mosaic)
    return (f"wrote {path}: {len(cells)} windows ({n_each} positive, {n_each} negative, "
            f"{n_each} arbitrary) from {len(gids)} images, {n_annots} annotations drawn, "
            f"backend={sampler.backend.name}, {time.perf_counter() - start:.1f}s")
