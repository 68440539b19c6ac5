"""The protocol every pixel backend follows, and the padded window read built on it.

A backend turns an :class:`ImageSource` into a :class:`CacheEntry` once
(``ensure``: open the source, or convert it into a cache file) and then reads
in-bounds rectangles of that entry into caller-provided arrays
(``read_into``), and the GDAL mask values of such rectangles
(``read_mask_into``; :mod:`ndpatch.cache.validity` builds valid-pixel masks
on it). Everything about windows that extend past the image (fill, padding,
channel selection, dtype conversion) lives here, once, in :func:`read_window`.

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

from ndpatch import remote
from ndpatch.cache.casting import cast_into, cast_scalar, reads_exactly, served_dtype
from ndpatch.errors import TargetError
from ndpatch.target import clip_window

#: Valid-pixel mask kinds (GDAL's ``GetMaskFlags`` of band 1): every pixel valid; pixels whose
#: bands all equal the nodata value are invalid; GDAL's mask band, from an alpha band, a
#: per-dataset mask (internal or ``.msk``) or a mask of band 1 only.
MASK_KINDS = ("all_valid", "nodata", "alpha", "per_dataset", "per_band")


@dataclass(frozen=True, slots=True)
class ImageSource:
    """Where an image's pixels come from, as the dataset index resolved it."""

    gid: int
    path: str
    channels: tuple[str, ...] | None = None
    bundle_dpath: str | None = None  # the dataset's folder: what a source may reference

    def describe(self) -> str:
        """``image <gid> (<path or URI>)``, the prefix of every error about this image."""
        return f"image {self.gid} ({remote.display(self.path)})"

    __repr__ = remote.redacted_repr  # a URL's user, password and query values never show


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A readable form of one image: the source itself or a converted cache file."""

    gid: int
    source: str  # how the source is named in messages (ndpatch.remote.display of its path)
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
    mask: str | None = None  # one of MASK_KINDS; None: "nodata" when there is one, else "all_valid"

    def __post_init__(self) -> None:
        if self.mask is None:
            object.__setattr__(self, "mask", "all_valid" if self.nodata is None else "nodata")
        elif self.mask not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {self.mask!r}; expected one of {MASK_KINDS}")

    def describe(self) -> str:
        return f"image {self.gid} ({self.source})"

    __repr__ = remote.redacted_repr


class Backend(Protocol):
    """What the sampler needs from a pixel backend."""

    name: str

    def ensure(self, source: ImageSource) -> CacheEntry:
        """Make ``source`` readable (converting it on first touch) and describe it."""

    def read_into(self, entry: CacheEntry, rows: slice, cols: slice,
                  bands: list[int] | None, out: np.ndarray) -> None:
        """Copy the in-bounds rectangle ``rows × cols`` (selected ``bands``) into ``out``.

        ``out`` has the entry's dtype, or one :func:`~ndpatch.cache.casting.reads_exactly` allows.
        """

    # Optional: ``array(entry)`` returns the entry's H×W×C pixels as an in-memory (mapped) array,
    # or None; batches then copy windows out of it directly (ndpatch.batch).

    def read_mask_into(self, entry: CacheEntry, rows: slice, cols: slice, out: np.ndarray) -> None:
        """Copy GDAL's mask band values (uint8, 0 = invalid) of an in-bounds rectangle into ``out``.

        Called for entries whose ``mask`` is ``alpha``, ``per_dataset`` or ``per_band``.
        """


def fill_value(entry: CacheEntry, fill: float | None, dtype: np.dtype) -> float:
    """The value for pixels outside the image: the caller's, else the source nodata, else 0.

    The source's nodata is converted to ``dtype`` like its pixels are (int16
    -7 read as uint8 pads with 0); a caller's fill must be a ``dtype`` value.

    Example:
        >>> entry = CacheEntry(1, "a.tif", "a.tif", "test", 4, 4, 1, np.dtype("int16"), -7, ("",))
        >>> fill_value(entry, None, np.dtype("int16")), fill_value(entry, None, np.dtype("uint8"))
        (-7, 0)
        >>> fill_value(entry, 300, np.dtype("uint8"))
        Traceback (most recent call last):
        ...
        ndpatch.errors.TargetError: image 1 (a.tif): fill 300 is not a uint8 value
    """
    if fill is None:
        if entry.nodata is None:
            return 0
        return entry.nodata if dtype == entry.dtype else cast_scalar(entry.nodata, dtype)
    if math.isnan(fill) and dtype.kind != "f":
        raise TargetError(f"{entry.describe()}: a NaN fill needs a float dtype, not {dtype}")
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        if not float(fill).is_integer() or not limits.min <= fill <= limits.max:
            raise TargetError(f"{entry.describe()}: fill {fill} is not a {dtype} value")
    elif dtype.kind == "f" and math.isfinite(fill) and abs(fill) > np.finfo(dtype).max:
        raise TargetError(f"{entry.describe()}: fill {fill} is beyond the range of {dtype}")
    return fill


def read_window(backend: Backend, entry: CacheEntry, rows: slice, cols: slice,
                bands: list[int] | None, fill: float | None,
                dtype: np.dtype | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Read a window that may extend past the image, padded with the fill value.

    A NaN ``fill`` (target ``nodata='float'``) also turns the source's nodata
    pixels into NaN. Another ``dtype`` converts pixels by GDAL's saturating
    rule (:mod:`ndpatch.cache.casting`), the same on every backend.

    Returns an H×W×C array (``out`` when given), writable and C-contiguous,
    in the entry's dtype unless ``dtype`` is given.
    """
    height = rows.stop - rows.start
    width = cols.stop - cols.start
    n_bands = entry.bands if bands is None else len(bands)
    dtype = entry.dtype if dtype is None or dtype == entry.dtype else served_dtype(dtype)
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
        if reads_exactly(entry.dtype, dtype):
            values = inner
            backend.read_into(entry, inner_rows, inner_cols, bands, inner)
        else:
            values = np.empty(inner.shape, entry.dtype)
            backend.read_into(entry, inner_rows, inner_cols, bands, values)
            cast_into(inner, values)
        if fill is not None and math.isnan(fill) and entry.nodata is not None:
            inner[values == entry.nodata] = np.nan
    return out
