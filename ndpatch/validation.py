"""What makes an annotation's ``bbox`` and ``segmentation`` usable: the one rule sampling and export share.

A ``bbox`` is ``[x, y, w, h]``: four finite numbers (not booleans, not
strings), ``w`` and ``h`` at least 0, every value within
:data:`MAX_COORDINATE` of the origin (no raster is larger: GDAL's sizes are
32-bit). A ``segmentation`` is a COCO polygon list (flat ``[x0, y0, x1, y1,
...]`` lists of an even length), a kwcoco polygon (``{"exterior": [[x, y],
...], "interiors": [...]}``, or a list of them) or an RLE mask (``{"counts",
"size"}``). The checks are structural, microseconds per annotation; each
returns why a value is unusable, or None.

Example:
    >>> bbox_problem([1, 2, 3, 4]) is None, segmentation_problem([[0, 0, 4, 0, 4, 2]]) is None
    (True, True)
    >>> bbox_problem([1, 2, 3])
    'bbox [1, 2, 3] is not [x, y, w, h] of finite numbers with w, h >= 0'
    >>> bbox_problem([0, 0, 1e308, 1])
    'bbox [0, 0, 1e+308, 1] has a coordinate beyond 2147483648 pixels'
    >>> segmentation_problem([[1, 1, 2, 2, 3]])
    'segmentation is not a polygon list, a polygon or an RLE mask (a polygon of 5 numbers: x, y pairs need an even count)'
"""
from __future__ import annotations

import math
from numbers import Real

#: Box coordinates beyond this many pixels from the origin are refused (GDAL's raster sizes are 32-bit).
MAX_COORDINATE = 2 ** 31


def finite_numbers(values) -> bool:
    """Whether every value is a finite real number (booleans and strings are not).

    >>> finite_numbers([1, 2.5]), finite_numbers([1, True]), finite_numbers([10 ** 400])
    (True, False, False)
    """
    return all(isinstance(v, Real) and not isinstance(v, bool) and _finite(v) for v in values)


def _finite(value: Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def bbox_problem(bbox) -> str | None:
    """Why a ``bbox`` is unusable (see the module), or None."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and finite_numbers(bbox)
            and bbox[2] >= 0 and bbox[3] >= 0):
        return f"bbox {bbox!r} is not [x, y, w, h] of finite numbers with w, h >= 0"
    x, y, w, h = bbox
    if max(abs(x), abs(y), abs(x + w), abs(y + h)) > MAX_COORDINATE:
        return f"bbox {bbox!r} has a coordinate beyond {MAX_COORDINATE} pixels"
    return None


def _points_ok(points) -> bool:
    return isinstance(points, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 and finite_numbers(p)
                                            for p in points)


def _polygon_problem(polygon) -> str | None:
    if isinstance(polygon, dict):  # kwcoco: {"exterior": [[x, y], ...], "interiors": [...]}
        if _points_ok(polygon.get("exterior")) and all(_points_ok(ring) for ring in polygon.get("interiors", [])):
            return None
        return "a kwcoco polygon whose rings are not lists of finite [x, y] points"
    if not isinstance(polygon, list) or not finite_numbers(polygon):
        return "a polygon that is not a list of finite numbers"
    if len(polygon) % 2:
        return f"a polygon of {len(polygon)} numbers: x, y pairs need an even count"
    return None


def segmentation_problem(segmentation) -> str | None:
    """Why a ``segmentation`` is not a COCO polygon list, a kwcoco polygon (or list of them) or an RLE mask."""
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = segmentation.get("size")
        problem = None if isinstance(size, (list, tuple)) and len(size) == 2 else "an RLE mask without a [height, width] size"
    elif isinstance(segmentation, dict):
        problem = _polygon_problem(segmentation)
    elif isinstance(segmentation, list):
        problem = next(filter(None, map(_polygon_problem, segmentation)), None)
    else:
        problem = f"a {type(segmentation).__name__}"
    return None if problem is None else f"segmentation is not a polygon list, a polygon or an RLE mask ({problem})"
