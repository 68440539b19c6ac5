"""Toy datasets for examples, tests and ``ndpatch demo``.

:func:`write_raster` writes an array as a GeoTIFF (or any GDAL format) and
:func:`make_dataset` builds a small kwcoco dataset over such rasters, with
boxes, polygons and keypoints at known coordinates.

Example:
    >>> import tempfile, numpy as np
    >>> tmp = tempfile.mkdtemp()
    >>> dset = make_dataset(tmp, [{"shape": (40, 50, 3), "dtype": "uint8"}])
    >>> dset.n_images, dset.n_annots
    (1, 3)
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import kwcoco
import numpy as np
from osgeo import gdal, osr

from ndpatch import gdalio


def kwcoco_demo(key: str = "shapes8", **kwargs) -> kwcoco.CocoDataset:
    """kwcoco's toy dataset ``key`` (``CocoDataset.demo``), made without progress output.

    kwcoco 0.9.1 rewrites a ``shapes`` dataset's images on every call and prints
    its progress whatever ``verbose`` says; here both the ``verbose`` default and
    that output are silenced.

    Example:
        >>> kwcoco_demo("shapes2").n_images
        2
    """
    kwargs.setdefault("verbose", 0)
    with contextlib.redirect_stdout(io.StringIO()):
        return kwcoco.CocoDataset.demo(key, **kwargs)


def random_pixels(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Random pixels spanning the dtype's range (floats in [-1000, 1000))."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.random(shape) * 2000 - 1000).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def write_raster(path: str | os.PathLike, pixels: np.ndarray, driver: str = "GTiff",
                 options: list[str] | None = None, nodata: float | None = None,
                 geotransform: tuple | None = None, crs_epsg: int | None = None,
                 band_names: list[str] | None = None) -> str:
    """Write an H×W or H×W×C array as a raster file with GDAL; returns the path."""
    path = str(path)
    crs_wkt = None
    if crs_epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(crs_epsg)
        crs_wkt = srs.ExportToWkt()
    mem = gdalio.mem_dataset(pixels, nodata, band_names, geotransform, crs_wkt)
    out = gdal.GetDriverByName(driver).CreateCopy(path, mem, options=options or [])
    out.FlushCache()
    del out
    return path


def make_dataset(dpath: str | os.PathLike, specs: list[dict], seed: int = 0,
                 fname: str = "data.kwcoco.json") -> kwcoco.CocoDataset:
    """A kwcoco dataset of generated rasters, one per spec, each with three annotations.

    A spec has ``shape`` (H, W) or (H, W, C), ``dtype``, and optionally
    ``driver`` (default GTiff; ``PNG``/``JPEG`` need uint8), ``ext``,
    ``options`` (GDAL creation options), ``nodata`` and ``channels``. Each
    image gets a box at its top-left corner, a triangle polygon in the middle
    and a keypoint annotation at its bottom-right, all partly near the edges.
    """
    dpath = Path(dpath)
    (dpath / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dset = kwcoco.CocoDataset()
    dset.fpath = str(dpath / fname)
    for name in ("box", "triangle", "point"):
        dset.add_category(name)
    dset.dataset["keypoint_categories"] = [{"id": 1, "name": "tip"}]
    dset.index.build(dset)
    for i, spec in enumerate(specs):
        shape = tuple(spec["shape"])
        pixels = random_pixels(shape, spec.get("dtype", "uint8"), rng)
        driver = spec.get("driver", "GTiff")
        ext = spec.get("ext", {"GTiff": "tif", "PNG": "png", "JPEG": "jpg"}.get(driver, "img"))
        rel = f"images/img_{i:03d}.{ext}"
        write_raster(dpath / rel, pixels, driver=driver, options=spec.get("options"),
                     nodata=spec.get("nodata"))
        height, width = shape[:2]
        img = {"file_name": rel, "width": width, "height": height}
        if spec.get("channels"):
            img["channels"] = spec["channels"]
        gid = dset.add_image(**img)
        dset.add_annotation(gid, category_id=1, bbox=[0, 0, width / 4, height / 5])
        tri = [[width * 0.3, height * 0.3], [width * 0.7, height * 0.35], [width * 0.5, height * 0.7]]
        xs, ys = zip(*tri)
        dset.add_annotation(gid, category_id=2, bbox=[min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                            segmentation=[[v for xy in tri for v in xy]])
        kx, ky = width - 1.5, height - 2.5
        dset.add_annotation(gid, category_id=3, bbox=[kx - 2, ky - 2, 4, 4],
                            keypoints=[{"xy": [kx, ky], "keypoint_category_id": 1}])
    dset.dump(dset.fpath, newlines=True)
    return dset
