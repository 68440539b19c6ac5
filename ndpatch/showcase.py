"""The ``ndpatch demo`` job: sample a toy dataset and draw the windows as one mosaic.

Positives, negatives and arbitrary windows (some running past the image, whose
padding the picture hatches) of kwcoco's 'shapes8', drawn by :mod:`ndpatch.render`
as ``ndpatch preview`` draws a dataset's own samples.

Example:
    >>> import tempfile
    >>> summary = run_demo(tempfile.mkdtemp(), n_each=1)
    >>> "mosaic.png" in summary
    True
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ndpatch.demo import kwcoco_demo
from ndpatch.render import draw_mosaic, write_picture
from ndpatch.sampler import CocoSampler


def run_demo(out_dir: str, backend=None, workdir: str | None = None, seed: int = 0,
             n_each: int = 4) -> str:
    """Sample positives, negatives and arbitrary windows of kwcoco's 'shapes8'; write a mosaic.

    Returns a one-line summary naming the PNG written.
    """
    start = time.perf_counter()
    sampler = CocoSampler(kwcoco_demo("shapes8"), backend=backend, workdir=workdir)
    rng = np.random.default_rng(seed)
    samples = [sampler.load_positive(rng=rng) for _ in range(n_each)]
    samples += [sampler.load_negative(rng=rng) for _ in range(n_each)]
    gids = sorted(sampler.dset.imgs)
    for _ in range(n_each):
        gid = int(rng.choice(gids))
        height, width = sampler.entry(gid).height, sampler.entry(gid).width
        samples.append(sampler.load_sample({"gid": gid, "cx": float(rng.uniform(0, width)),
                                            "cy": float(rng.uniform(0, height)), "width": 192, "height": 192}))
    path = Path(out_dir) / "mosaic.png"
    write_picture(path, draw_mosaic(samples, columns=n_each))
    n_annots = sum(len(sample["annots"]["aids"]) for sample in samples)
    return (f"wrote {path}: {len(samples)} windows ({n_each} positive, {n_each} negative, "
            f"{n_each} arbitrary) from {len(gids)} images, {n_annots} annotations drawn, "
            f"backend={sampler.backend.name}, {time.perf_counter() - start:.1f}s")
