"""ndsampler 0.8.1's ``CocoRegions`` API on :class:`~ndpatch.sampling.regions.Regions` (the mixin it inherits).

What ndsampler's clients call on ``sampler.regions`` besides ndpatch's own
strategies: the dataset's counts and class lookups, ``overlapping_aids``,
``get_segmentations``, ``isect_index``, ``hashid``, ndsampler's grid tasks
(:func:`grid_result`, :func:`box_grid`: ``hit='box'`` reproduces ndsampler's
grid exactly) and the pool builders its examples use.

Example:
    >>> import ndpatch, kwimage
    >>> regions = ndpatch.CocoSampler.demo("shapes8").regions
    >>> len(regions.targets) == regions.n_annots, regions.targets.columns[:2]
    (True, ['aid', 'gid'])
    >>> aids = regions.overlapping_aids(1, kwimage.Boxes([[0, 0, 1000, 1000]], "xywh"), visible_thresh=0.1)
    >>> len(aids) > 0
    True
"""
from __future__ import annotations

import numpy as np

from ndpatch.errors import MissingNegativePool, SamplingError, TargetError
from ndpatch.sampling.isect import FrameIntersectionIndex, query_ltrb
from ndpatch.sampling.table import TargetsFrame, background_id

#: Grid tasks: ndpatch's name and ndsampler's two.
GRID_TASKS = ("detection", "image_detection", "video_detection")
#: Category names that ndsampler's grids never count as positives.
NEGATIVE_CLASSES = frozenset({"ignore", "background"})


def grid_result(targets: list[dict]) -> dict[str, list]:
    """A grid as ndsampler returns it: ``targets`` in grid order, ``positives_indexes`` /
    ``negatives_indexes`` into them, and the ``positives`` / ``negatives`` lists.

    >>> grid = grid_result([{"label": "negative"}, {"label": "positive"}])
    >>> grid["positives_indexes"], grid["negatives_indexes"], grid["positives"][0] is grid["targets"][1]
    ([1], [0], True)
    """
    positives = [i for i, target in enumerate(targets) if target["label"] == "positive"]
    negatives = [i for i, target in enumerate(targets) if target["label"] != "positive"]
    return {"targets": targets, "positives_indexes": positives, "negatives_indexes": negatives,
            "positives": [targets[i] for i in positives], "negatives": [targets[i] for i in negatives]}


def box_grid(regions, window_dims, window_overlap: float = 0.0, gids=None,
             ignore_coverage_thresh: float = 0.6, negative_classes=NEGATIVE_CLASSES,
             classes_of_interest=None) -> dict[str, list]:
    """An image grid by ndsampler 0.8.1's rule (``hit='box'``): same windows, ``aids`` and labels.

    Windows are ``kwarray.SlidingWindow(overlap=window_overlap, keepbound=True,
    allow_overshoot=True)``; ``aids`` are the annotations whose box touches the
    window (edges included); a window is positive when one of them is of a
    category of interest (default: any not in ``negative_classes``); a window
    covered more than ``ignore_coverage_thresh`` by one or by the union of
    'ignore' boxes is left out.
    """
    import kwarray
    import shapely
    dset = regions.sampler.dset
    names = {cid: cat["name"].lower() for cid, cat in dset.cats.items()}
    index, table = regions.isect_index, regions.table
    targets = []
    for img in range(len(table.images["gid"])) if gids is None else [table.image_row(g) for g in gids]:
        gid, dims = int(table.images["gid"][img]), regions._image_dims(img)
        wdims = dims if isinstance(window_dims, str) and window_dims == "full" else tuple(window_dims)
        slider = kwarray.SlidingWindow(dims, wdims, overlap=window_overlap, keepbound=True, allow_overshoot=True)
        for rows, cols in slider:
            box = [cols.start, rows.start, cols.stop, rows.stop]
            aids = index.overlapping_aids(gid, box)
            cats = [names.get(dset.anns[aid]["category_id"], "") for aid in aids]
            ignore = [aid for aid, name in zip(aids, cats) if name == "ignore"]
            if ignore_coverage_thresh and ignore:
                boxes = [shapely.box(*query_ltrb(dset.annots([aid]).boxes)) for aid in ignore]
                window = shapely.box(*box)
                covered = shapely.union_all(boxes).intersection(window).area / window.area
                if covered > ignore_coverage_thresh:
                    continue
            if classes_of_interest:
                positive = any(name in classes_of_interest for name in cats)
            else:
                positive = any(name not in negative_classes for name in cats)
            targets.append({"gid": gid, "slices": (rows, cols), "space_slice": (rows, cols), "aids": aids,
                            "label": "positive" if positive else "negative"})
    return grid_result(targets)


class DatasetNames:
    """ndsampler's counts and class lookups of ``self.dset`` (shared by the sampler and its regions).

    >>> from ndpatch.demo import kwcoco_demo
    >>> class Named(DatasetNames):
    ...     dset = kwcoco_demo("shapes2")
    >>> Named().n_images, Named().lookup_class_name(Named().lookup_class_id("star")), Named().BACKGROUND_CLASS_ID
    (2, 'star', 0)
    """

    @property
    def image_ids(self) -> list[int]:
        return sorted(self.dset.imgs)

    @property
    def n_images(self) -> int:
        return len(self.dset.imgs)

    @property
    def n_annots(self) -> int:
        return len(self.dset.anns)

    @property
    def n_categories(self) -> int:
        return len(self.dset.cats)

    @property
    def class_ids(self) -> list[int]:
        return list(self.dset.cats)

    @property
    def catgraph(self):
        """ndsampler's old name of ``classes``."""
        return self.classes

    @property
    def BACKGROUND_CLASS_ID(self) -> int:  # noqa: N802 (ndsampler's name)
        """The id of the category named 'background', else 0 (negatives' ``category_id``)."""
        return background_id(self.dset.dataset)

    def lookup_class_name(self, class_id: int) -> str:
        return self.dset.cats[class_id]["name"]

    def lookup_class_id(self, class_name: str) -> int:
        return self.dset.name_to_cat[class_name]["id"]


