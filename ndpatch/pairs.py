"""``import-pairs``: parallel folders of images and label rasters with matching names → a kwcoco dataset.

Each image ``IMAGES_DIR/<name>.<ext>`` pairs with the single-band label
raster of the same stem in ``LABELS_DIR`` (any raster extension). The
dataset's image record keeps the image as its ``file_name`` and lists both
files as ``assets``, the label one with channels ``'class_id'``
(:data:`ndpatch.export.labels.LABEL_CHANNEL`), so an export reads the label
raster's window as the chip's label map. Category ids are the label values
(0 is background); names come from a ``classes.json`` (value → name, as
``ndpatch export`` writes) in LABELS_DIR or its parent, else ``class_<value>``.
With ``polygons=True`` each label raster is also vectorised
(``gdal.Polygonize``, pixel-edge coordinates) into one polygon annotation per
connected region, so positive and negative sampling work.

Example:
    >>> import os, tempfile, numpy as np
    >>> from ndpatch.demo import write_raster
    >>> tmp = tempfile.mkdtemp()
    >>> for folder in ("img", "lab"): os.mkdir(f"{tmp}/{folder}")
    >>> _ = write_raster(f"{tmp}/img/a.tif", np.zeros((4, 6, 3), np.uint8))
    >>> label = np.zeros((4, 6), np.uint8); label[1:3, 2:5] = 7
    >>> _ = write_raster(f"{tmp}/lab/a.tif", label)
    >>> dset = import_pairs(f"{tmp}/img", f"{tmp}/lab", f"{tmp}/pairs.kwcoco.json", polygons=True)
    >>> dset.anns[1]["category_id"], dset.anns[1]["bbox"]
    (7, [2.0, 1.0, 3.0, 2.0])
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr

from ndpatch import gdalio
from ndpatch.errors import DatasetError, OutputExistsError
from ndpatch.export.labels import LABEL_CHANNEL
from ndpatch.index import DEFAULT_CHANNELS

#: File extensions taken as rasters in the two folders.
RASTER_EXTENSIONS = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".img", ".vrt", ".bmp"}


def _rasters(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"not a folder: {folder}")
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in RASTER_EXTENSIONS and not p.name.startswith(".")}


def _class_names(labels_dir: Path) -> dict[int, str]:
    for candidate in (labels_dir / "classes.json", labels_dir.parent / "classes.json"):
        if candidate.is_file():
            return {int(v): str(n) for v, n in json.loads(candidate.read_text()).items()}
    return {}


def label_values(ds: gdal.Dataset, what: str) -> list[int]:
    """The non-zero integer values a single-band label raster holds (GDAL histogram, streamed)."""
    if ds.RasterCount != 1:
        raise DatasetError(f"{what}: a label raster must have one band, it has {ds.RasterCount}")
    band = ds.GetRasterBand(1)
    if band.DataType not in (gdal.GDT_Byte, gdal.GDT_UInt16):
        raise DatasetError(f"{what}: a label raster must be uint8 or uint16, it is "
                           f"{gdal.GetDataTypeName(band.DataType)}")
    top = 255 if band.DataType == gdal.GDT_Byte else 65535
    hist = band.GetHistogram(-0.5, top + 0.5, top + 1, include_out_of_range=0, approx_ok=0)
    return [v for v, n in enumerate(hist) if n and v]


def polygonize(ds: gdal.Dataset) -> list[tuple[int, dict]]:
    """(value, kwcoco polygon in pixel coordinates) of each connected non-zero region."""
    band = ds.GetRasterBand(1)
    mem = gdal.GetDriverByName("MEM").Create("", ds.RasterXSize, ds.RasterYSize, 1, band.DataType)
    mem.SetGeoTransform((0, 1, 0, 0, 0, 1))  # pixel coordinates, whatever the source's georeferencing
    mem.GetRasterBand(1).WriteArray(band.ReadAsArray())
    source = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = source.CreateLayer("regions", geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    gdal.Polygonize(mem.GetRasterBand(1), mem.GetRasterBand(1), layer, 0, [])
    regions = []
    for feature in layer:
        rings = json.loads(feature.GetGeometryRef().ExportToJson())["coordinates"]
        exterior, *interiors = [[list(map(float, xy[:2])) for xy in ring[:-1]] for ring in rings]
        regions.append((feature.GetField("value"), {"exterior": exterior, "interiors": interiors}))
    return regions


def import_pairs(images_dir: str | os.PathLike, labels_dir: str | os.PathLike, out_path: str | os.PathLike,
                 polygons: bool = False, overwrite: bool = False):
    """Build and write the kwcoco dataset of matching image/label pairs; returns it."""
    import kwcoco

    from ndpatch.cache.store import atomic_publish

    images_dir, labels_dir, out_path = Path(images_dir), Path(labels_dir), Path(out_path)
    if out_path.exists() and not overwrite:
        raise OutputExistsError(f"{out_path} exists (pass overwrite=True / --overwrite)")
    images, labels = _rasters(images_dir), _rasters(labels_dir)
    if not images:
        raise DatasetError(f"no raster images in {images_dir}")
    unmatched = sorted(set(images) - set(labels))
    if unmatched:
        raise DatasetError(f"{len(unmatched)} images in {images_dir} have no label raster of the same name "
                           f"in {labels_dir}, e.g. {images[unmatched[0]].name}")
    names = _class_names(labels_dir)
    bundle = out_path.parent.resolve()
    dset = kwcoco.CocoDataset()
    dset.fpath = str(out_path)
    values: set[int] = set()
    records = []
    for stem, image_path in images.items():
        label_path = labels[stem]
        image_ds = gdalio.open_source(str(image_path))
        with gdalio.thread_config({"GDAL_PAM_ENABLED": "NO"}):  # its histogram is not saved beside it
            label_ds = gdalio.open_source(str(label_path))
        if (image_ds.RasterYSize, image_ds.RasterXSize) != (label_ds.RasterYSize, label_ds.RasterXSize):
            raise DatasetError(f"{label_path}: label raster is {label_ds.RasterYSize}x{label_ds.RasterXSize}, "
                               f"its image {image_path} is {image_ds.RasterYSize}x{image_ds.RasterXSize}")
        found = label_values(label_ds, str(label_path))
        values.update(found)
        image_file = os.path.relpath(image_path.resolve(), bundle)
        channels = DEFAULT_CHANNELS.get(image_ds.RasterCount)
        image_asset = {"file_name": image_file, **({"channels": "|".join(channels)} if channels else {})}
        record = {"file_name": image_file, "width": image_ds.RasterXSize, "height": image_ds.RasterYSize,
                  "assets": [image_asset, {"file_name": os.path.relpath(label_path.resolve(), bundle),
                                           "channels": LABEL_CHANNEL}]}
        records.append((record, polygonize(label_ds) if polygons and found else []))
    for value in sorted(values):
        dset.add_category(names.get(value, f"class_{value}"), id=value)
    for record, regions in records:
        gid = dset.add_image(**record)
        for value, poly in regions:
            xy = np.array(poly["exterior"])
            x0, y0 = xy.min(axis=0)
            x1, y1 = xy.max(axis=0)
            dset.add_annotation(gid, category_id=value, segmentation=poly,
                                bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
    atomic_publish(out_path, lambda tmp: dset.dump(tmp, newlines=True, temp_file=False))
    return dset
