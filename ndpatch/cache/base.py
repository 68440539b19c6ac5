"""The protocol every pixel backend follows, and the padded window read built on it.

A backend turns an :class:`ImageSource` into a :class:`CacheEntry` once
(``ensure``: open the source, or convert it into a cache file) and then reads
in-bounds rectangles of that entry into caller-provided arrays
(``read_into``). Everything about windows that extend past the image (fill,
padding, channel selection, dtype) lives here, once, in :func:`read_window`.

Example:
    >>> import numpy as np
    >>> entry = CacheEntry(gid=1, source="mem", path="mem", kind="test", height=2, width=2,
    ...                    bands=1, dtype=np.dtype("uint8"), nodata=None, band_names=("gray",))
    >>> class Ones:
    ...     def read_into(self, entry, rows, cols, bands, out):
    ...         out[...] = 1
    >>> read_window(Ones(), entry, slice(-1, 2), slice(0, 3), None, fill=None)[..., 0]
    array([[0, 0, 0],
           [1, 1, 0],
           [1, 1, 0]], dtype=uint8)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ndpatch.errors import TargetError
from ndpatch.target import clip_window


@dataclass(frozen=True, slots=True)
class ImageSource:
    """Where an image's pixels come from, as the dataset index resolved it."""

    gid: int
    path: str
    channels: tuple[str, ...] | None = None
    bundle_dpath: str | None = None  # the dataset's folder: what a source may reference

    def describe(self) -> str:
        """``image <gid> (<path>)``, the prefix of every error about this image."""
        return f"image {self.gid} ({self.path})"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A readable form of one image: the source itself or a converted cache file."""

    gid: int
    source: str
    path: str
    kind: str
    height: int
    width: int
    bands: int
    dtype: np.dtype
    nodata: float | None
    band_names: tuple[str, ...]
    geotransform: tuple[float, ...] | None = None
    crs_wkt: str | None = None
    identity: tuple | None = None  # gdalio.file_identity(path) when the entry was resolved
    meta: dict = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        return f"image {self.gid} ({self.source})"


class Backend(Protocol):
    """What the sampler needs from a pixel backend."""

    name: str

    def ensure(self, source: ImageSource) -> CacheEntry:
        """Make ``source`` readable (converting it on first touch) and describe it."""

    def read_into(self, entry: CacheEntry, rows: slice, cols: slice,
                  bands: list[int] | None, out: np.ndarray) -> None:
        """Copy the in-bounds rectangle ``rows × cols`` (selected ``bands``) into ``out``."""


def fill_value(entry: CacheEntry, fill: float | None, dtype: np.dtype) -> float:
    """The value for pixels outside the image: the caller's, else the source nodata, else 0."""
    value = fill if fill is not None else entry.nodata if entry.nodata is not None else 0
    if math.isnan(value) and dtype.kind != "f":
        raise TargetError(f"{entry.describe()}: a NaN fill needs a float dtype, not {dtype}")
    return value


def read_window(backend: Backend, entry: CacheEntry, rows: slice, cols: slice,
                bands: list[int] | None, fill: float | None,
                dtype: np.dtype | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Read a window that may extend past the image, padded with the fill value.

    A NaN ``fill`` (target ``nodata='float'``) also turns the source's nodata
    pixels into NaN.

    Returns an H×W×C array (``out`` when given), writable and C-contiguous,
    in the entry's dtype unless ``dtype`` is given.
    """
    height = rows.stop - rows.start
    width = cols.stop - cols.start
    n_bands = entry.bands if bands is None else len(bands)
    dtype = entry.dtype if dtype is None else np.dtype(dtype)
    shape = (height, width, n_bands)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise TargetError(f"{entry.describe()}: out buffer is {out.shape} {out.dtype}, "
                          f"the window needs {shape} {dtype}")
    inner_rows, inner_cols = clip_window(rows, cols, entry.height, entry.width)
    r0 = inner_rows.start - rows.start
    c0 = inner_cols.start - cols.start
    r1 = r0 + inner_rows.stop - inner_rows.start
    c1 = c0 + inner_cols.stop - inner_cols.start
    if r1 - r0 < height or c1 - c0 < width:
        value = fill_value(entry, fill, dtype)
        out[:r0] = value
        out[r1:] = value
        out[r0:r1, :c0] = value
        out[r0:r1, c1:] = value
    if r1 > r0 and c1 > c0:
        inner = out[r0:r1, c0:c1]
        backend.read_into(entry, inner_rows, inner_cols, bands, inner)
        if fill is not None and math.isnan(fill) and entry.nodata is not None:
            inner[inner == entry.nodata] = np.nan
    return out
