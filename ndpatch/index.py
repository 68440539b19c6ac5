"""The dataset index: a thin adapter over ``kwcoco.CocoDataset``.

It loads the dataset (a ``CocoDataset``, a kwcoco json or a plain MS-COCO json),
resolves each image's raster path against the bundle directory, maps channel
names to band indices, and keeps per-image annotation arrays for fast window
queries. Unknown ids and unreadable datasets raise ndpatch errors that name
them.

Example:
    >>> from ndpatch.demo import kwcoco_demo
    >>> index = DatasetIndex(kwcoco_demo("shapes2"))
    >>> index.source(1).path.endswith(".png")
    True
    >>> index.bands_for(1, "r|b", n_bands=3)
    [0, 2]
"""
from __future__ import annotations

import functools
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kwcoco
import numpy as np

from ndpatch.annots import ImageAnnots
from ndpatch.cache.base import ImageSource
from ndpatch.errors import ChannelError, DatasetError, UnknownAnnotationError, UnknownImageError

#: Channel names assumed for images whose record declares none, by band count.
DEFAULT_CHANNELS = {1: ("gray",), 3: ("r", "g", "b"), 4: ("r", "g", "b", "a")}
#: Channel names of label rasters (a mask asset: one class id per pixel), left out of ``im`` by default.
LABEL_CHANNELS = ("class_id",)


@dataclass(frozen=True)
class Asset:
    """One file of a multi-file image: its source and the warp from its pixels to image pixels."""

    source: ImageSource
    warp: Any  # kwimage.Affine, asset pixel -> image pixel




def channel_names(spec: str | list[str]) -> tuple[str, ...]:
    """The channel names of a kwcoco channel spec (``'r|g|b'``, ``'rgb'``, ``'B1|B8'`` ...).

    Example:
        >>> channel_names("rgb"), channel_names("red|nir"), channel_names(["a", "b"])
        (('r', 'g', 'b'), ('red', 'nir'), ('a', 'b'))
    """
    return _parse_channels(spec) if isinstance(spec, str) else tuple(str(name) for name in spec)


@functools.lru_cache(maxsize=1024)
def _parse_channels(spec: str) -> tuple[str, ...]:
    from delayed_image.channel_spec import FusedChannelSpec  # imported on first use: ~0.5 s
    return tuple(FusedChannelSpec.coerce(spec).normalize().as_list())


def load_dataset(dset: Any) -> kwcoco.CocoDataset:
    """A ``CocoDataset`` from a dataset, a dict, or a path to a kwcoco / MS-COCO json."""
    if isinstance(dset, kwcoco.CocoDataset):
        return dset
    if isinstance(dset, dict):
        try:
            return kwcoco.CocoDataset(dset)
        except Exception as err:
            raise DatasetError(f"invalid dataset dict: {err}") from err
    if isinstance(dset, (str, os.PathLike)):
        path = Path(dset)
        if not path.is_file():
            raise DatasetError(f"dataset file does not exist: {path}")
        try:
            with open(path) as file:
                data = json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: malformed json: {err}") from err
        if not isinstance(data, dict) or not isinstance(data.get("images", []), list):
            raise DatasetError(f"{path}: not a COCO dataset (expected an object with an 'images' list)")
        try:
            dataset = kwcoco.CocoDataset(data, bundle_dpath=str(path.parent.resolve()))
            dataset.fpath = str(path)
            return dataset
        except Exception as err:
            raise DatasetError(f"{path}: invalid COCO dataset: {err}") from err
    raise DatasetError(f"cannot make a dataset from a {type(dset).__name__}")


