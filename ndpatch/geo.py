"""Georeferencing and vector labels.

GDAL geotransforms ``(c, a, b, f, d, e)`` and ``kwimage.Affine`` (pixel corner →
world) convert here and nowhere else. A sample's window gets its own
geotransform and CRS (:func:`window_georef`), and :func:`write_geotiff`
writes it so it lines up with the source in GDAL. :func:`import_vectors` reads
GeoJSON / GeoPackage / Shapefile through OGR, reprojects each feature to each
image's CRS and adds the polygons that land on the image as annotations.
Per-window label maps and instance masks are :mod:`ndpatch.masks`'s.

Example:
    >>> gt = (500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0)
    >>> affine_to_gdal(gdal_to_affine(gt)) == gt
    True
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from osgeo import gdal, ogr, osr

from ndpatch import gdalio
from ndpatch.dataset import Asset, image_files, load_dataset
from ndpatch.errors import DatasetError, SourceReadError

ogr.UseExceptions()
osr.UseExceptions()


def gdal_to_affine(gt: Sequence[float]):
    """A GDAL geotransform as a ``kwimage.Affine`` from pixel (x=col, y=row) to world."""
    import kwimage
    c, a, b, f, d, e = gt
    return kwimage.Affine(np.array([[a, b, c], [d, e, f], [0, 0, 1]], dtype=np.float64))


def affine_to_gdal(tf: Any) -> tuple[float, ...]:
    """A pixel → world affine (``kwimage.Affine`` or 3×3) as a GDAL geotransform."""
    m = np.asarray(getattr(tf, "matrix", tf), dtype=np.float64)
    return (float(m[0, 2]), float(m[0, 0]), float(m[0, 1]), float(m[1, 2]), float(m[1, 0]), float(m[1, 1]))


@dataclass(frozen=True)
class Georef:
    """Where an image's pixels are on the ground: pixel → world affine and CRS (WKT)."""

    transform: Any
    crs_wkt: str | None

    @property
    def gsd(self) -> float:
        """Ground sample distance along x, in CRS units per pixel."""
        m = self.transform.matrix
        return float(np.hypot(m[0, 0], m[1, 0]))

    def warped(self, tf: Any) -> "Georef":
        """The georef of a grid whose pixels map to these pixels through ``tf``."""
        return Georef(self.transform @ tf, self.crs_wkt)

    def geotransform(self) -> tuple[float, ...]:
        return affine_to_gdal(self.transform)


def georef_from(geotransform: Sequence[float] | None, crs_wkt: str | None) -> Georef | None:
    """A :class:`Georef` from a GDAL geotransform and CRS (e.g. a cache entry's), None without one."""
    return None if geotransform is None else Georef(gdal_to_affine(geotransform), crs_wkt)


def raster_georef(path: str, what: str | None = None) -> Georef | None:
    """The georeferencing a raster declares (None when it has no geotransform); opens it through GDAL."""
    info = gdalio.raster_info(gdalio.POOL.get(path, what))
    return georef_from(info.geotransform, info.crs_wkt)


def files_georef(files: Sequence[Asset]) -> Georef | None:
    """An image's pixel → world georeferencing from its files: the first georeferenced one, warped.

    Opens the files' headers through GDAL (a sampler takes it from its cache
    entries instead: :class:`ndpatch.record.ImageRecord`).
    """
    for asset in files:
        georef = raster_georef(asset.source.path, asset.source.describe())
        if georef is not None:
            return georef.warped(asset.warp.inv())
    return None


def write_geotiff(path: str | os.PathLike, im: np.ndarray, georef: Georef | None,
                  nodata: float | None = None, band_names: Sequence[str] | None = None) -> str:
    """Write an H×W×C sample as a tiled, lossless GeoTIFF (atomically); returns the path."""
    from ndpatch.cache.store import atomic_publish

    def write(tmp: str) -> None:
        geotransform, crs_wkt = (None, None) if georef is None else (georef.geotransform(), georef.crs_wkt)
        mem = gdalio.mem_dataset(im, nodata, band_names, geotransform, crs_wkt)
        gdal.GetDriverByName("GTiff").CreateCopy(
            tmp, mem, options=["TILED=YES", "COMPRESS=DEFLATE"]).FlushCache()

    atomic_publish(path, write)
    return str(path)


def write_sample(sampler, target: dict, path: str | os.PathLike) -> dict:
    """Sample ``target`` and write its pixels as a GeoTIFF that lines up with the source.

    Returns the sample. The file carries the window's geotransform and CRS
    (none for images without georeferencing) and the source's nodata.
    """
    sample = sampler.load_sample(target, with_annots=False)
    params = sample["params"]
    georef = None
    if params["geotransform"] is not None:
        georef = Georef(gdal_to_affine(params["geotransform"]), params["crs"])
    nodata = sample["target"].get("fill", sample["target"].get("nodata"))
    record = sampler.records.get(sample["target"]["gid"])
    if nodata is None and not record.multi:
        nodata = record.entry.nodata
    write_geotiff(path, sample["im"], georef, None if isinstance(nodata, str) else nodata)
    return sample


