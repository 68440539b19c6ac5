"""Reading one frame's channels onto the video-pixel window, whatever its files' warps.

Each file of a frame maps to video pixels by kwcoco's ``warp_aux_to_img`` and
``warp_img_to_vid`` and is read one of three ways: an integer translation is a
plain padded window read (bit-exact); scale + translation is a GDAL resampled
read (:func:`ndpatch.warp.read_resampled`); any other affine reads the file's
bounding window and resamples it here (:func:`warped_window`). Pixel-corner
convention throughout, like kwcoco. Channels a frame lacks are filled with the
fill value.
"""
from __future__ import annotations

import math

import numpy as np

from ndpatch.cache.base import CacheEntry, fill_value, read_window
from ndpatch.video.frames import Frame, translation
from ndpatch.video.targets import VideoTarget
from ndpatch.warp import read_resampled

#: Dtypes OpenCV warps natively; others are warped as float64 and cast back.
_WARP_DTYPES = {np.dtype(t) for t in ("uint8", "uint16", "int16", "float32", "float64")}

#: Pixels of source context read around a resampled window (linear needs 1).
_MARGIN = 2

def vid_from_window(rows: slice, cols: slice, scale: float = 1.0) -> np.ndarray:
    """The 3×3 map from a window's output pixels to video pixels (``scale`` output pixels per video pixel).

    >>> vid_from_window(slice(4, 8), slice(2, 6), 2.0) @ [2, 2, 1]
    array([3., 5., 1.])
    """
    return translation(cols.start, rows.start) @ np.diag([1 / scale, 1 / scale, 1.0])


def warped_window(backend, entry: CacheEntry, asset_from_vid: np.ndarray, rows: slice, cols: slice,
                  bands: list[int] | None, fill: float | None, dtype: np.dtype,
                  interpolation: str = "linear", antialias: bool = False, scale: float = 1.0) -> np.ndarray:
    """The video-space window ``rows × cols`` of an asset mapped to video by any affine warp.

    ``scale`` is output pixels per video pixel (the output is the window's size times it).

    Reads only the asset's bounding window (plus a margin, padded with the fill
    value past the asset). ``nearest`` takes, for each output pixel centre, the
    asset pixel holding its exact (float64) source point (fill when that point is
    not strictly inside the asset, as :mod:`ndpatch.warp`); ``linear`` resamples
    with ``kwimage.warp_affine`` (pixel-corner convention, like kwcoco).

    Example:
        >>> import numpy as np
        >>> entry = CacheEntry(gid=1, source="mem", path="mem", kind="test", height=2, width=2,
        ...                    bands=1, dtype=np.dtype("uint8"), nodata=None, band_names=("gray",))
        >>> class Count:
        ...     def read_into(self, entry, rows, cols, bands, out):
        ...         out[..., 0] = np.arange(4).reshape(2, 2)[rows, cols]
        >>> half = np.diag([0.5, 0.5, 1.0])  # video pixels are half as large
        >>> warped_window(Count(), entry, half, slice(0, 4), slice(0, 5), None, None,
        ...               np.dtype("uint8"), "nearest")[..., 0]
        array([[0, 0, 1, 1, 0],
               [0, 0, 1, 1, 0],
               [2, 2, 3, 3, 0],
               [2, 2, 3, 3, 0]], dtype=uint8)
    """
    height, width = rows.stop - rows.start, cols.stop - cols.start
    n_bands = entry.bands if bands is None else len(bands)
    value = fill_value(entry, fill, dtype)
    asset_from_out = asset_from_vid @ vid_from_window(rows, cols, scale)
    if scale != 1:
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
    corners = asset_from_out @ np.array([[0, width, width, 0], [0, 0, height, height], [1, 1, 1, 1]])
    margin = _MARGIN
    if antialias and interpolation != "nearest":
        margin += math.ceil(2 * max(np.abs(asset_from_out[:2, :2]).sum(axis=1)))
    x0 = max(math.floor(corners[0].min()) - margin, -margin)
    x1 = min(math.ceil(corners[0].max()) + margin, entry.width + margin)
    y0 = max(math.floor(corners[1].min()) - margin, -margin)
    y1 = min(math.ceil(corners[1].max()) + margin, entry.height + margin)
    if x1 <= x0 or y1 <= y0:
        return np.full((height, width, n_bands), value, dtype=dtype)
    if interpolation == "nearest":
        piece = read_window(backend, entry, slice(y0, y1), slice(x0, x1), bands, fill, dtype)
        centres_c = np.arange(width) + 0.5
        centres_r = (np.arange(height) + 0.5)[:, None]
        m = asset_from_out
        sx = m[0, 0] * centres_c + m[0, 1] * centres_r + m[0, 2]
        sy = m[1, 0] * centres_c + m[1, 1] * centres_r + m[1, 2]
        inside = (sx > 0) & (sx < entry.width) & (sy > 0) & (sy < entry.height)  # as ndpatch.warp
        warped = np.full((height, width, n_bands), value, dtype=dtype)
        warped[inside] = piece[np.floor(sy[inside]).astype(np.intp) - y0,
                               np.floor(sx[inside]).astype(np.intp) - x0]
        return warped
    import kwimage
    work = dtype if dtype in _WARP_DTYPES else np.dtype(np.float64)
    piece = read_window(backend, entry, slice(y0, y1), slice(x0, x1), bands, fill, work)
    out_from_piece = np.linalg.inv(asset_from_out) @ translation(x0, y0)
    warped = kwimage.warp_affine(piece, out_from_piece, dsize=(width, height),
                                 interpolation=interpolation, border_value=value,
                                 antialias=antialias, origin_convention="corner")
    warped = warped.reshape(height, width, n_bands)
    if work != dtype:
        warped = (np.rint(warped) if dtype.kind in "iub" else warped).astype(dtype)
    return warped


def read_frame(backend, frame: Frame, tr: VideoTarget, channels: tuple, dtype: np.dtype,
                out: np.ndarray) -> tuple[str, ...]:
    """Fill ``out`` (H×W×C) with one frame's channels; returns the names it lacks."""
    by_asset: dict[int, tuple[list[int], list[int]]] = {}
    missing = []
    for position, channel in enumerate(channels):
        found = frame.locate(channel)
        if found is None:
            missing.append(channel)
            out[..., position] = 0 if tr.fill is None else tr.fill
            continue
        bands, positions = by_asset.setdefault(found[0], ([], []))
        bands.append(found[1])
        positions.append(position)
    rows, cols = tr.rows, tr.cols
    for asset_index, (bands, positions) in by_asset.items():
        asset = frame.assets[asset_index]
        contiguous = positions == list(range(positions[0], positions[0] + len(positions)))
        view = out[..., positions[0]:positions[-1] + 1] if contiguous else None
        if asset.shift is not None and tr.scale == 1:
            dx, dy = asset.shift
            pixels = read_window(backend, asset.entry, slice(rows.start + dy, rows.stop + dy),
                                 slice(cols.start + dx, cols.stop + dx), bands, tr.fill, dtype, view)
        elif asset.axis_aligned:
            pixels = read_resampled(backend, asset.entry,
                                    asset.asset_from_vid @ vid_from_window(rows, cols, tr.scale),
                                    out.shape[:2], bands, tr.fill, dtype,
                                    interpolation=tr.interpolation, antialias=tr.antialias, out=view)
        else:
            pixels = warped_window(backend, asset.entry, asset.asset_from_vid, rows, cols, bands,
                                   tr.fill, dtype, tr.interpolation, tr.antialias, tr.scale)
        if pixels is not view:
            out[..., positions] = pixels
    return tuple(str(c) for c in missing)


