"""The export plan: which windows to write, as one compact table, in a fixed order.

Row ``i`` of the plan is chip ``i``: ``(gid, row_start, col_start)`` of a
window of the plan's fixed size. The windows come from the sampler's sampling
strategies (:mod:`ndpatch.regions`): a grid covering every pixel, positives,
negatives or both. Images of a block split (``ndpatch split --by block``) keep
only the windows that lie inside their split's blocks. ``count`` keeps that
many windows drawn at random with the seed, stratified across images
(:func:`stratified_subset`).

Example:
    >>> parse_window("256"), parse_window("128x64")
    ((256, 256), (128, 64))
    >>> table = np.array([[1, 0, 0], [1, 0, 8], [1, 8, 0], [1, 8, 8], [2, 0, 0], [2, 0, 8]])
    >>> stratified_subset(table, 3, seed=0)[:, 0].tolist()  # image 1 has 4 of 6 windows: 2 of 3 chips
    [1, 1, 2]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ndpatch.errors import TargetError
from ndpatch.splits import window_in_region
from ndpatch.target import window_from_center

#: ``--targets`` choices.
TARGET_KINDS = ("grid", "positives", "negatives", "mixed")
#: The grid options of :func:`make_plan` (``targets='grid'``) and their defaults.
GRID_DEFAULTS = {"stride": None, "edge": "shift", "pad_direction": "end", "padding": None}


def parse_window(size: str | int | tuple) -> tuple[int, int]:
    """``256`` → (256, 256); ``'256x512'`` → (height 256, width 512)."""
    return parse_pair(size, int, "window size", minimum=1)


def parse_pair(value: str | float | tuple, kind: type = int, name: str = "value",
               minimum: float = 0) -> tuple:
    """A per-axis value, ``(rows, cols)``: ``N`` for both, ``'AxB'`` or a pair; each ``>= minimum``.

    >>> parse_pair("128x64"), parse_pair(0.25, float, "overlap"), parse_pair([3, 4])
    ((128, 64), (0.25, 0.25), (3, 4))
    """
    parts = list(value) if isinstance(value, (tuple, list)) else str(value).lower().split("x")
    example = "256 or 256x512" if kind is int else "0.25 or 0.25x0.5"
    try:
        values = [kind(p) for p in parts]
    except (TypeError, ValueError):
        raise TargetError(f"{name} must be N or HxW (e.g. {example}), got {value!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < minimum:
        raise TargetError(f"{name} must be N or HxW with values >= {minimum}, got {value!r}")
    return values[0], values[1]


@dataclass(frozen=True)
class Plan:
    """Fixed-size windows, one row ``(gid, row_start, col_start)`` per chip."""

    window: tuple[int, int]
    table: np.ndarray

    def __len__(self) -> int:
        return len(self.table)

    def slices(self, i: int) -> tuple[int, slice, slice]:
        gid, r0, c0 = (int(v) for v in self.table[i])
        return gid, slice(r0, r0 + self.window[0]), slice(c0, c0 + self.window[1])


def stratified_subset(table: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` rows of a plan table drawn at random, each image's share in proportion to its rows.

    Image ``i`` with ``n_i`` of the ``n`` rows gets ``floor(count * n_i / n)``
    rows, and the rows left over go one each to the images with the largest
    remainders (ties broken at random); inside an image the rows are drawn
    uniformly without replacement. The kept rows stay in table order. The same
    seed gives the same rows; ``count >= len(table)`` keeps every row.
    """
    if count >= len(table):
        return table
    rng = np.random.default_rng(seed)
    gids, sizes = np.unique(table[:, 0], return_counts=True)
    exact = count * sizes / len(table)
    quotas = np.floor(exact).astype(np.int64)
    leftover = count - int(quotas.sum())
    by_remainder = np.lexsort((rng.random(len(gids)), -(exact - quotas)))
    quotas[by_remainder[:leftover]] += 1
    order = np.argsort(table[:, 0], kind="stable")  # rows of each image together, in table order
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    keep = np.concatenate([order[start + rng.choice(size, quota, replace=False)]
                           for start, size, quota in zip(starts, sizes, quotas)])
    return table[np.sort(keep)]


def strategy_targets(sampler, targets: str, window: tuple[int, int], overlap: float,
                     count: int | None, seed: int, **grid) -> list[tuple[int, slice, slice]]:
    """``(gid, rows, cols)`` of each window, from the sampler's sampling strategies (``sampler.regions``).

    ``grid``: ``new_sample_grid`` (``overlap`` and ``grid``: ``stride``, ``edge``,
    ``pad_direction``, ``padding``; by default every pixel covered and the last
    window on each axis ending on the image edge), in image, row, column order. ``positives``:
    ``count`` windows centred on annotations (default: each annotation once);
    ``negatives``: ``count`` windows that meet no annotation (default: as many
    as annotations); ``mixed``: half and half (default: each annotation once
    plus as many negatives). Random draws use ``seed``.
    """
    regions = sampler.regions
    regions.configure(window_dims=window)
    if targets == "grid":
        windows = regions.new_sample_grid(window_dims=window, window_overlap=overlap, **grid)
        rows = [(tr["gid"], *tr["space_slice"]) for tr in windows["positives"] + windows["negatives"]]
        order = {gid: i for i, gid in enumerate(sorted(sampler.dset.imgs))}
        return sorted(rows, key=lambda r: (order[r[0]], r[1].start, r[2].start))
    n_annots = regions.epoch_size  # annotations that can be drawn (in a block split: placeable ones)
    if targets == "positives":
        n_pos, n_neg = (n_annots if count is None else count), 0
    elif targets == "negatives":
        n_pos, n_neg = 0, (n_annots if count is None else count)
    else:
        n_pos = n_annots if count is None else (count + 1) // 2
        n_neg = n_annots if count is None else count // 2
    regions.preselect(n_pos=n_pos, n_neg=n_neg, rng=seed)
    picked = [regions.get_positive(i) for i in range(n_pos)] + [regions.get_negative(i) for i in range(n_neg)]
    return [(tr["gid"], *window_from_center(tr["cx"], tr["cy"], window[1], window[0])) for tr in picked]


def make_plan(sampler, window: tuple[int, int], targets: str = "grid", overlap: float = 0.0,
              count: int | None = None, seed: int = 0, **grid) -> Plan:
    """The windows of an export over the sampler's dataset, minus those outside their split's blocks.

    ``grid`` (``stride``, ``edge``, ``pad_direction``, ``padding``) places the
    windows of ``targets='grid'`` (:class:`~ndpatch.sampling.geometry.GridRule`).
    """
    if targets not in TARGET_KINDS:
        raise TargetError(f"unknown targets {targets!r}; expected one of {', '.join(TARGET_KINDS)}")
    given = sorted(key for key, value in grid.items() if value != GRID_DEFAULTS[key])
    if targets != "grid" and given:
        raise TargetError(f"{', '.join(given)} place grid windows; targets={targets!r} takes none")
    if count is not None and count < 0:
        raise TargetError(f"count must be >= 0, got {count!r}")
    rows = []
    for gid, rs, cs in strategy_targets(sampler, targets, window, overlap, count, seed, **grid):
        region = sampler.dset.imgs[gid].get("split_region")
        if region is None or window_in_region(region, rs, cs):
            rows.append((gid, rs.start, cs.start))
    table = np.array(rows, dtype=np.int64).reshape(-1, 3)
    if count is not None:
        table = stratified_subset(table, count, seed)
    return Plan(window=window, table=table)
