"""The export plan: which windows to write, as one compact table, in a fixed order.

Row ``i`` of the plan is chip ``i``: ``(gid, row_start, col_start)`` of a
window of the plan's fixed size. The windows come from the sampler's sampling
strategies (:mod:`ndpatch.regions`): a grid covering every pixel, positives,
negatives or both. Images of a block split (``ndpatch split --by block``) keep
only the windows that lie inside their split's blocks.

Example:
    >>> parse_window("256"), parse_window("128x64")
    ((256, 256), (128, 64))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ndpatch.errors import TargetError
from ndpatch.splits import window_in_region
from ndpatch.target import window_from_center

#: ``--targets`` choices.
TARGET_KINDS = ("grid", "positives", "negatives", "mixed")


def parse_window(size: str | int | tuple) -> tuple[int, int]:
    """``256`` → (256, 256); ``'256x512'`` → (height 256, width 512)."""
    if isinstance(size, (tuple, list)):
        parts = list(size)
    else:
        parts = str(size).lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise TargetError(f"window size must be N or HxW (e.g. 256 or 256x512), got {size!r}") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise TargetError(f"window size must be N or HxW with positive sizes, got {size!r}")
    return dims[0], dims[1]


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


def _inside_split(sampler, gid: int, r0: int, c0: int, window: tuple[int, int]) -> bool:
    region = sampler.index.image(gid).get("split_region")
    if region is None:
        return True
    return window_in_region(region, slice(r0, r0 + window[0]), slice(c0, c0 + window[1]))


def strategy_targets(sampler, targets: str, window: tuple[int, int], overlap: float,
                     count: int | None, seed: int) -> list[tuple[int, slice, slice]]:
    """``(gid, rows, cols)`` of each window, from the sampler's sampling strategies (``sampler.regions``).

    ``grid``: ``new_sample_grid`` (every pixel covered; the last window on each
    axis ends on the image edge), in image, row, column order. ``positives``:
    ``count`` windows centred on annotations (default: each annotation once);
    ``negatives``: ``count`` windows that meet no annotation (default: as many
    as annotations); ``mixed``: half and half (default: each annotation once
    plus as many negatives). Random draws use ``seed``.
    """
    regions = sampler.regions
    regions.configure(window_dims=window)
    if targets == "grid":
        grid = regions.new_sample_grid(window_dims=window, window_overlap=overlap)
        rows = [(tr["gid"], *tr["space_slice"]) for tr in grid["positives"] + grid["negatives"]]
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
              count: int | None = None, seed: int = 0) -> Plan:
    """The windows of an export over the sampler's dataset, minus those outside their split's blocks."""
    if targets not in TARGET_KINDS:
        raise TargetError(f"unknown targets {targets!r}; expected one of {', '.join(TARGET_KINDS)}")
    if count is not None and count < 0:
        raise TargetError(f"count must be >= 0, got {count!r}")
    rows = []
    for gid, rs, cs in strategy_targets(sampler, targets, window, overlap, count, seed):
        region = sampler.index.image(gid).get("split_region")
        if region is None or window_in_region(region, rs, cs):
            rows.append((gid, rs.start, cs.start))
    table = np.array(rows, dtype=np.int64).reshape(-1, 3)
    if count is not None:
        table = table[:count]
    return Plan(window=window, table=table)
