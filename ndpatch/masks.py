"""Rasterising a window's annotations into a class map and instance masks.

Input is a sample's ``annots`` (``rel_ssegs``, ``rel_boxes``, ``cids``,
``aids``: annotations already in the window's pixel frame). The rules, the
same in every window, are:

* **Shape.** An annotation covers pixel ``(r, c)`` when the pixel's centre
  ``(c + 0.5, r + 0.5)`` lies inside its polygon (GDAL's rasterisation rule,
  without ``ALL_TOUCHED``; a centre exactly on an edge follows GDAL's scanline
  rule); an annotation with no polygon uses its box. An annotation with
  neither (or with an empty one) covers nothing.
* **Class value.** In the class map a covered pixel holds the annotation's
  category id; ``0`` is background. Category ids must lie in ``1..65535``;
  annotations without a category (``cid`` < 1) appear in instance masks only.
* **Overlaps.** Where annotations overlap, the one with the *smaller area*
  (of its polygon or box, in pixels) wins, so small objects stay visible on
  top of large regions; equal areas: the larger annotation id wins. Areas do
  not depend on the window, so overlapping windows agree on shared pixels.

Example:
    >>> import numpy as np, kwimage
    >>> annots = {"aids": np.array([7, 8]), "cids": np.array([1, 2]),
    ...           "rel_boxes": kwimage.Boxes(np.array([[0, 0, 4, 3], [2, 1, 2, 1]]), "xywh"),
    ...           "rel_ssegs": [None, None]}
    >>> class_map(annots, (4, 5))
    array([[1, 1, 1, 1, 0],
           [1, 1, 2, 2, 0],
           [1, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]], dtype=uint8)
    >>> instance_masks(annots, (4, 5)).sum(axis=(1, 2))
    array([12,  2])
"""
from __future__ import annotations

import json

import numpy as np
from osgeo import gdal, ogr

from ndpatch import gdalio  # noqa: F401  (GDAL settings, exceptions on)
from ndpatch.errors import NdpatchError

ogr.UseExceptions()

#: Geotransform that makes GDAL's world coordinates the window's pixel coordinates (x right, y down).
PIXEL_FRAME = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def label_dtype(max_value: int) -> np.dtype:
    """The smallest class-map dtype holding ``max_value``: uint8, else uint16.

    >>> label_dtype(255), label_dtype(256)
    (dtype('uint8'), dtype('uint16'))
    """
    if max_value <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if max_value <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    raise NdpatchError(f"class value {max_value} does not fit a uint16 label map (category ids must be <= 65535)")


def _geometries(annots: dict) -> list[ogr.Geometry | None]:
    """Each annotation's shape as an OGR geometry in window pixels (polygon, else box, else None)."""
    boxes = np.asarray(annots["rel_boxes"].to_xywh().data, dtype=np.float64).reshape(-1, 4)
    ssegs = annots["rel_ssegs"]
    geoms = []
    for i, (x, y, w, h) in enumerate(boxes):
        sseg = ssegs[i] if ssegs is not None else None
        if sseg is not None:
            geojson = _closed(sseg.to_multi_polygon().to_geojson())
        elif np.isfinite([x, y, w, h]).all() and w > 0 and h > 0:
            ring = [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]
            geojson = {"type": "Polygon", "coordinates": [ring]}
        else:
            geoms.append(None)
            continue
        geom = ogr.CreateGeometryFromJson(json.dumps(geojson))
        geoms.append(geom if geom is not None and not geom.IsEmpty() else None)
    return geoms


def _closed(geojson: dict) -> dict:
    """A MultiPolygon geojson whose rings end on their first vertex, as OGR expects."""
    polygons = [[ring + ring[:1] if len(ring) and list(ring[0]) != list(ring[-1]) else ring
                 for ring in polygon] for polygon in geojson["coordinates"]]
    return {"type": "MultiPolygon", "coordinates": polygons}


def paint_order(annots: dict) -> list[int]:
    """Indices of the annotations that have a shape, in the order they are painted (last wins).

    Larger areas first, then smaller; equal areas by increasing annotation id.
    """
    geoms = _geometries(annots)
    aids = np.asarray(annots["aids"])
    keyed = [(-shape_area(annots, i, geom), int(aids[i]), i) for i, geom in enumerate(geoms) if geom is not None]
    return [i for _, _, i in sorted(keyed)]