def valid_fraction(im: np.ndarray, tf_rel_to_abs: Any, dims: tuple[int, int],
                   nodata: float | None) -> float:
    """The fraction of sample pixels whose centre is in the image and whose bands are not all nodata.

    ``tf_rel_to_abs`` maps sample pixels to image pixels; ``dims`` is the image (H, W).
    """
    m = np.asarray(tf_rel_to_abs.matrix)
    cy = m[1, 1] * (np.arange(im.shape[0]) + 0.5) + m[1, 2]
    cx = m[0, 0] * (np.arange(im.shape[1]) + 0.5) + m[0, 2]
    rows_in = (cy > 0) & (cy < dims[0])
    cols_in = (cx > 0) & (cx < dims[1])
    if nodata is None:
        return float(rows_in.mean() * cols_in.mean())
    invalid = np.isnan(im) if np.isnan(nodata) else im == nodata
    if im.dtype.kind == "f" and not np.isnan(nodata):
        invalid |= np.isnan(im)  # nodata turned into NaN by a 'float' fill
    valid = rows_in[:, None] & cols_in[None, :] & ~invalid.all(axis=-1)
    return float(valid.mean())


def window_valid_fraction(sampler, target: dict) -> float:
    """The valid-pixel fraction of a target's window (for strategies that need, e.g., ≥ 0.5)."""
    return sampler.load_sample(target, with_annots=False)["params"]["valid_fraction"]


def import_vectors(dset, vectors: str, category_field: str | None = None,
                   category: str | None = None, layer: str | None = None,
                   out: str | os.PathLike | None = None) -> dict:
    """Add the polygons of a vector file to a kwcoco dataset, in each image's pixels.

    Each feature is reprojected into each georeferenced image's CRS, clipped
    to the image and added as a polygon annotation whose category is the
    feature's ``category_field`` attribute, or the fixed ``category``. When
    ``out`` is given the dataset is written there atomically. Returns counts.
    """
    import kwimage
    import shapely
    import shapely.affinity
    import shapely.geometry
    if (category_field is None) == (category is None):
        raise DatasetError("import-vectors needs exactly one of category_field and category")
    dset = load_dataset(dset)
    features = _read_features(vectors, category_field, category, layer)
    counts = Counter()
    for gid in sorted(dset.index.imgs):
        img = dset.index.imgs[gid]
        georef = files_georef(image_files(img, str(dset.bundle_dpath)))
        declared = img.get("height") is not None and img.get("width") is not None
        height, width = (int(img["height"]), int(img["width"])) if declared else (None, None)
        if georef is None or georef.crs_wkt is None or height is None:
            counts["images_without_georef"] += 1
            continue
        image_srs = _srs(georef.crs_wkt)
        to_pixels = np.linalg.inv(georef.transform.matrix)
        params = [to_pixels[0, 0], to_pixels[0, 1], to_pixels[1, 0], to_pixels[1, 1],
                  to_pixels[0, 2], to_pixels[1, 2]]
        frame = shapely.geometry.box(0, 0, width, height)
        transforms = {}
        for srs_wkt, geometry, name in features:
            if srs_wkt not in transforms:
                transforms[srs_wkt] = osr.CoordinateTransformation(_srs(srs_wkt), image_srs)
            geom = geometry.Clone()
            geom.Transform(transforms[srs_wkt])
            shape = shapely.affinity.affine_transform(shapely.from_wkb(bytes(geom.ExportToWkb())), params)
            shape = shape.intersection(frame)
            shape = shapely.geometry.MultiPolygon(
                [p for p in getattr(shape, "geoms", [shape]) if p.geom_type == "Polygon" and p.area > 0])
            if shape.is_empty:
                continue
            cid = dset.ensure_category(name)
            x0, y0, x1, y1 = shape.bounds
            dset.add_annotation(gid, category_id=cid, bbox=[x0, y0, x1 - x0, y1 - y0],
                                segmentation=kwimage.MultiPolygon.from_shapely(shape).to_coco("new"),
                                area=shape.area)
            counts["annotations"] += 1
        counts["images"] += 1
    counts["features"] = len(features)
    if out is not None:
        from pathlib import Path

        from ndpatch.cache.store import atomic_publish
        out_dir = Path(out).resolve().parent
        if out_dir != Path(dset.bundle_dpath).resolve():
            dset.reroot(new_root=str(out_dir), absolute=False, check=False, verbose=0)
        atomic_publish(out, lambda tmp: dset.dump(tmp, newlines=True))
        dset.fpath = str(out)
    return dict(counts)


def _srs(wkt: str) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _read_features(vectors: str, category_field: str | None, category: str | None,
                   layer_name: str | None) -> list[tuple[str, ogr.Geometry, str]]:
    """``(crs wkt, geometry, category name)`` of every areal feature of the vector file."""
    try:
        source = ogr.Open(str(vectors))
    except RuntimeError as err:
        raise SourceReadError(f"vector file {vectors}: OGR cannot open it: {err}") from err
    layers = [source.GetLayerByName(layer_name)] if layer_name else list(source)
    if not layers or layers[0] is None:
        raise SourceReadError(f"vector file {vectors}: no layer {layer_name!r}")
    features = []
    for layer in layers:
        srs = layer.GetSpatialRef()
        if srs is None:
            raise SourceReadError(f"vector file {vectors}: layer {layer.GetName()!r} declares no CRS")
        if category_field is not None and layer.GetLayerDefn().GetFieldIndex(category_field) < 0:
            raise DatasetError(f"vector file {vectors}: layer {layer.GetName()!r} has no field "
                               f"{category_field!r}")
        wkt = srs.ExportToWkt()
        for feature in layer:
            geometry = feature.GetGeometryRef()
            if geometry is None or ogr.GT_Flatten(geometry.GetGeometryType()) not in (
                    ogr.wkbPolygon, ogr.wkbMultiPolygon):
                continue
            name = category if category_field is None else str(feature.GetField(category_field))
            features.append((wkt, geometry.Clone(), name))
    return features
