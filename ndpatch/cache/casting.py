"""One rule for serving pixels in another dtype, on every backend: GDAL's saturating conversion.

A target's ``dtype`` converts each pixel the way GDAL's ``RasterIO`` converts
into a buffer of another type (``GDALCopyWords``), so a window reads the same
from the source, an npy memmap or a COG:

* integer → integer: values outside the destination's range **saturate** to
  its minimum or maximum (uint16 22721 → uint8 255, int16 -7 → uint8 0);
* float → integer: rounded **half away from zero** (0.5 → 1, 2.5 → 3,
  -1.5 → -2; computed as ``trunc(x ± 0.5)`` in double precision), then
  saturated; ±inf saturate; **NaN becomes 0**;
* float64 → float32 and integer → float: the nearest representable value
  (beyond float32's range: ±inf);
* widening conversions (uint8 → float32, int16 → int32 ...) are exact.

GDAL 3.6 itself departs from its rule in a few corners, and ndpatch applies
the rule there too: it has no int8 type (a read into an int8 buffer wraps
uint8 values: 255 → -1), its float → 64-bit integer conversion wraps values
beyond the range,
NaN read from float32 into int16/int32/int64 may give the type's minimum,
and some of its float32 paths add 0.5 in single precision (so 0.49999997
rounds to 1 there, to 0 here).

Example:
    >>> import numpy as np
    >>> out = np.empty(6, np.uint8)
    >>> cast_into(out, np.array([22721, 255, 0, 300, 7, 65535], np.uint16))
    >>> out
    array([255, 255,   0, 255,   7, 255], dtype=uint8)
    >>> out = np.empty(6, np.int8)
    >>> cast_into(out, np.array([0.5, -1.5, 2.5, np.nan, np.inf, -1e9], np.float32))
    >>> out
    array([   1,   -2,    3,    0,  127, -128], dtype=int8)
"""
from __future__ import annotations

import numpy as np

from ndpatch.errors import TargetError

#: The dtypes ndpatch reads and converts pixels into.
SERVED_DTYPES = tuple(np.dtype(name) for name in (
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"))
#: The dtypes GDAL 3.6 reads into natively (it has no int8).
GDAL_DTYPES = frozenset(SERVED_DTYPES) - {np.dtype("int8")}


def served_dtype(dtype) -> np.dtype:
    """``dtype`` as a numpy dtype, or TargetError when ndpatch does not serve it.

    Example:
        >>> served_dtype("float32")
        dtype('float32')
        >>> served_dtype("float16")
        Traceback (most recent call last):
        ...
        ndpatch.errors.TargetError: dtype float16 is not served; use one of uint8, int8, uint16, int16, uint32, int32, uint64, int64, float32, float64
    """
    try:
        found = np.dtype(dtype)
    except TypeError as err:
        raise TargetError(f"dtype {dtype!r} is not a numpy dtype: {err}") from None
    if found.newbyteorder("=") not in SERVED_DTYPES:
        raise TargetError(f"dtype {found} is not served; use one of "
                          + ", ".join(str(d) for d in SERVED_DTYPES))
    return found


def reads_exactly(source: np.dtype, dtype: np.dtype) -> bool:
    """Whether a backend may read ``source`` pixels straight into a ``dtype`` buffer.

    True for the same dtype and for widening conversions between types GDAL
    has (every converter agrees on those); other conversions go through
    :func:`cast_into`.

    Example:
        >>> reads_exactly(np.dtype("uint8"), np.dtype("float32")), reads_exactly(np.dtype("uint16"), np.dtype("uint8"))
        (True, False)
    """
    return source is dtype or source == dtype or (source in GDAL_DTYPES and dtype in GDAL_DTYPES
                               and np.can_cast(source, dtype, "safe"))


def cast_into(out: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` into ``out`` (same shape, any served dtype) by the saturating rule above."""
    source, dtype = values.dtype, out.dtype
    if reads_exactly(source, dtype):
        np.copyto(out, values)
        return
    if dtype.kind not in "iuf" or source.kind not in "iuf":
        raise TargetError(f"cannot convert {source} pixels to {dtype}")
    if dtype.kind == "f":
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes ±inf, as in GDAL
            np.copyto(out, values, casting="unsafe")
        return
    limits = np.iinfo(dtype)
    if source.kind in "iu":
        bounds = np.iinfo(source)
        clipped = np.clip(values, max(limits.min, bounds.min), min(limits.max, bounds.max))
        np.copyto(out, clipped, casting="unsafe")
        return
    wide = values.astype(np.float64)  # exact for float32 pixels; GDAL's arithmetic for float64
    rounded = np.trunc(wide + np.copysign(0.5, wide))
    rounded[np.isnan(rounded)] = 0
    high = float(limits.max)
    top = np.nextafter(high, 0) if int(high) > limits.max else high  # 2**63 - 1 is not a float64
    np.copyto(out, np.clip(rounded, float(limits.min), top), casting="unsafe")
    if top != high:
        out[rounded >= high] = limits.max


def cast_scalar(value: float, dtype: np.dtype) -> float | int:
    """One value converted by the same rule (e.g. a source nodata used as the fill of a cast window).

    Example:
        >>> cast_scalar(-7, np.dtype("uint8")), cast_scalar(3.5, np.dtype("int16"))
        (0, 4)
    """
    values = np.array([value])
    out = np.empty(1, dtype)
    cast_into(out, values if values.dtype.kind in "iuf" else values.astype(np.float64))
    return out[0].item()
