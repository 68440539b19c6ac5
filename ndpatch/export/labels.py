"""The label map of a chip: a window of the image's raster label asset, else its rasterised annotations.

An image carries a raster label asset when one of its ``assets`` declares the
channel :data:`LABEL_CHANNEL` (``'class_id'``), as ``ndpatch import-pairs``
writes them. Its window is read with the same boundless semantics as image
pixels (outside the raster: 0, background): beside a ``file_name`` (the
import-pairs layout) on the image's pixel grid; in a multi-file image through
``load_sample`` like any other channel, on the image grid with nearest-neighbour
resampling. Otherwise the label map is :func:`ndpatch.masks.class_map` of the
window's annotations.

Example:
    >>> label_asset_path({"file_name": "a.tif", "assets": [
    ...     {"file_name": "a.tif", "channels": "r|g|b"},
    ...     {"file_name": "labels/a.tif", "channels": "class_id"}]}, "/data")
    '/data/labels/a.tif'
"""
from __future__ import annotations

import numpy as np

from ndpatch.cache.base import ImageSource, read_window
from ndpatch.cache.direct import DirectBackend, entry_from_raster
from ndpatch.index import resolve_path
from ndpatch.masks import class_map

#: The channel name that marks an asset as a single-band class-id raster.
LABEL_CHANNEL = "class_id"

_DIRECT = DirectBackend()


def label_asset_path(image: dict, bundle_dpath: str) -> str | None:
    """The resolved path of the image's raster label asset, or None when it has none."""
    for asset in image.get("assets") or ():
        if asset.get("channels") == LABEL_CHANNEL:
            return resolve_path(bundle_dpath, asset["file_name"])
    return None


def read_label_window(gid: int, path: str, rows: slice, cols: slice, dtype: np.dtype) -> np.ndarray:
    """Window (rows, cols) of a label raster as an (H, W) array; 0 outside the raster."""
    source = ImageSource(gid=gid, path=path, channels=(LABEL_CHANNEL,))
    entry = entry_from_raster(source, path, kind="label")
    return read_window(_DIRECT, entry, rows, cols, [0], fill=0, dtype=dtype)[..., 0]


def chip_label(sampler, gid: int, rows: slice, cols: slice, annots, dtype: np.dtype) -> np.ndarray:
    """The (H, W) label map of one window of image ``gid``."""
    image = sampler.dset.imgs[gid]
    path = label_asset_path(image, str(sampler.dset.bundle_dpath))
    if path is None:
        return class_map(annots, (rows.stop - rows.start, cols.stop - cols.start), dtype)
    if image.get("file_name"):
        return read_label_window(gid, path, rows, cols, dtype)
    target = {"gid": gid, "space_slice": (rows, cols), "channels": LABEL_CHANNEL, "interpolation": "nearest",
              "fill": 0, "dtype": dtype}
    return sampler.load_sample(target, with_annots=False)["im"][..., 0]
