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
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kwcoco
import numpy as np

from ndpatch import remote
from ndpatch.cache.base import ImageSource
from ndpatch.errors import ChannelError, DatasetError, DatasetWarning

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
    """A ``CocoDataset`` from a dataset, a dict, or a path (kwcoco / MS-COCO json, ``.kwcoco.zip``), checked.

    Paths are read by kwcoco's own loader (zip bundles included); the
    dataset's folder becomes an absolute path. Every dataset is checked the
    same way (:func:`check_dataset`): duplicate image or annotation ids are
    refused, and a dataset without ``categories`` gets one per category id its
    annotations use (as kwcoco accepts such files, and torchgeo's NWPU VHR-10
    file is one), with a warning.

    Example:
        >>> dset = load_dataset({"images": [{"id": 1, "file_name": "a.tif"}],
        ...                      "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2]}],
        ...                      "categories": [{"id": 3, "name": "car"}]})
        >>> dset.n_images, dset.cats[3]["name"]
        (1, 'car')
        >>> load_dataset({"images": [{"id": 1, "file_name": "a.tif"}, {"id": 1, "file_name": "b.tif"}]})
        Traceback (most recent call last):
        ...
        ndpatch.errors.DatasetError: dataset ./data.kwcoco.json: image id 1 appears 2 times; ids must be unique
    """
    if isinstance(dset, kwcoco.CocoDataset):
        return check_dataset(dset)
    if isinstance(dset, dict):
        try:
            return check_dataset(_kwcoco(dset))
        except DatasetError:
            raise
        except Exception as err:
            raise DatasetError(f"invalid dataset dict: {err}") from err
    if isinstance(dset, (str, os.PathLike)):
        return check_dataset(_read_dataset(Path(dset)))
    raise DatasetError(f"cannot make a dataset from a {type(dset).__name__}")


def _read_dataset(path: Path) -> kwcoco.CocoDataset:
    """kwcoco's loader on ``path``, its errors said as what is wrong with the file."""
    if not path.is_file():
        raise DatasetError(f"dataset file does not exist: {path}")
    if path.suffix == ".zip" and not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: not a zip file (a .kwcoco.zip bundle is a zip holding one kwcoco json)")
    try:
        dataset = _kwcoco(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: malformed json: {err}") from err
    except Exception as err:  # kwcoco's errors for structures it cannot index vary
        if path.suffix == ".zip":
            raise DatasetError(f"{path}: cannot read the kwcoco zip bundle: {err}") from err
        raise DatasetError(f"{path}: not a COCO dataset (expected an object with an 'images' list): "
                           f"{type(err).__name__}: {err}") from err
    dataset.bundle_dpath = os.path.abspath(dataset.bundle_dpath or path.parent)
    return dataset


def _kwcoco(data: dict | str) -> kwcoco.CocoDataset:
    """``kwcoco.CocoDataset(data)``, without kwcoco's warnings about what :func:`check_dataset` says itself.

    Repeated ids (refused there) and, in a dataset without ``categories``,
    unknown category ids (given categories there) are not warned about twice.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = kwcoco.CocoDataset(data)
    ours = ["have the same id"] + (["references unknown category_id"] if "categories" not in dataset.dataset else [])
    for warning in caught:
        if not any(text in str(warning.message) for text in ours):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return dataset


def check_dataset(dset: kwcoco.CocoDataset) -> kwcoco.CocoDataset:
    """``dset`` itself, refused (DatasetError) for duplicate ids, given categories when it has none.

    Microseconds per record: the counts of kwcoco's index are compared with the
    records, and only a dataset that fails is searched for the repeated id.
    """
    data = dset.dataset
    if dset.index.imgs is None:  # made with autobuild=False
        dset._build_index()
    for key, index, name in (("images", dset.index.imgs, "image"), ("annotations", dset.index.anns, "annotation"),
                             ("videos", dset.index.videos, "video"), ("categories", dset.index.cats, "category")):
        records = data.get(key) or []
        if len(index) != len(records):
            ids = Counter(record.get("id") for record in records)
            repeated, count = ids.most_common(1)[0]
            raise DatasetError(f"dataset {dset.fpath}: {name} id {repeated} appears {count} times; ids must be unique")
    if "categories" not in data:
        used = sorted({ann["category_id"] for ann in data.get("annotations", []) if ann.get("category_id") is not None},
                      key=str)
        data["categories"] = []
        for cid in used:
            dset.add_category(name=str(cid), id=cid)
        if used:
            warnings.warn(f"dataset {dset.fpath} has no categories; its annotations' category ids "
                          f"{', '.join(map(str, used[:20]))}{' ...' if len(used) > 20 else ''} get categories "
                          "named by their id", DatasetWarning, stacklevel=3)
    return dset


def resolve_path(bundle_dpath: str, file_name: str) -> str:
    """An image path: URIs as GDAL opens them, GDAL virtual and absolute paths as given, others under the bundle.

    Example:
        >>> resolve_path("/data", "s3://bucket/a.tif"), resolve_path("/data", "img/a.tif")
        ('/vsis3/bucket/a.tif', '/data/img/a.tif')
    """
    file_name = os.fspath(file_name)   # kwcoco keeps a pathlib.Path a caller gave as is
    if remote.is_uri(file_name):
        return remote.gdal_path(file_name)
    if file_name.startswith("/vsi") or os.path.isabs(file_name):
        return file_name
    return os.path.normpath(os.path.join(bundle_dpath, file_name))


def rebased_files(record: dict, src_bundle: str, out_dir: str | os.PathLike) -> dict:
    """An image record whose relative file names point from ``out_dir`` to the same files.

    The image's ``file_name`` and those of its ``assets`` and kwcoco's legacy
    ``auxiliary`` lists are rebased; names :func:`resolve_path` keeps as given
    (absolute paths, GDAL virtual paths, URIs) are kept.
    (kwcoco's ``reroot`` would turn ``/vsizip/...`` and URIs into relative paths.)

    >>> rebased_files({"id": 1, "auxiliary": [{"file_name": "b1.tif"}, {"file_name": "/vsizip/x.zip/b2.tif"}]},
    ...               "/data", "/data/splits")["auxiliary"]
    [{'file_name': '../b1.tif'}, {'file_name': '/vsizip/x.zip/b2.tif'}]
    """
    def rebase(name: str) -> str:
        path = resolve_path(src_bundle, name)
        return name if path == name else os.path.relpath(path, out_dir)

    record = dict(record)
    if record.get("file_name"):
        record["file_name"] = rebase(record["file_name"])
    for key in ("assets", "auxiliary"):
        if record.get(key):
            record[key] = [{**a, "file_name": rebase(a["file_name"])} if a.get("file_name") else a
                           for a in record[key]]
    return record


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
