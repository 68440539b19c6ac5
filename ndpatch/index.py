"""The dataset index: a thin adapter over ``kwcoco.CocoDataset``.

Lookups by id (images, annotations, videos, with errors that name them),
each image's files as the dataset declares them (memoised: parsed once), frame
orders of videos, and per-image annotation arrays for fast window queries.
Nothing here opens a pixel file except :meth:`DatasetIndex.georef`; what an
image *is* on disk (size, dtype, nodata, entries) is the image record's
(:mod:`ndpatch.record`). The record parsing itself is :mod:`ndpatch.dataset`'s.

Example:
    >>> from ndpatch.demo import kwcoco_demo
    >>> index = DatasetIndex(kwcoco_demo("shapes2"))
    >>> index.source(1).path.endswith(".png")
    True
    >>> index.bands_for(1, "r|b", n_bands=3)
    [0, 2]
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Callable

from ndpatch.annots import ImageAnnots
from ndpatch.cache.base import ImageSource
from ndpatch.dataset import (DEFAULT_CHANNELS, LABEL_CHANNELS, Asset, band_indices, channel_names,  # noqa: F401
                             frame_files, image_files, is_multi_file, load_dataset, resolve_path)
from ndpatch.dataset import channel_plan as file_channel_plan
from ndpatch.errors import (DatasetError, DatasetWarning, UnknownAnnotationError, UnknownImageError,
                            UnknownVideoError)
from ndpatch.geo import Georef, files_georef


class DatasetIndex:
    """Image, file, video and annotation lookups over one ``CocoDataset``."""

    def __init__(self, dset: Any, annots_cache_size: int = 1024):
        self.dset = load_dataset(dset)
        self._annots: OrderedDict[int, ImageAnnots] = OrderedDict()
        self._annots_cache_size = annots_cache_size
        self._files: dict[int, tuple[Asset, ...]] = {}
        self._frame_files: dict[int, tuple[Asset, ...]] = {}
        self._orders: dict[int, list[int]] = {}
        self._derived: dict[str, Any] = {}
        self._dims_warned: set[int] = set()

    @property
    def bundle_dpath(self) -> str:
        return str(self.dset.bundle_dpath)

    def image(self, gid: int) -> dict:
        """The image record; unknown ids raise UnknownImageError."""
        try:
            return self.dset.index.imgs[gid]
        except (KeyError, TypeError):
            raise UnknownImageError(f"unknown image id {gid!r} in dataset {self.dset.fpath}") from None

    def annotation(self, aid: int) -> dict:
        """The annotation record; unknown ids raise UnknownAnnotationError."""
        try:
            return self.dset.index.anns[aid]
        except (KeyError, TypeError):
            raise UnknownAnnotationError(f"unknown annotation id {aid!r} in dataset {self.dset.fpath}") from None

    def annotation_box(self, aid: int) -> tuple[int, float, float, float, float]:
        """``(gid, x, y, w, h)`` of an annotation's box."""
        ann = self.annotation(aid)
        gid = ann["image_id"]
        boxes = self.image_annots(gid)
        x, y, w, h = boxes.boxes[boxes.position(aid)]
        return gid, float(x), float(y), float(w), float(h)

    def image_dims(self, gid: int) -> tuple[int, int] | None:
        """(height, width) as the record says, or None when it does not say."""
        img = self.image(gid)
        if img.get("height") is None or img.get("width") is None:
            return None
        return int(img["height"]), int(img["width"])

    def check_file_dims(self, gid: int, file_dims: tuple[int, int]) -> None:
        """Warn (once per image) when the record's width/height disagree with its file's; reads use the file's.

        Example:
            >>> import warnings
            >>> index = DatasetIndex({"images": [{"id": 1, "file_name": "a.tif", "width": 8, "height": 6}]})
            >>> with warnings.catch_warnings(record=True) as caught:
            ...     warnings.simplefilter("always")
            ...     index.check_file_dims(1, (6, 8)); index.check_file_dims(1, (60, 80)); index.check_file_dims(1, (60, 80))
            >>> print(*[w.message for w in caught])
            image 1 (a.tif): the dataset says it is 8x6 (width x height) but the file is 80x60; ndpatch reads the file's size (sampling strategies place windows by the dataset's: correct its width and height)
        """
        declared = self.image_dims(gid)
        if declared is None or tuple(declared) == tuple(file_dims) or gid in self._dims_warned:
            return
        self._dims_warned.add(gid)
        warnings.warn(f"{self.describe(gid)}: the dataset says it is {declared[1]}x{declared[0]} (width x height) "
                      f"but the file is {file_dims[1]}x{file_dims[0]}; ndpatch reads the file's size (sampling strategies "
                      "place windows by the dataset's: correct its width and height)",
                      DatasetWarning, stacklevel=3)

    # -- files -------------------------------------------------------------------------
    def files(self, gid: int) -> tuple[Asset, ...]:
        """The files a 2-D window of image ``gid`` reads, with their warps (parsed once)."""
        files = self._files.get(gid)
        if files is None:
            files = self._files[gid] = image_files(self.image(gid), self.bundle_dpath)
        return files

    def frame_files(self, gid: int) -> tuple[Asset, ...]:
        """The files a video frame of image ``gid`` reads: ``file_name`` and every asset (parsed once)."""
        files = self._frame_files.get(gid)
        if files is None:
            files = self._frame_files[gid] = frame_files(self.image(gid), self.bundle_dpath)
        return files

    def source(self, gid: int) -> ImageSource:
        """Where the pixels of single-file image ``gid`` are, and its declared channel names."""
        if self.is_multi_asset(gid):
            n = len(self.files(gid))
            raise DatasetError(f"image {gid} has no file_name and {n} assets; "
                               "ndpatch reads single-file images and single-asset images")
        return self.files(gid)[0].source

    def describe(self, gid: int) -> str:
        """``image <gid> (<path>, ...)``: the prefix of errors about image ``gid`` (opens nothing)."""
        for files in (self.files, self.frame_files):
            try:
                return f"image {gid} ({', '.join(asset.source.path for asset in files(gid))})"
            except DatasetError:
                continue
        return f"image {gid}"

    def is_multi_asset(self, gid: int) -> bool:
        """Whether image ``gid`` is made of asset files (no single ``file_name``)."""
        return is_multi_file(self.image(gid))

    def sources(self, gid: int) -> list[ImageSource]:
        """The sources of every file of image ``gid`` (one for a single-file image)."""
        return [asset.source for asset in self.files(gid)]

    def assets(self, gid: int) -> list[Asset]:
        """Every file of image ``gid`` with its channels and its warp to image pixels."""
        return list(self.files(gid))

    def channel_plan(self, gid: int, channels: Any) -> list[tuple[Asset, list[int], list[int]]]:
        """For a multi-file image: ``(asset, band indices, output positions)`` per asset to read.

        ``channels`` is ``'red|green|nir'`` (names, any assets), a list of names,
        or None for every channel that is not a label channel (``class_id``).
        """
        files = self.files(gid)
        what = f"image {gid} ({files[0].source.path}, ...)"
        return [(files[k], bands, positions) for k, bands, positions in file_channel_plan(files, channels, what)]

    def georef(self, gid: int, allow_vrt: bool = False) -> Georef | None:
        """Image ``gid``'s pixel → world georeferencing read from its files' headers, or None.

        Files are opened as a backend with ``allow_vrt`` opens them. A sampler
        takes it from its image records (their cache entries) instead.
        """
        return files_georef(self.files(gid), allow_vrt)

    def bands_for(self, gid: int, channels: Any, n_bands: int,
                  declared: tuple[str, ...] | None = None) -> list[int] | None:
        """0-based band indices for a channel request (names ``'r|g|b'`` or indices); None = all."""
        source = self.source(gid)
        return band_indices(channels, declared if declared is not None else source.channels, n_bands,
                            source.describe())

    # -- videos -------------------------------------------------------------------------
    def video(self, vidid: int) -> dict:
        """The video record; unknown ids raise UnknownVideoError."""
        try:
            return self.dset.index.videos[vidid]
        except (KeyError, TypeError):
            raise UnknownVideoError(f"unknown video id {vidid!r} in dataset {self.dset.fpath}") from None

    def frame_order(self, vidid: int) -> list[int]:
        """The image ids of a video, by frame index (memoised)."""
        gids = self._orders.get(vidid)
        if gids is None:
            self.video(vidid)
            imgs = self.dset.index.imgs
            gids = sorted(self.dset.index.vidid_to_gids.get(vidid, ()),
                          key=lambda gid: (imgs[gid].get("frame_index", 0), gid))
            self._orders[vidid] = gids
        return gids

    def derived(self, name: str, build: Callable[["DatasetIndex"], Any]) -> Any:
        """A table derived from the dataset alone (e.g. the video table): ``build(self)`` once, then kept."""
        if name not in self._derived:
            self._derived[name] = build(self)
        return self._derived[name]

    # -- annotations ----------------------------------------------------------------------
    def image_annots(self, gid: int) -> ImageAnnots:
        """The annotation arrays of one image (cached, least recently used dropped)."""
        cached = self._annots.get(gid)
        if cached is not None:
            self._annots.move_to_end(gid)
            return cached
        self.image(gid)
        anns = [self.dset.index.anns[aid] for aid in sorted(self.dset.index.gid_to_aids.get(gid, ()))]
        cached = ImageAnnots.from_coco(anns, self.dset)
        self._annots[gid] = cached
        if len(self._annots) > self._annots_cache_size:
            self._annots.popitem(last=False)
        return cached

    def __getstate__(self) -> dict:
        return {"dset": self.dset, "annots_cache_size": self._annots_cache_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["dset"], state["annots_cache_size"])
