"""What a kwcoco / MS-COCO dataset says about its images, parsed: no pixels, no backend.

Loading a dataset (a ``CocoDataset``, a dict, or a json path), resolving file
names against the bundle, channel specs → names → band indices, and the files
of one image record with their warps. Everything above (the index, the image
record, georeferencing, video frames) builds on these.

Example:
    >>> img = {"id": 7, "width": 20, "height": 10, "assets": [
    ...     {"file_name": "b1.tif", "channels": "red|green"},
    ...     {"file_name": "b2.tif", "channels": "nir", "width": 10, "height": 5}]}
    >>> files = image_files(img, "/data")
    >>> [(f.source.path, f.source.channels, float(f.warp.matrix[0, 0])) for f in files]
    [('/data/b1.tif', ('red', 'green'), 1.0), ('/data/b2.tif', ('nir',), 2.0)]
    >>> channel_plan(files, "nir|red", "image 7")
    [(0, [0], [1]), (1, [0], [0])]
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kwcoco
import numpy as np

from ndpatch import remote
from ndpatch.cache.base import ImageSource
from ndpatch.errors import ChannelError, DatasetError

#: Channel names assumed for images whose record declares none, by band count.
DEFAULT_CHANNELS = {1: ("gray",), 3: ("r", "g", "b"), 4: ("r", "g", "b", "a")}
#: Channel names of label rasters (a mask asset: one class id per pixel), left out of ``im`` by default.
LABEL_CHANNELS = ("class_id",)


@dataclass(frozen=True)
class Asset:
    """One file of an image: its source and the warp from its pixels to image pixels."""

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


def resolve_path(bundle_dpath: str, file_name: str) -> str:
    """An image path: URIs as GDAL opens them, GDAL virtual and absolute paths as given, others under the bundle.

    Example:
        >>> resolve_path("/data", "s3://bucket/a.tif"), resolve_path("/data", "img/a.tif")
        ('/vsis3/bucket/a.tif', '/data/img/a.tif')
    """
    if remote.is_uri(file_name):
        return remote.gdal_path(file_name)
    if file_name.startswith("/vsi") or os.path.isabs(file_name):
        return file_name
    return os.path.normpath(os.path.join(bundle_dpath, file_name))


def as_affine(warp: Any):
    """A kwcoco warp record (None: the identity) as a ``kwimage.Affine``."""
    import kwimage
    return kwimage.Affine.eye() if warp is None else kwimage.Affine.coerce(warp)


def vid_from_img(img: dict) -> np.ndarray:
    """The 3×3 map from an image record's pixels to its video's (the identity outside a video)."""
    if img.get("video_id") is None or img.get("warp_img_to_vid") is None:
        return np.eye(3)
    return np.asarray(as_affine(img["warp_img_to_vid"]).matrix, dtype=np.float64)


def _asset_records(img: dict) -> list[dict]:
    return img.get("assets") or img.get("auxiliary") or []


def is_multi_file(img: dict) -> bool:
    """Whether a 2-D window of this image reads several files (no ``file_name``, several assets)."""
    return not img.get("file_name") and len(_asset_records(img)) > 1


def image_files(img: dict, bundle_dpath: str) -> tuple[Asset, ...]:
    """The files a 2-D window of image record ``img`` reads, each with its warp to image pixels.

    One file (warp: the identity) for an image with a ``file_name`` or a single
    asset; every asset for a multi-file image (each must name its channels; its
    warp is ``warp_aux_to_img``, else the size ratio to the image).
    """
    gid = img.get("id")
    if not is_multi_file(img):
        record = img
        if not img.get("file_name"):
            assets = _asset_records(img)
            if len(assets) != 1:
                raise DatasetError(f"image {gid} has no file_name and {len(assets)} assets; "
                                   "ndpatch reads single-file images and single-asset images")
            record = assets[0]
        return (Asset(_source(gid, record, bundle_dpath, img.get("channels")), as_affine(None)),)
    files = []
    for record in _asset_records(img):
        source = _source(gid, record, bundle_dpath, None)
        if source.channels is None:
            raise DatasetError(f"image {gid}: asset {source.path} declares no channels; every asset of a "
                               "multi-file image must name its channels")
        warp = record.get("warp_aux_to_img")
        if warp is None and record.get("width") and img.get("width"):
            warp = {"scale": (img["width"] / record["width"], img["height"] / record["height"])}
        files.append(Asset(source, as_affine(warp)))
    return tuple(files)


def frame_files(img: dict, bundle_dpath: str) -> tuple[Asset, ...]:
    """The files a video frame of image record ``img`` reads (kwcoco's view): ``file_name``, then every asset.

    Each warp is the file's declared ``warp_aux_to_img`` (the identity for ``file_name``).
    """
    records = [{"file_name": img["file_name"], "channels": img.get("channels")}] if img.get("file_name") else []
    records += _asset_records(img)
    if not records:
        raise DatasetError(f"image {img.get('id')} has no file_name and no assets")
    fallback = img.get("channels") if len(records) == 1 else None
    return tuple(Asset(_source(img.get("id"), record, bundle_dpath, fallback),
                       as_affine(record.get("warp_aux_to_img"))) for record in records)


def _source(gid: int, record: dict, bundle_dpath: str, fallback_channels: Any) -> ImageSource:
    channels = record.get("channels", fallback_channels)
    return ImageSource(gid=gid, path=resolve_path(bundle_dpath, record["file_name"]),
                       channels=None if channels is None else channel_names(channels),
                       bundle_dpath=bundle_dpath)


def band_indices(channels: Any, names: tuple[str, ...] | None, n_bands: int, what: str) -> list[int] | None:
    """0-based band indices for a channel request (names ``'r|g|b'``, a list, or indices); None = all.

    ``names`` are the file's channel names (None: :data:`DEFAULT_CHANNELS` by band
    count); ``what`` names the image in errors.

    >>> band_indices("r|b", None, 3, "image 1"), band_indices([2, "g"], None, 3, "image 1")
    ([0, 2], [2, 1])
    """
    if channels is None:
        return None
    names = names or DEFAULT_CHANNELS.get(n_bands)
    if isinstance(channels, str):
        channels = list(channel_names(channels))
    if isinstance(channels, (int, np.integer)):
        channels = [channels]
    bands = []
    for channel in channels:
        if isinstance(channel, (int, np.integer)):
            if not 0 <= channel < n_bands:
                raise ChannelError(f"{what} has {n_bands} bands; band index {channel} is out of range")
            bands.append(int(channel))
        elif names is not None and channel in names:
            bands.append(names.index(channel))
        else:
            raise ChannelError(f"{what} has no channel {channel!r}; "
                               f"it has {'|'.join(names) if names else f'{n_bands} unnamed bands'}")
    return bands


def channel_plan(files: tuple[Asset, ...], channels: Any, what: str) -> list[tuple[int, list[int], list[int]]]:
    """For a multi-file image: ``(file index, band indices, output positions)`` per file to read.

    ``channels`` is ``'red|green|nir'`` (names, any files), a list of names, or
    None for every channel that is not a label channel (``class_id``). A name
    several files have is read from the first.
    """
    names = [(k, b, name) for k, asset in enumerate(files) for b, name in enumerate(asset.source.channels)]
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
            raise ChannelError(f"{what} has no channel {name!r}; it has {'|'.join(n for _, _, n in names)}")
        k, b = where[name]
        bands, positions = plan.setdefault(k, ([], []))
        bands.append(b)
        positions.append(position)
    return [(k, bands, positions) for k, (bands, positions) in sorted(plan.items())]
