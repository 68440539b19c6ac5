"""Shared fixtures: small datasets of GDAL-written rasters and an independent reference read.

(The per-user caches are made hermetic by the repository's top-level conftest.py.)
"""
import numpy as np
import pytest
from osgeo import gdal

from ndpatch.demo import make_dataset

#: The dtype/band matrix every pixel backend must serve bit-exactly.
MATRIX_SPECS = [
    {"shape": (70, 90, 3), "dtype": "uint8"},                       # RGB
    {"shape": (64, 80), "dtype": "uint16"},                         # single band
    {"shape": (50, 60, 9), "dtype": "float32", "options": ["TILED=YES", "BLOCKXSIZE=16",
                                                           "BLOCKYSIZE=16"]},  # >= 8 bands
    {"shape": (45, 55), "dtype": "uint8", "driver": "PNG", "channels": "gray"},  # grayscale PNG
    {"shape": (40, 52, 2), "dtype": "int16", "nodata": -7},          # declared nodata
]


@pytest.fixture(scope="session")
def matrix_dset(tmp_path_factory):
    """A kwcoco dataset with one image per entry of MATRIX_SPECS."""
    return make_dataset(tmp_path_factory.mktemp("matrix"), MATRIX_SPECS)


def reference_window(path, rows, cols, fill=0):
    """The window (rows, cols) of the raster at ``path``, read whole by GDAL and padded by numpy."""
    ds = gdal.Open(path)
    full = ds.ReadAsArray()
    full = full[None] if full.ndim == 2 else full
    full = np.moveaxis(full, 0, -1)
    h, w, c = full.shape
    out = np.full((rows.stop - rows.start, cols.stop - cols.start, c), fill, dtype=full.dtype)
    r0, r1 = max(rows.start, 0), min(rows.stop, h)
    c0, c1 = max(cols.start, 0), min(cols.stop, w)
    if r1 > r0 and c1 > c0:
        out[r0 - rows.start:r1 - rows.start, c0 - cols.start:c1 - cols.start] = full[r0:r1, c0:c1]
    return out


def edge_windows(height, width, size=(17, 23)):
    """Windows inside, on each edge and corner, larger than the image, and fully outside."""
    h, w = size
    rows = {"top": -h // 2, "mid": height // 2 - h // 2, "bottom": height - h // 2}
    cols = {"left": -w // 2, "mid": width // 2 - w // 2, "right": width - w // 2}
    windows = [(slice(r, r + h), slice(c, c + w)) for r in rows.values() for c in cols.values()]
    windows.append((slice(-5, height + 5), slice(-3, width + 4)))          # covers everything
    windows.append((slice(height + 10, height + 10 + h), slice(-w - 4, -4)))  # fully outside
    return windows