class DatasetIndex:
    """Image, asset and annotation lookups over one ``CocoDataset``."""

    def __init__(self, dset: Any, annots_cache_size: int = 1024):
        self.dset = load_dataset(dset)
        self._annots: OrderedDict[int, ImageAnnots] = OrderedDict()
        self._annots_cache_size = annots_cache_size

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

    def source(self, gid: int) -> ImageSource:
        """Where the pixels of image ``gid`` are, and its declared channel names."""
        img = self.image(gid)
        record = img
        if not img.get("file_name"):
            assets = img.get("assets") or img.get("auxiliary") or []
            if len(assets) != 1:
                raise DatasetError(f"image {gid} has no file_name and {len(assets)} assets; "
                                   "ndpatch reads single-file images and single-asset images")
            record = assets[0]
        path = resolve_path(self.bundle_dpath, record["file_name"])
        channels = record.get("channels", img.get("channels"))
        if channels is not None:
            channels = channel_names(channels)
        return ImageSource(gid=gid, path=path, channels=channels, bundle_dpath=self.bundle_dpath)

    def is_multi_asset(self, gid: int) -> bool:
        """Whether image ``gid`` is made of asset files (no single ``file_name``)."""
        img = self.image(gid)
        return not img.get("file_name") and len(img.get("assets") or img.get("auxiliary") or []) > 1

    def sources(self, gid: int) -> list[ImageSource]:
        """The sources of every file of image ``gid`` (one for a single-file image)."""
        return [asset.source for asset in self.assets(gid)]

    def assets(self, gid: int) -> list[Asset]:
        """Every file of image ``gid`` with its channels and its warp to image pixels."""
        import kwimage
        img = self.image(gid)
        if not self.is_multi_asset(gid):
            return [Asset(self.source(gid), kwimage.Affine.eye())]
        assets = []
        for record in img.get("assets") or img.get("auxiliary"):
            path = resolve_path(self.bundle_dpath, record["file_name"])
            if record.get("channels") is None:
                raise DatasetError(f"image {gid}: asset {path} declares no channels; every asset of a "
                                   "multi-file image must name its channels")
            channels = channel_names(record["channels"])
            warp = record.get("warp_aux_to_img")
            if warp is None and record.get("width") and img.get("width"):
                warp = {"scale": (img["width"] / record["width"], img["height"] / record["height"])}
            assets.append(Asset(ImageSource(gid=gid, path=path, channels=channels, bundle_dpath=self.bundle_dpath),
                                kwimage.Affine.coerce(warp) if warp is not None else kwimage.Affine.eye()))
        return assets

    def channel_plan(self, gid: int, channels: Any) -> list[tuple[Asset, list[int], list[int]]]:
        """For a multi-file image: ``(asset, band indices, output positions)`` per asset to read.

        ``channels`` is ``'red|green|nir'`` (names, any assets), a list of names,
        or None for every channel that is not a label channel (``class_id``).
        """
        assets = self.assets(gid)
        names = [(k, b, name) for k, asset in enumerate(assets) for b, name in enumerate(asset.source.channels)]
        if channels is None:
            wanted = [name for _, _, name in names if name not in LABEL_CHANNELS]
        elif isinstance(channels, str):
            wanted = list(channel_names(channels))
        else:
            wanted = list(channels)
        where = {name: (k, b) for k, b, name in reversed(names)}
        plan: dict[int, tuple[list[int], list[int]]] = {}
        for position, name in enumerate(wanted):
            if name not in where:
                raise ChannelError(f"image {gid} ({assets[0].source.path}, ...) has no channel {name!r}; "
                                   f"it has {'|'.join(n for _, _, n in names)}")
            k, b = where[name]
            bands, positions = plan.setdefault(k, ([], []))
            bands.append(b)
            positions.append(position)
        return [(assets[k], bands, positions) for k, (bands, positions) in sorted(plan.items())]

    def georef(self, gid: int):
        """Image ``gid``'s pixel → world georeferencing (:class:`ndpatch.geo.Georef`), or None."""
        from ndpatch.geo import raster_georef
        for asset in self.assets(gid):
            georef = raster_georef(asset.source.path, asset.source.describe())
            if georef is not None:
                return georef.warped(asset.warp.inv())
        return None

    def bands_for(self, gid: int, channels: Any, n_bands: int,
                  declared: tuple[str, ...] | None = None) -> list[int] | None:
        """0-based band indices for a channel request (names ``'r|g|b'`` or indices); None = all."""
        if channels is None:
            return None
        if declared is None:
            declared = self.source(gid).channels
        names = declared or DEFAULT_CHANNELS.get(n_bands)
        if isinstance(channels, str):
            channels = list(channel_names(channels))
        if isinstance(channels, (int, np.integer)):
            channels = [channels]
        bands = []
        for channel in channels:
            if isinstance(channel, (int, np.integer)):
                if not 0 <= channel < n_bands:
                    raise ChannelError(f"image {gid} ({self.source(gid).path}) has {n_bands} bands; "
                                       f"band index {channel} is out of range")
                bands.append(int(channel))
            elif names is not None and channel in names:
                bands.append(names.index(channel))
            else:
                raise ChannelError(f"image {gid} ({self.source(gid).path}) has no channel {channel!r}; "
                                   f"it has {'|'.join(names) if names else f'{n_bands} unnamed bands'}")
        return bands

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


def resolve_path(bundle_dpath: str, file_name: str) -> str:
    """An image path: GDAL virtual paths and absolute paths as given, others under the bundle."""
    if file_name.startswith("/vsi") or os.path.isabs(file_name):
        return file_name
    return os.path.normpath(os.path.join(bundle_dpath, file_name))
