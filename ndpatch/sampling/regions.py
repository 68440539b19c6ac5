"""Which windows of images to train on: :class:`Regions`, the strategies on the targets table.

:class:`Regions` (``sampler.regions``) draws from the targets table
(:mod:`~ndpatch.sampling.table`): positives around annotations (fixed or fitted,
jittered, in coverage epochs, optionally class-balanced: :mod:`~ndpatch.sampling.positives`,
:mod:`~ndpatch.sampling.balance`), negatives that meet no annotation's extent and
optionally little nodata (:mod:`~ndpatch.sampling.negatives`), a fixed
``preselect`` list, and grids covering every pixel. Block-split images keep
every window in their split (:mod:`~ndpatch.sampling.blocks`). Targets are plain
dicts with ndsampler 0.8.1's keys, ready for ``load_sample``; every random draw
takes ``rng`` (:mod:`ndpatch.rng`).

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> regions = sampler.regions
    >>> regions.configure(window_dims=(64, 64))
    >>> len(regions.targets["aid"]) == sampler.dset.n_annots
    True
    >>> pos = regions.get_positive(rng=0)
    >>> (pos["width"], pos["height"])
    (64, 64)
    >>> neg = regions.get_negative(rng=0)
    >>> regions.hits(neg["gid"], *regions.window(neg))
    []
    >>> regions.preselect(n_pos=5, n_neg=3, rng=0)
    (5, 3)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from ndpatch.errors import SamplingError, TargetError
from ndpatch.rng import ProcessStream, RngLike
from ndpatch.sampling.balance import BalancedCycle
from ndpatch.sampling.blocks import placeable_rows, split_grid_starts
from ndpatch.sampling.config import SamplingConfig
from ndpatch.sampling.geometry import GridRule, box_hits
from ndpatch.sampling.negatives import nodata_fraction, place_negative
from ndpatch.sampling.positives import fitted_dims, positive_window, smallest_scale
from ndpatch.sampling.regions_api import GRID_TASKS, RegionsAPI, box_grid, grid_result, video_time_stride
from ndpatch.sampling.table import TargetsTable, background_id
from ndpatch.target import window_from_center


class Regions(RegionsAPI):
    """The targets table of a sampler's dataset and the strategies that draw windows from it.

    ndsampler's ``CocoRegions`` names come from :class:`~ndpatch.sampling.regions_api.RegionsAPI`.

    Args:
        sampler: a :class:`~ndpatch.sampler.CocoSampler` (its ``dset.dataset`` is
            read; pixels are read through ``load_sample`` only for the nodata limit).
        rng: the default stream of every draw that gets no ``rng`` (an int seed
            is re-spawned per DataLoader worker / rank; see :mod:`ndpatch.rng`).
        **config: :class:`SamplingConfig` fields.
    """

    def __init__(self, sampler, rng: RngLike = None, **config):
        self.sampler = sampler
        self._stream = ProcessStream(rng)
        self.config = SamplingConfig(**config)
        self._table: TargetsTable | None = None
        self._reset()

    def _reset(self) -> None:
        """Forget every drawing state (epochs, pools, full images)."""
        self._reset_epochs()
        self._full: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
        self._usable: np.ndarray | None = None
        self._pos_pool: list[dict] | None = None
        self._neg_pool: list[dict] | None = None

    def configure(self, **config) -> None:
        """Change settings (:class:`SamplingConfig` fields); drawing state starts afresh."""
        self.config = dataclasses.replace(self.config, **config)
        self._reset()

    def reseed(self, rng: RngLike) -> None:
        """Restart the default stream (and epochs and pools) from ``rng``."""
        self._stream = ProcessStream(rng)
        self._reset()

    def _reset_epochs(self) -> None:
        self._cycle: BalancedCycle | None = None

    def _rng(self, rng: RngLike) -> np.random.Generator:
        """``rng`` as a Generator, or this process's (worker's) default stream.

        A new process or DataLoader worker gets its own stream and epochs (it may
        have inherited the parent's by fork); preselected pools are kept.
        """
        if self._stream.renewed():
            self._reset_epochs()
        return self._stream.generator(rng)

    # -- tables -------------------------------------------------------------------------
    @property
    def table(self) -> TargetsTable:
        """The :class:`~ndpatch.sampling.table.TargetsTable` (built on first use)."""
        if self._table is None:
            def image_dims(gid: int) -> tuple[int, int]:
                entry = self.sampler.entry(gid)
                return entry.height, entry.width
            self._table = TargetsTable(self.sampler.dset.dataset, image_dims, self.sampler.dset.fpath)
        return self._table

    @property
    def images(self) -> dict[str, np.ndarray]:
        """Per image (sorted by gid): ``gid``, ``width``, ``height``, its ``start:stop`` rows in the table."""
        return self.table.images

    @property
    def epoch_size(self) -> int:
        """Positives in one coverage epoch: every annotation that can be drawn (see ``_positive_rows``)."""
        return len(self._positive_rows())

    def _describe(self, gid: int) -> str:
        return self.sampler.index.describe(gid)

    def _image_dims(self, img: int) -> tuple[int, int]:
        return int(self.images["height"][img]), int(self.images["width"][img])

    def _split_clause(self, img: int) -> str:
        if self.table.foreign_bounds(img) is None:
            return ""
        region = self.sampler.index.image(int(self.images["gid"][img]))["split_region"]
        return f" and stays inside split {region['split']!r}'s blocks"

    def hits(self, gid: int, rows: slice, cols: slice) -> list[int]:
        """Ids of the annotations of image ``gid`` whose extent meets the window ``(rows, cols)``."""
        found = self.table.hit_rows(self.table.image_row(gid), cols.start, rows.start, cols.stop, rows.stop)
        return self.targets["aid"][found].tolist()

    @staticmethod
    def window(target: dict) -> tuple[slice, slice]:
        """The (row slice, col slice) a drawn target reads (ndsampler's centre rule)."""
        if target.get("space_slice") is not None:
            return target["space_slice"]
        return window_from_center(target["cx"], target["cy"], target["width"], target["height"])

    # -- positives -------------------------------------------------------------------------
    def _next_positive(self, gen: np.random.Generator) -> dict:
        """The next positive of the coverage epochs."""
        return self.positive_target(self._positive_cycle().draw(gen), gen)

    def _positive_cycle(self) -> BalancedCycle:
        """The coverage epochs over the drawable positives (built on first use)."""
        table = self.targets
        if not len(table["aid"]):
            raise SamplingError(f"dataset {self.sampler.dset.fpath} has no annotations to draw positives from")
        rows = self._positive_rows()
        if not len(rows):
            raise SamplingError(f"dataset {self.sampler.dset.fpath}: no annotation has a window around its "
                                f"centre that stays inside its split's blocks")
        if self._cycle is None:
            self._cycle = BalancedCycle(rows, table["category_id"], self.config.balance, self.config.balance_power,
                                        self.sampler.dset.dataset.get("categories", []))
        return self._cycle

    def _positive_rows(self) -> np.ndarray:
        """Table rows drawn as positives (cached per configuration).

        Every row, except that in a block-split image an annotation is left out
        when no window around its centre (of the smallest size drawn) stays
        inside the split's blocks.
        """
        if self._usable is None:
            smallest = smallest_scale(self.config)
            self._usable = np.flatnonzero(placeable_rows(
                self.table, lambda row: fitted_dims(self.targets, self.config, row, smallest)))
        return self._usable

    def positive_target(self, row: int, rng: RngLike = None) -> dict:
        """The window around the annotation in table row ``row`` (jittered as configured)."""
        table, cfg = self.targets, self.config
        if not 0 <= row < len(table["aid"]):
            raise SamplingError(f"positive index {row} is out of range (the table has {len(table['aid'])} rows)")
        gen = self._rng(rng) if cfg.scale_jitter or cfg.center_jitter else None
        cx, cy, height, width, placed = positive_window(self.table, cfg, row, gen)
        if not placed:
            img = self.table.image_row(int(table["gid"][row]))
            raise SamplingError(f"{self._describe(int(table['gid'][row]))}: annotation {int(table['aid'][row])} "
                                f"is not a positive here: no {height}x{width} window around its centre"
                                f"{self._split_clause(img)}")
        return {
            "gid": int(table["gid"][row]), "aid": int(table["aid"][row]),
            "category_id": int(table["category_id"][row]),
            "cx": cx, "cy": cy, "width": width, "height": height,
            "img_width": int(table["img_width"][row]), "img_height": int(table["img_height"][row]),
        }

    def get_positive(self, index: int | None = None, rng: RngLike = None) -> dict:
        """Positive ``index`` (of the preselected pool, else of the table), or one drawn: without
        ``rng`` by coverage epochs; with ``rng`` statelessly, as in ndsampler (same seed, same positive)."""
        if index is None and rng is None:
            return self._next_positive(self._rng(None))
        if index is None:
            gen = self._rng(rng)
            if self._pos_pool is not None:
                return _pool_item(self._pos_pool, int(gen.integers(len(self._pos_pool))), "positive")
            return self.positive_target(self._positive_cycle().sample(gen), gen)
        if self._pos_pool is not None:
            return _pool_item(self._pos_pool, index, "positive")
        return self.positive_target(index, rng)

    # -- negatives -------------------------------------------------------------------------
    def negative_dims(self) -> tuple[int, int]:
        """(height, width) of negative windows: ``window_dims``, else the median fitted positive."""
        if self.config.window_dims is not None:
            return self.config.window_dims
        table = self.targets
        if not len(table["aid"]):
            raise SamplingError("the dataset has no annotations to size negatives by: "
                                "configure window_dims=(height, width)")
        c = self.config.context
        return (math.ceil(float(np.median(np.maximum(table["height"], 1))) * c),
                math.ceil(float(np.median(np.maximum(table["width"], 1))) * c))

    def _nodata_fraction(self, img: int, y0: int, x0: int, dims: tuple[int, int]) -> float:
        """The share of a window's pixels outside the image or invalid by its mask (or equal to ``nodata_value``)."""
        h, w = dims
        gid = int(self.images["gid"][img])
        target = {"gid": gid, "space_slice": (slice(y0, y0 + h), slice(x0, x0 + w))}
        if self.config.nodata_value is None:
            return 1.0 - self.sampler.valid_fraction(target)
        im = self.sampler.load_sample(target, with_annots=False)["im"]
        return nodata_fraction(im, y0, x0, self._image_dims(img), self.config.nodata_value)

    def _acceptable(self, img: int, y0: int, x0: int, dims: tuple[int, int]) -> bool:
        h, w = dims
        foreign = self.table.foreign_bounds(img)
        if foreign is not None and box_hits(foreign, x0, y0, x0 + w, y0 + h).any():
            return False
        if len(self.table.hit_rows(img, x0, y0, x0 + w, y0 + h, stop_at_first=True, hit=self.config.hit)):
            return False
        if self.config.max_nodata is None:
            return True
        return self._nodata_fraction(img, y0, x0, dims) <= self.config.max_nodata

    def _place_negative(self, img: int, dims: tuple[int, int], rng: np.random.Generator) -> tuple[int, int] | None:
        """A free (y0, x0) in image row ``img``; the other splits' blocks are obstacles like the boxes."""
        obstacles = self.table.image_bounds(img)
        foreign = self.table.foreign_bounds(img)
        if foreign is not None:
            obstacles = tuple(np.concatenate(pair) for pair in zip(obstacles, foreign))
        return place_negative(self._image_dims(img), dims, obstacles,
                              lambda y0, x0: self._acceptable(img, y0, x0, dims), self.config.negative_tries,
                              self.config.max_nodata is not None, rng)

    def _negative_target(self, img: int, y0: int, x0: int, dims: tuple[int, int]) -> dict:
        h, w = dims
        return {
            "gid": int(self.images["gid"][img]), "aid": None,
            "category_id": background_id(self.sampler.dset.dataset),
            "cx": x0 + w / 2, "cy": y0 + h / 2, "width": w, "height": h,
            "img_width": int(self.images["width"][img]), "img_height": int(self.images["height"][img]),
        }

    def random_negative(self, rng: RngLike = None, gid: int | None = None) -> dict:
        """A window free of annotations (and of too much nodata), in image ``gid`` or any image.

        Images are drawn uniformly; one found to have no room is dropped from
        the draws (for this window size). Raises :class:`SamplingError` naming
        the image when ``gid`` has no room, or when no image has.
        """
        gen = self._rng(rng)
        dims = self.negative_dims()
        table = self.table
        if gid is not None:
            img = table.image_row(gid)
            found = self._place_negative(img, dims, gen)
            if found is None:
                raise SamplingError(f"{self._describe(gid)}: no room for a {dims[0]}x{dims[1]} negative "
                                    f"window that meets no annotation{self._split_clause(img)}"
                                    f"{self._nodata_clause()}")
            return self._negative_target(img, *found, dims)
        live, n_live = self._full.get(dims, (None, 0))
        if live is None:
            live, n_live = np.arange(len(self.images["gid"])), len(self.images["gid"])
        while n_live:
            i = int(gen.integers(n_live))
            found = self._place_negative(int(live[i]), dims, gen)
            if found is not None:
                self._full[dims] = (live, n_live)
                return self._negative_target(int(live[i]), *found, dims)
            n_live -= 1
            live[i], live[n_live] = live[n_live], live[i]
        self._full[dims] = (live, 0)
        raise SamplingError(f"no image of dataset {self.sampler.dset.fpath} has room for a "
                            f"{dims[0]}x{dims[1]} negative window that meets no annotation"
                            f"{'' if table.obstacles is None else ' or block of another split'}"
                            f"{self._nodata_clause()}")

    def _nodata_clause(self) -> str:
        limit = self.config.max_nodata
        return "" if limit is None else f" with at most {limit:g} nodata (tried {self.config.negative_tries} placements)"

    def get_negative(self, index: int | None = None, rng: RngLike = None, gid: int | None = None) -> dict:
        """Negative ``index`` of the preselected pool, or a new random one (see :meth:`random_negative`)."""
        if index is None:
            return self.random_negative(rng, gid)
        if self._neg_pool is None:
            raise self._missing_pool(index)
        return _pool_item(self._neg_pool, index, "negative")

    # -- fixed lists -------------------------------------------------------------------------
    def preselect(self, n_pos: int | None = None, n_neg: int | None = None,
                  neg_to_pos_ratio: float | None = None, window_dims=None,
                  rng: RngLike = None, verbose: int = 0) -> tuple[int, int]:
        """Draw ``n_pos`` positives (default one epoch) and ``n_neg`` negatives for ``get_item``.

        ``n_neg`` defaults to ``neg_to_pos_ratio * n_pos`` (the argument, else
        the configured ratio); ``window_dims`` sets the window size first.
        Returns ``(n_pos, n_neg)``, exactly as asked.
        """
        if n_neg is not None and neg_to_pos_ratio is not None:
            raise TargetError("give n_neg or neg_to_pos_ratio, not both")
        if window_dims is not None:
            self.configure(window_dims=window_dims)
        gen = self._rng(rng)
        n_pos = len(self._positive_rows()) if n_pos is None else int(n_pos)
        if n_neg is None:
            ratio = self.config.neg_to_pos_ratio if neg_to_pos_ratio is None else neg_to_pos_ratio
            n_neg = int(ratio * n_pos)
        self._pos_pool = [self._next_positive(gen) for _ in range(n_pos)] if n_pos else []
        self._neg_pool = [self.random_negative(gen) for _ in range(int(n_neg))]
        if verbose:
            print(f"preselected {len(self._pos_pool)} positives and {len(self._neg_pool)} negatives")
        return len(self._pos_pool), len(self._neg_pool)

    def get_item(self, index: int | None, rng: RngLike = None) -> dict:
        """Item ``index`` of positives then negatives (``None``: a random item)."""
        if index is None:
            index = int(self._rng(rng).integers(self.n_samples))
        if index < self.n_positives:
            return self.get_positive(index, rng)
        return self.get_negative(index - self.n_positives, rng)

    def draw(self, rng: RngLike = None) -> dict:
        """A negative with probability ``ratio / (1 + ratio)`` (configured ratio), else a positive."""
        gen = self._rng(rng)
        ratio = self.config.neg_to_pos_ratio
        if ratio and gen.random() * (1 + ratio) >= 1:
            return self.random_negative(gen)
        return self._next_positive(gen)

    # -- grids -----------------------------------------------------------------------------
    def new_sample_grid(self, task: str = "detection", window_dims=None, window_overlap: float = 0.0, *,
                        stride=None, edge: str = "shift", pad_direction="end", padding=None,
                        gids: Sequence[int] | None = None, time_stride: int | None = None,
                        vidids: Sequence[int] | None = None, hit: str = "extent",
                        **box_options) -> dict[str, list]:
        """Windows tiling every image (or ``gids``), in grid order (:func:`~.regions_api.grid_result`).

        ``window_dims``: (height, width), ``'full'`` or None (the configured one).
        ``window_overlap`` (a fraction, or one per axis) or ``stride`` (pixels), ``edge``
        (``'shift'``, ``'pad'``, ``'overshoot'``, ``'drop'``), ``pad_direction`` and ``padding``
        place the windows (:class:`~ndpatch.sampling.geometry.GridRule`). Each target has
        ``gid``, ``space_slice`` (and ``slices``), ``aids`` (annotations whose extent meets it)
        and ``label``; ``hit='box'``: ndsampler's grid (:func:`~.regions_api.box_grid`, which
        takes ``box_options``). ``window_dims=(time, height, width)``: a space-time grid
        (:meth:`ndpatch.sampling.video.VideoRegions.new_sample_grid`).
        """
        if task not in GRID_TASKS or hit not in ("extent", "box") or (box_options and hit != "box"):
            raise TargetError(f"new_sample_grid takes task in {GRID_TASKS} and hit 'extent' or 'box' (options "
                              f"only with 'box'), got task={task!r}, hit={hit!r}, options {sorted(box_options)}")
        rule = GridRule(window_overlap, stride, edge, pad_direction, padding)
        if window_dims is not None and not isinstance(window_dims, str) and len(window_dims) == 3:
            from ndpatch.sampling.video import VideoRegions
            if task == "video_detection" and time_stride is None:
                time_stride = video_time_stride(window_dims, window_overlap)
            return VideoRegions(self.sampler, window_dims).new_sample_grid(
                time_stride, window_overlap, edge, vidids, stride=stride, pad_direction=pad_direction, padding=padding)
        window_dims = self.config.window_dims if window_dims is None else window_dims
        if window_dims is None:
            raise TargetError("new_sample_grid needs window_dims=(height, width) or 'full'")
        if hit == "box":
            return box_grid(self, window_dims, window_overlap, gids, **box_options)
        table, targets = self.table, []
        for img in range(len(self.images["gid"])) if gids is None else [table.image_row(g) for g in gids]:
            dims = self._image_dims(img)
            wdims = dims if isinstance(window_dims, str) and window_dims == "full" else tuple(window_dims)
            foreign = table.foreign_bounds(img)
            starts = (rule.starts(dims, wdims).tolist() if foreign is None
                      else split_grid_starts(foreign, dims, wdims, rule))
            targets += table.labelled_windows(img, starts, wdims)
        return grid_result(targets)


def _pool_item(pool: list[dict], index: int, kind: str) -> dict:
    if not -len(pool) <= index < len(pool):
        raise SamplingError(f"{kind} index {index} is out of range (the pool has {len(pool)})")
    return pool[index]