def shape_area(annots: dict, i: int, geom: ogr.Geometry) -> float:
    """The area of annotation ``i``'s shape, the same in every window that holds it.

    A box's is ``w * h``; a polygon's is GEOS's (which sums relative to the ring's
    first point), not OGR's, whose rounding moves with the window's origin and
    could reorder two annotations of equal area from one window to the next.
    """
    ssegs = annots["rel_ssegs"]
    if ssegs is None or ssegs[i] is None:
        _, _, w, h = np.asarray(annots["rel_boxes"].to_xywh().data, dtype=np.float64).reshape(-1, 4)[i]
        return float(w * h)
    try:
        return float(ssegs[i].to_multi_polygon().to_shapely().area)
    except ValueError:  # a ring GEOS refuses: OGR's area, as painted
        return geom.GetArea()


def _layer(geoms: list[tuple[ogr.Geometry, int]]) -> tuple[ogr.DataSource, ogr.Layer]:
    """An in-memory OGR layer with one feature per (geometry, value), in the given order."""
    source = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = source.CreateLayer("annots", geom_type=ogr.wkbMultiPolygon)
    layer.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    for geom, value in geoms:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(geom)
        feature.SetField("value", int(value))
        layer.CreateFeature(feature)
    return source, layer


def _canvas(shape: tuple[int, int], n_bands: int, gdal_type: int) -> gdal.Dataset:
    height, width = shape
    ds = gdal.GetDriverByName("MEM").Create("", int(width), int(height), n_bands, gdal_type)
    ds.SetGeoTransform(PIXEL_FRAME)
    return ds


def _rasterize(canvas: gdal.Dataset, layer: ogr.Layer, **kwargs) -> None:
    """Burn ``layer`` into band 1 of ``canvas`` (both in pixel coordinates, hence no CRS: quiet)."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        gdal.RasterizeLayer(canvas, [1], layer, **kwargs)
    finally:
        gdal.PopErrorHandler()


def class_map(annots: dict, shape: tuple[int, int], dtype: np.dtype | str = np.uint8) -> np.ndarray:
    """A single-band (H, W) map: 0 = background, else the category id of the winning annotation."""
    dtype = np.dtype(dtype)
    cids = np.asarray(annots["cids"])
    geoms = _geometries(annots)
    order = [i for i in paint_order(annots) if cids[i] >= 1]
    if order and int(cids[order].max()) > np.iinfo(dtype).max:
        raise NdpatchError(f"category id {int(cids[order].max())} does not fit a {dtype} label map; "
                           f"use {label_dtype(int(cids[order].max()))}")
    out = np.zeros(shape, dtype=dtype)
    if not order or 0 in shape:
        return out
    source, layer = _layer([(geoms[i], cids[i]) for i in order])
    canvas = _canvas(shape, 1, gdal.GDT_UInt16)
    _rasterize(canvas, layer, options=["ATTRIBUTE=value"])
    out[...] = canvas.GetRasterBand(1).ReadAsArray()
    return out


def instance_masks(annots: dict, shape: tuple[int, int]) -> np.ndarray:
    """An (N, H, W) bool array: the pixels each annotation covers, in ``annots`` order."""
    geoms = _geometries(annots)
    masks = np.zeros((len(geoms), *shape), dtype=bool)
    if 0 in shape:
        return masks
    canvas = _canvas(shape, 1, gdal.GDT_Byte)
    band = canvas.GetRasterBand(1)
    for i, geom in enumerate(geoms):
        if geom is None:
            continue
        source, layer = _layer([(geom, 1)])
        band.Fill(0)
        _rasterize(canvas, layer, burn_values=[1])
        masks[i] = band.ReadAsArray().astype(bool)
    return masks


def window_masks(annots: dict, shape: tuple[int, int]) -> dict:
    """What ``load_sample(..., with_masks=True)`` adds: ``label_map`` (int32 :func:`class_map`),
    ``instance_masks`` (:func:`instance_masks`) and ``mask_aids`` (the annotation of each mask)."""
    return {"label_map": class_map(annots, shape, np.int32),
            "instance_masks": instance_masks(annots, shape),
            "mask_aids": np.asarray(annots["aids"])}