class RegionsAPI(DatasetNames):
    """ndsampler's ``CocoRegions`` names on :class:`~ndpatch.sampling.regions.Regions` (see the module doc)."""

    # -- the dataset ----------------------------------------------------------------------------
    @property
    def dset(self):
        return self.sampler.dset

    @property
    def workdir(self):
        return self.sampler.workdir

    @property
    def classes(self):
        return self.sampler.classes

    @property
    def hashid(self) -> str:
        """kwcoco's hash of the dataset's content (not of its pixels)."""
        if getattr(self.dset, "hashid", None) is None:
            self.dset._build_hashid(hash_pixels=False)
        return self.dset.hashid

    @property
    def targets(self) -> TargetsFrame:
        """The targets table: one row per annotation with a box (:class:`~ndpatch.sampling.table.TargetsFrame`)."""
        if getattr(self, "_frame", None) is None or self._frame_of is not self.table:
            self._frame, self._frame_of = TargetsFrame(self.table.columns), self.table
        return self._frame

    @property
    def n_positives(self) -> int:
        return len(self._pos_pool) if self._pos_pool is not None else len(self.targets["aid"])

    @property
    def n_negatives(self) -> int:
        return len(self._neg_pool) if self._neg_pool is not None else 0

    @property
    def n_samples(self) -> int:
        return self.n_positives + self.n_negatives

    # -- annotations in a region -----------------------------------------------------------------
    @property
    def isect_index(self) -> FrameIntersectionIndex:
        """Box queries on the annotations (:class:`~ndpatch.sampling.isect.FrameIntersectionIndex`)."""
        return FrameIntersectionIndex(self.table)

    def overlapping_aids(self, gid: int, region, visible_thresh: float = 0.0) -> list[int]:
        """Ids of the annotations of image ``gid`` whose box overlaps ``region`` (ndsampler's rule).

        ``visible_thresh`` drops those of which ``region`` covers no more than that fraction.
        """
        found, covered = self.isect_index.iooas(gid, region)
        if visible_thresh > 0:
            found = [aid for aid, fraction in zip(found, covered.tolist()) if fraction > visible_thresh]
        return found

    def get_segmentations(self, aids) -> list:
        """Each annotation's segmentation as a ``kwimage.MultiPolygon`` (None without one)."""
        import kwimage
        return [None if self.sampler.index.annotation(aid).get("segmentation") is None else
                kwimage.MultiPolygon.coerce(self.sampler.index.annotation(aid)["segmentation"]) for aid in aids]

    # -- ndsampler's pool builders ---------------------------------------------------------------
    def _missing_pool(self, index: int) -> MissingNegativePool:
        return MissingNegativePool(f"no preselected negatives to index ({index}): call preselect(n_neg=...) "
                                   f"(or regions._preselect_negatives) first")

    def _random_negatives(self, num: int, exact: bool = False, neg_anchors=None, window_size=None, rng=None,
                          thresh: float = 0.0):
        """``num`` negatives as a table (fewer when ``exact`` is False and no room is found).

        ``window_size`` is (width, height) (default: :meth:`negative_dims`). ndpatch's
        negatives meet no annotation, whatever ``thresh``.
        """
        import kwarray
        if neg_anchors is not None:
            raise TargetError("ndpatch sizes negatives by window_size=(width, height) or negative_dims(), "
                              "not by anchors")
        if window_size is not None:
            self.configure(window_dims=(int(window_size[1]), int(window_size[0])))
        gen = self._rng(rng)
        found = []
        for _ in range(int(num)):
            try:
                found.append(self.random_negative(gen))
            except SamplingError:
                if exact:
                    raise
                break
        columns = ["gid", "aid", "category_id", "cx", "cy", "width", "height", "img_width", "img_height"]
        return kwarray.DataFrameArray({key: np.array([-1 if key == "aid" else tr[key] for tr in found])
                                       for key in columns})

    def _preselect_positives(self, num=None, window_dims=None, rng=None, verbose=None) -> int:
        """Preselect ``num`` positives (default one epoch); returns how many."""
        return self.preselect(n_pos=num, n_neg=0, window_dims=window_dims, rng=rng, verbose=verbose or 0)[0]

    def _preselect_negatives(self, num: int, window_dims=None, thresh: float = 0.3, rng=None, verbose=None) -> int:
        """Preselect ``num`` negatives (keeping the positives' pool); returns how many.

        ndpatch's negatives meet no annotation, whatever ``thresh``.
        """
        if window_dims is not None:
            self.configure(window_dims=window_dims)
        gen = self._rng(rng)
        self._neg_pool = [self.random_negative(gen) for _ in range(int(num))]
        return len(self._neg_pool)


def video_time_stride(window_dims, window_overlap: float) -> int | None:
    """ndsampler's ``video_detection`` grids overlap in time too: the time stride for ``window_overlap``."""
    from ndpatch.sampling.geometry import overlap_stride
    return None if not window_overlap else overlap_stride(int(window_dims[0]), window_overlap)

