"""Georeferencing and vector labels.

GDAL geotransforms ``(c, a, b, f, d, e)`` and ``kwimage.Affine`` (pixel corner →
world) convert here and nowhere else. A sample's window gets its own
geotransform and CRS (:func:`window_georef`), and :func:`write_geotiff`
writes it so it lines up with the source in GDAL. :func:`import_vectors` reads
GeoJSON / GeoPackage / Shapefile through OGR once, finds each image's features
with a spatial index, reprojects them to the image's CRS and adds the polygons
that land on the image as annotations.
Per-window label maps and instance masks are :mod:`ndpatch.masks`'s.

Example:
    >>> gt = (500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0)
    >>> affine_to_gdal(gdal_to_affine(gt)) == gt
    True
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from osgeo import gdal, ogr, osr
from tqdm import tqdm

from ndpatch import gdalio
from ndpatch.dataset import Asset, image_files, load_dataset, rebased_files
from ndpatch.errors import DatasetError, DatasetWarning, SourceReadError

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


def raster_georef(path: str, what: str | None = None, opener=gdalio.SOURCE) -> Georef | None:
    """The georeferencing a raster declares (None when it has no geotransform); opens it through GDAL.

    ``opener`` is how the file is opened (:func:`ndpatch.gdalio.source_opener`'s rules: VRTs only when allowed).
    """
    info = gdalio.raster_info(gdalio.POOL.get(path, what, opener=opener))
    return georef_from(info.geotransform, info.crs_wkt)


def files_georef(files: Sequence[Asset], allow_vrt: bool = False) -> Georef | None:
    """An image's pixel → world georeferencing from its files: the first georeferenced one, warped.

    Opens the files' headers through GDAL as a backend with ``allow_vrt`` would
    (a sampler takes it from its cache entries instead: :class:`ndpatch.record.ImageRecord`).
    """
    for asset in files:
        opener = gdalio.source_opener(allow_vrt, asset.source.bundle_dpath)
        georef = raster_georef(asset.source.path, asset.source.describe(), opener)
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


def window_valid_fraction(sampler, target: dict) -> float:
    """The valid-pixel fraction of a target's window (for strategies that need, e.g., ≥ 0.5).

    :meth:`ndpatch.sampler.CocoSampler.valid_fraction`: GDAL's masks, reading only what they need.
    """
    return sampler.valid_fraction(target)


#: The annotation key naming where an imported polygon came from (re-imports replace, never duplicate).
VECTOR_SOURCE = "vector_source"
#: Points per footprint edge when an image's footprint is reprojected into a layer's CRS.
FOOTPRINT_POINTS = 16


@dataclass(frozen=True)
class _Layer:
    """One vector layer read once: its CRS, features and an STRtree over them (in the layer's CRS)."""

    name: str
    srs: osr.SpatialReference
    fids: list[int]
    geometries: list[ogr.Geometry]
    names: list[str]
    tree: Any  # shapely.STRtree


def import_vectors(dset, vectors: str | os.PathLike, category_field: str | None = None,
                   category: str | None = None, layer: str | None = None,
                   out: str | os.PathLike | None = None, allow_vrt: bool = False,
                   progress: bool = False) -> dict:
    """Add the polygons of a vector file (GeoJSON, GeoPackage, Shapefile, ...) to a kwcoco dataset.

    Each layer is read once and indexed (a shapely STRtree in its CRS); each
    georeferenced image's footprint, reprojected into the layer's CRS, picks the
    features that may meet it, which are reprojected into the image's CRS and
    pixels, clipped to the image and added as polygon annotations whose
    category is the feature's ``category_field`` attribute, or the fixed
    ``category``. Every annotation records its origin under :data:`VECTOR_SOURCE`
    (file, layer, feature id): importing a file again replaces the annotations
    of its earlier import instead of adding them twice. Images are opened as a
    backend with ``allow_vrt`` would. When ``out`` is given the dataset is written
    there atomically. Returns counts (``features``, ``images``, ``annotations``,
    ``replaced``, ``images_without_georef``).
    """
    if (category_field is None) == (category is None):
        raise DatasetError("import-vectors needs exactly one of category_field and category")
    dset = load_dataset(dset)
    path = str(Path(vectors).resolve())
    layers = _read_layers(vectors, category_field, category, layer)
    counts = Counter(features=sum(len(found.fids) for found in layers), annotations=0, replaced=0)
    imported = {found.name for found in layers}
    earlier = [aid for aid, ann in dset.anns.items() if (ann.get(VECTOR_SOURCE) or {}).get("file") == path
               and ann[VECTOR_SOURCE].get("layer") in imported]
    dset.remove_annotations(earlier, verbose=0)
    counts["replaced"] = len(earlier)
    for gid in tqdm(sorted(dset.index.imgs), desc="import-vectors", unit="img", disable=not progress):
        img = dset.index.imgs[gid]
        files = image_files(img, str(dset.bundle_dpath))
        georef = files_georef(files, allow_vrt)
        dims = _image_dims(img, files, allow_vrt)
        if georef is None or georef.crs_wkt is None:
            counts["images_without_georef"] += 1
            continue
        for found in layers:
            counts["annotations"] += _add_layer_polygons(dset, gid, georef, dims, found, path)
        counts["images"] += 1
    if counts["images"] == 0 and len(dset.index.imgs):
        warnings.warn(f"import-vectors: no image of dataset {dset.fpath} is georeferenced (a geotransform and "
                      f"a CRS): nothing imported from {vectors}", DatasetWarning, stacklevel=2)
    if out is not None:
        _publish(dset, out)
    return dict(counts)


def _image_dims(img: dict, files: Sequence[Asset], allow_vrt: bool) -> tuple[int, int]:
    """(height, width) of an image: its single file's, else the record's."""
    if len(files) == 1:
        source = files[0].source
        info = gdalio.raster_info(gdalio.POOL.get(source.path, source.describe(),
                                                  opener=gdalio.source_opener(allow_vrt, source.bundle_dpath)))
        return info.height, info.width
    if img.get("height") is None or img.get("width") is None:
        raise DatasetError(f"image {img.get('id')}: a multi-file image needs width and height in its record")
    return int(img["height"]), int(img["width"])


def _add_layer_polygons(dset, gid: int, georef: Georef, dims: tuple[int, int], found: _Layer, path: str) -> int:
    """Add the polygons of ``found`` that land on image ``gid``; returns how many were added."""
    import kwimage
    import shapely
    import shapely.affinity
    height, width = dims
    image_srs = _srs(georef.crs_wkt)
    corners = [(x, y) for x, y in _ring(width, height)]
    world = np.array([georef.transform.matrix @ (x, y, 1.0) for x, y in corners])[:, :2]
    to_layer = osr.CoordinateTransformation(image_srs, found.srs)
    footprint = np.array(to_layer.TransformPoints(world.tolist()))[:, :2]
    candidates = found.tree.query(shapely.box(*footprint.min(axis=0), *footprint.max(axis=0)))
    if not len(candidates):
        return 0
    to_image = osr.CoordinateTransformation(found.srs, image_srs)
    to_pixels = np.linalg.inv(georef.transform.matrix)
    params = [to_pixels[0, 0], to_pixels[0, 1], to_pixels[1, 0], to_pixels[1, 1], to_pixels[0, 2], to_pixels[1, 2]]
    frame = shapely.box(0, 0, width, height)
    added = 0
    for i in sorted(candidates.tolist()):
        geom = found.geometries[i].Clone()
        geom.Transform(to_image)
        shape = shapely.affinity.affine_transform(shapely.from_wkb(bytes(geom.ExportToWkb())), params)
        shape = shape.intersection(frame)
        shape = shapely.MultiPolygon([p for p in getattr(shape, "geoms", [shape])
                                      if p.geom_type == "Polygon" and p.area > 0])
        if shape.is_empty:
            continue
        x0, y0, x1, y1 = shape.bounds
        dset.add_annotation(gid, category_id=dset.ensure_category(found.names[i]), bbox=[x0, y0, x1 - x0, y1 - y0],
                            segmentation=kwimage.MultiPolygon.from_shapely(shape).to_coco("new"), area=shape.area,
                            **{VECTOR_SOURCE: {"file": path, "layer": found.name, "fid": found.fids[i]}})
        added += 1
    return added


def _ring(width: int, height: int) -> list[tuple[float, float]]:
    """Points along the border of a ``width`` x ``height`` pixel box (:data:`FOOTPRINT_POINTS` per edge)."""
    t = np.linspace(0.0, 1.0, FOOTPRINT_POINTS, endpoint=False)
    return ([(width * v, 0.0) for v in t] + [(width, height * v) for v in t]
            + [(width * (1 - v), height) for v in t] + [(0.0, height * (1 - v)) for v in t])


def _publish(dset, out: str | os.PathLike) -> None:
    """Write ``dset`` to ``out`` atomically, its file names rebased when ``out`` is in another folder."""
    from ndpatch.cache.store import atomic_publish
    out_dir = Path(out).resolve().parent
    if out_dir != Path(dset.bundle_dpath).resolve():
        for img in dset.dataset["images"]:
            img.update(rebased_files(img, str(dset.bundle_dpath), out_dir))
        dset.bundle_dpath = str(out_dir)
    atomic_publish(out, lambda tmp: dset.dump(tmp, newlines=True))
    dset.fpath = str(out)


def _srs(wkt: str) -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _read_layers(vectors: str | os.PathLike, category_field: str | None, category: str | None,
                 layer_name: str | None) -> list[_Layer]:
    """Every layer to import (``layer_name``, else all), with its areal features (Polygon, MultiPolygon)."""
    import shapely
    if not os.path.exists(vectors):
        raise SourceReadError(f"vector file {vectors} does not exist")
    try:
        source = gdal.OpenEx(str(vectors), gdal.OF_VECTOR | gdal.OF_READONLY)
    except RuntimeError as err:
        source, reason = None, f": {err}"
    else:
        reason = ""
    if source is None:
        raise SourceReadError(f"vector file {vectors}: OGR cannot read it as vector data (GeoJSON, GeoPackage, "
                              f"Shapefile, ...){reason}")
    layers = ([source.GetLayerByName(layer_name)] if layer_name
              else [source.GetLayerByIndex(i) for i in range(source.GetLayerCount())])
    if not layers or layers[0] is None:
        raise SourceReadError(f"vector file {vectors}: no layer {layer_name!r}" if layer_name
                              else f"vector file {vectors} has no layer")
    read = []
    for layer in layers:
        srs = layer.GetSpatialRef()
        if srs is None:
            raise SourceReadError(f"vector file {vectors}: layer {layer.GetName()!r} declares no CRS")
        if category_field is not None and layer.GetLayerDefn().GetFieldIndex(category_field) < 0:
            raise DatasetError(f"vector file {vectors}: layer {layer.GetName()!r} has no field "
                               f"{category_field!r}")
        srs = srs.Clone()
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        fids, geometries, names, shapes = [], [], [], []
        for feature in layer:
            geometry = feature.GetGeometryRef()
            if geometry is None or ogr.GT_Flatten(geometry.GetGeometryType()) not in (
                    ogr.wkbPolygon, ogr.wkbMultiPolygon):
                continue
            fids.append(int(feature.GetFID()))
            geometries.append(geometry.Clone())
            names.append(category if category_field is None else str(feature.GetField(category_field)))
            shapes.append(shapely.from_wkb(bytes(geometry.ExportToWkb())))
        read.append(_Layer(layer.GetName(), srs, fids, geometries, names, shapely.STRtree(shapes)))
    return read
