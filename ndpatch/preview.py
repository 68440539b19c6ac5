"""``ndpatch preview`` and ``ndpatch show``: pictures of a dataset's own samples.

:func:`preview_targets` draws ``n`` windows of one kind: ``positive`` (around
distinct annotations), ``negative`` (touching no annotation), ``grid`` (windows
of the full-coverage grid) or ``random`` (anywhere; images weighted by area);
:func:`preview` reads them and writes the mosaic (:mod:`ndpatch.render`).
:func:`show` writes one window as a picture with its annotations drawn.

Example:
    >>> import tempfile
    >>> from ndpatch.demo import make_dataset
    >>> tmp = tempfile.mkdtemp()
    >>> dset = make_dataset(tmp, [{"shape": (60, 80, 3), "dtype": "uint8"}])
    >>> print(preview(dset, f"{tmp}/preview.png", n=2, kind="positive", seed=0))  # doctest: +ELLIPSIS
    wrote .../preview.png: 2 positive windows from 1 images, 2 annotations drawn (...)
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ndpatch import render
from ndpatch.errors import NdpatchError
from ndpatch.sampler import CocoSampler
from ndpatch.sampling.regions import Regions

#: What ``--kind`` offers.
KINDS = ("positive", "negative", "grid", "random")
#: Window size of grid and random previews when none is given.
DEFAULT_WINDOW = (256, 256)
#: Show pictures of smaller windows are enlarged by a whole factor to at least this many pixels.
SHOW_MIN_SIDE = 256


def preview_targets(sampler: CocoSampler, kind: str = "positive", n: int = 16,
                    window_dims: tuple[int, int] | None = None, seed: int = 0) -> list[dict]:
    """``n`` targets of ``kind`` (fewer when the dataset has fewer annotations or grid windows).

    ``window_dims`` (height, width): positives default to windows fitted to their
    annotation, negatives to the median fitted positive, grid and random
    windows to :data:`DEFAULT_WINDOW`. Grid windows are drawn from the grids of at
    most ``n`` images (drawn at random). The same seed gives the same targets.
    """
    if kind not in KINDS:
        raise NdpatchError(f"unknown preview kind {kind!r}; expected one of {', '.join(KINDS)}")
    gen = np.random.default_rng(seed)  # a Generator: the same targets in every process
    regions = Regions(sampler, window_dims=window_dims)
    if kind == "positive":
        n_rows = len(regions.targets["aid"])
        if not n_rows:
            raise NdpatchError(f"dataset {sampler.dset.fpath} has no annotations to preview positives of")
        rows = np.sort(gen.choice(n_rows, size=min(n, n_rows), replace=False))
        return [regions.positive_target(int(row), gen) for row in rows]
    if kind == "negative":
        return [regions.random_negative(gen) for _ in range(n)]
    dims = window_dims or DEFAULT_WINDOW
    if kind == "grid":
        gids = regions.images["gid"]
        if len(gids) > n:   # the grids of n images at most: a preview never builds a whole large dataset's grid
            gids = np.sort(gen.choice(gids, size=n, replace=False))
        grid = regions.new_sample_grid(window_dims=dims, gids=[int(g) for g in gids])
        windows = sorted(grid["positives"] + grid["negatives"],
                         key=lambda t: (t["gid"], t["space_slice"][0].start, t["space_slice"][1].start))
        picks = np.sort(gen.choice(len(windows), size=min(n, len(windows)), replace=False))
        return [windows[i] for i in picks]
    return random_windows(regions, dims, n, gen)


def random_windows(regions: Regions, dims: tuple[int, int], n: int, gen: np.random.Generator) -> list[dict]:
    """``n`` windows anywhere: an image drawn with probability ∝ its area, a window placed uniformly in it.

    A window larger than its image is centred on it (and padded).
    """
    images = regions.images
    areas = images["height"].astype(np.float64) * images["width"]
    picks = gen.choice(len(areas), size=n, p=areas / areas.sum())
    height, width = dims
    targets = []
    for img in picks:
        image_h, image_w = int(images["height"][img]), int(images["width"][img])
        y0 = int(gen.integers(image_h - height + 1)) if image_h >= height else (image_h - height) // 2
        x0 = int(gen.integers(image_w - width + 1)) if image_w >= width else (image_w - width) // 2
        targets.append({"gid": int(images["gid"][img]),
                        "space_slice": (slice(y0, y0 + height), slice(x0, x0 + width))})
    return targets


def image_nodata(sampler: CocoSampler, gid: int) -> float | None:
    """The nodata value the image's files declare (None if none, or if its files differ)."""
    values = {entry.nodata for entry in sampler.records.get(gid).entries}
    return values.pop() if len(values) == 1 else None


def preview(dataset: Any, out: str | os.PathLike, n: int = 16, kind: str = "positive", seed: int = 0,
            window_dims: tuple[int, int] | None = None, channels: Any = None, tile: int = 192,
            stretch: str = "auto", backend: Any = None, workdir: str | None = None) -> str:
    """Write a mosaic of ``n`` of the dataset's windows of ``kind`` to ``out`` (.png/.jpg); returns a summary.

    ``channels`` selects the bands shown (e.g. ``'nir|red|green'``), ``tile``
    is each cell's side in pixels, ``stretch`` one of :data:`ndpatch.render.STRETCHES`.
    """
    render.picture_format(out)
    sampler = dataset if isinstance(dataset, CocoSampler) else CocoSampler(dataset, backend=backend, workdir=workdir)
    targets = preview_targets(sampler, kind, n, window_dims, seed)
    if not targets:
        raise NdpatchError(f"dataset {sampler.dset.fpath} has no {kind} windows to preview")
    if channels is not None:
        targets = [{**target, "channels": channels} for target in targets]
    samples = [sampler.load_sample(target) for target in targets]
    picture = render.draw_mosaic(samples, tile=tile, stretch=stretch,
                                 nodata=[image_nodata(sampler, sample["target"]["gid"]) for sample in samples])
    render.write_picture(out, picture)
    n_images = len({sample["target"]["gid"] for sample in samples})
    n_annots = sum(len(sample["annots"]["aids"]) for sample in samples)
    return (f"wrote {out}: {len(samples)} {kind} windows from {n_images} images, "
            f"{n_annots} annotations drawn ({picture.shape[1]}x{picture.shape[0]} pixels)")


def show(sampler: CocoSampler, target: dict, out: str | os.PathLike, stretch: str = "auto") -> dict:
    """Write one window as a PNG/JPEG picture with its annotations drawn and a caption; returns the sample.

    Windows smaller than :data:`SHOW_MIN_SIDE` are enlarged by a whole factor
    (each pixel a square block); larger ones are written at their own size.
    """
    render.picture_format(out)
    sample = sampler.load_sample(target)
    height, width = sample["im"].shape[:2]
    scale = max(1, SHOW_MIN_SIDE // max(height, width))
    picture = render.draw_sample(sample, scale, stretch, image_nodata(sampler, sample["target"]["gid"]))
    caption = render.draw_caption(picture.shape[1], [" ".join(render.caption_lines(sample))])
    render.write_picture(out, np.concatenate([picture, caption], axis=0))
    return sample
