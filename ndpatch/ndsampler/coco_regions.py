"""ndsampler's ``coco_regions`` module: ``CocoRegions`` and the table and grid functions, backed by ndpatch.

``CocoRegions(dset)`` is :class:`ndpatch.sampling.Regions` over a sampler of
``dset``; ``tabular_coco_targets`` is its targets table; the grid functions
give ndsampler's grids (``new_image_sample_grid``: the same windows, ``aids``
and labels, by :func:`ndpatch.sampling.regions_api.box_grid`).

Example:
    >>> from ndpatch.demo import kwcoco_demo
    >>> dset = kwcoco_demo("shapes8")
    >>> targets = tabular_coco_targets(dset)
    >>> len(targets) == dset.n_annots, len(select_positive_regions(targets, (300, 300), rng=0)) <= len(targets)
    (True, True)
    >>> grid = new_image_sample_grid(dset, (224, 224), verbose=0)
    >>> sorted(grid)
    ['negatives', 'negatives_indexes', 'positives', 'positives_indexes', 'targets']
"""
from __future__ import annotations

import numpy as np

from ndpatch.errors import MissingNegativePool
from ndpatch.sampler import CocoSampler
from ndpatch.sampling.regions import Regions
from ndpatch.sampling.regions_api import NEGATIVE_CLASSES, box_grid, grid_result
from ndpatch.sampling.table import TargetsFrame, TargetsTable


class Targets:
    """ndsampler's abstract targets API: what :class:`CocoRegions` implements."""

    def get_negative(self, index=None, rng=None):
        raise NotImplementedError

    def get_positive(self, index=None, rng=None):
        raise NotImplementedError

    def overlapping_aids(self, gid, box):
        raise NotImplementedError

    def preselect(self, n_pos=None, n_neg=None, neg_to_pos_ratio=None, window_dims=None, rng=None, verbose=0):
        raise NotImplementedError


class CocoRegions(Regions, Targets):
    """The regions (targets table and strategies) of a kwcoco dataset, as ``sampler.regions`` of a sampler over it."""

    def __init__(self, dset, workdir=None, verbose: int = 1):
        super().__init__(CocoSampler(dset, workdir=workdir))
        self.verbose = verbose

    @classmethod
    def demo(cls) -> "CocoRegions":
        """The regions of kwcoco's ``shapes8`` toy dataset."""
        from ndpatch.demo import kwcoco_demo
        return cls(kwcoco_demo("shapes8"))


def tabular_coco_targets(dset) -> TargetsFrame:
    """The targets table of a dataset: one row per annotation with a box (``aid``, ``gid``, ``cx``, ...)."""
    return TargetsFrame(TargetsTable(dset.dataset, what=getattr(dset, "fpath", None)).columns)


def select_positive_regions(targets, window_dims=(300, 300), thresh: float = 0.0, rng=None, verbose: int = 0):
    """Rows of ``targets`` whose ``window_dims`` windows (centred on them) overlap little: per image, a
    non-maximum suppression at ``thresh`` over random scores (so the choice varies with ``rng``)."""
    import kwimage
    from ndpatch.rng import coerce_rng
    gen = coerce_rng(rng)
    height, width = window_dims
    gids = np.asarray(targets["gid"])
    boxes = np.stack([np.asarray(targets["cx"], np.float64), np.asarray(targets["cy"], np.float64),
                      np.full(len(gids), width, np.float64), np.full(len(gids), height, np.float64)], axis=1)
    selection = []
    for gid in np.unique(gids):
        rows = np.flatnonzero(gids == gid)
        dets = kwimage.Detections(boxes=kwimage.Boxes(boxes[rows], "cxywh").to_ltrb(), scores=gen.random(len(rows)))
        selection.extend(rows[dets.non_max_supression(thresh=thresh)].tolist())
    return np.array(sorted(selection), dtype=np.int64)


def _finish(grid: dict, use_annots: bool, legacy: bool, verbose: int) -> dict:
    if not use_annots:
        for target in grid["targets"]:
            target["aids"], target["label"] = None, "negative"
        grid = grid_result(grid["targets"])
    if verbose:
        print(f"Found {len(grid['targets'])} targets: {len(grid['positives_indexes'])} positives, "
              f"{len(grid['negatives_indexes'])} negatives")
    if not legacy:
        grid = {key: grid[key] for key in ("targets", "positives_indexes", "negatives_indexes")}
    return grid


def new_image_sample_grid(dset, window_dims, window_overlap: float = 0.0, classes_of_interest=None,
                          ignore_coverage_thresh: float = 0.6, negative_classes=NEGATIVE_CLASSES,
                          use_annots: bool = True, legacy: bool = True, verbose: int = 1) -> dict:
    """ndsampler's image grid of ``dset`` (see :func:`ndpatch.sampling.regions_api.box_grid`)."""
    regions = CocoSampler(dset).regions
    grid = box_grid(regions, window_dims, window_overlap, ignore_coverage_thresh=ignore_coverage_thresh,
                    negative_classes=negative_classes, classes_of_interest=classes_of_interest)
    return _finish(grid, use_annots, legacy, verbose)


def new_video_sample_grid(dset, window_dims=None, window_overlap: float = 0.0, space_dims=None, time_dim=None,
                          classes_of_interest=None, ignore_coverage_thresh: float = 0.6,
                          negative_classes=NEGATIVE_CLASSES, use_annots: bool = True, legacy: bool = True,
                          verbose: int = 1) -> dict:
    """A space-time grid of every video of ``dset``: ``window_dims=(time, height, width)``, overlapping in time too.

    An annotation meets a window by its extent (polygon, else box) in video pixels (ndsampler: by its box).
    """
    if classes_of_interest or space_dims is not None or time_dim is not None:
        from ndpatch.errors import TargetError
        raise TargetError("new_video_sample_grid takes window_dims=(time, height, width); "
                          "classes_of_interest, space_dims and time_dim are not supported (nor by ndsampler)")
    grid = CocoSampler(dset).regions.new_sample_grid("video_detection", window_dims, window_overlap)
    return _finish(grid, use_annots, legacy, verbose)


__all__ = ["CocoRegions", "MissingNegativePool", "Targets", "new_image_sample_grid", "new_video_sample_grid",
           "select_positive_regions", "tabular_coco_targets"]
