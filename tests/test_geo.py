"""Georeferencing, scale / GSD, vector labels, masks and nodata on GDAL-written UTM GeoTIFFs."""
import json
import os

import kwcoco
import numpy as np
import pytest
import shapely
import shapely.geometry
from osgeo import gdal, ogr, osr

import ndpatch
from ndpatch import gdalio, geo
from ndpatch.cli import main
from ndpatch.demo import random_pixels, write_raster

UTM = 32631  # WGS 84 / UTM zone 31N
ORIGIN = (500000.0, 4100000.0)
GT10 = (ORIGIN[0], 10.0, 0.0, ORIGIN[1], 0.0, -10.0)
#: A field polygon in image pixels (x, y), corners off the pixel grid.
FIELD = [(10.3, 20.7), (40.2, 20.7), (40.2, 50.1), (10.3, 50.1)]


def utm_to_lonlat(points):
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(UTM)
    dst.ImportFromEPSG(4326)
    for srs in (src, dst):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, dst)
    return [ct.TransformPoint(x, y)[:2] for x, y in points]


def pixel_to_world(points, gt=GT10):
    return [(gt[0] + x * gt[1], gt[3] + y * gt[5]) for x, y in points]


def write_geojson(path, polygons_lonlat, classes):
    """A GeoJSON (EPSG:4326) of polygons with a 'landuse' attribute, written by OGR."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds = ogr.GetDriverByName("GeoJSON").CreateDataSource(str(path))
    layer = ds.CreateLayer("fields", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("landuse", ogr.OFTString))
    for ring, name in zip(polygons_lonlat, classes):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(shapely.geometry.Polygon(ring).wkt))
        feature.SetField("landuse", name)
        layer.CreateFeature(feature)
    ds = None
    return str(path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """One 10 m UTM GeoTIFF (uint16 RGB with overviews, nodata 0 border) in a kwcoco dataset."""
    root = tmp_path_factory.mktemp("geo")
    rng = np.random.default_rng(3)
    pixels = random_pixels((96, 120, 3), "uint16", rng)
    pixels[pixels == 0] = 1
    pixels[:, :8] = 0  # a nodata border on the left
    path = write_raster(root / "scene.tif", pixels, options=["TILED=YES", "BLOCKXSIZE=32", "BLOCKYSIZE=32"],
                        nodata=0, geotransform=GT10, crs_epsg=UTM)
    ds = gdal.Open(path, gdal.GA_Update)
    ds.BuildOverviews("AVERAGE", [2])
    ds = None
    dset = kwcoco.CocoDataset()
    dset.fpath = str(root / "data.kwcoco.json")
    dset.add_image(file_name="scene.tif", width=120, height=96, channels="red|green|blue")
    dset.dump(dset.fpath)
    return dset.fpath, pixels


def test_geotransform_affine_round_trip():
    gt = (500010.5, 10.0, 0.25, 4100020.0, -0.5, -10.0)
    assert geo.affine_to_gdal(geo.gdal_to_affine(gt)) == gt
    tf = geo.gdal_to_affine(gt)
    c, a, b, f, d, e = gt
    np.testing.assert_allclose((tf.matrix @ [3.0, 7.0, 1.0])[:2], [c + 3 * a + 7 * b, f + 3 * d + 7 * e])


def test_params_carry_window_geotransform_and_crs(scene):
    path, _ = scene
    sampler = ndpatch.CocoSampler(path)
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(10, 30), slice(-4, 20))})
    gt = sample["params"]["geotransform"]
    assert gt == (ORIGIN[0] - 40.0, 10.0, 0.0, ORIGIN[1] - 100.0, 0.0, -10.0)
    srs = osr.SpatialReference(wkt=sample["params"]["crs"])
    assert srs.GetAuthorityCode(None) == str(UTM)


def test_half_scale_equals_overview_read(scene):
    path, _ = scene
    sampler = ndpatch.CocoSampler(path)
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(20, 60), slice(40, 100)), "scale": 0.5})
    ds = gdal.Open(sampler.index.source(1).path)
    expected = np.stack([ds.GetRasterBand(b + 1).GetOverview(0).ReadAsArray(20, 10, 30, 20)
                         for b in range(3)], -1)
    np.testing.assert_array_equal(sample["im"], expected)
    assert sample["params"]["geotransform"] == (ORIGIN[0] + 400, 20.0, 0.0, ORIGIN[1] - 200, 0.0, -20.0)
    assert sample["params"]["scale"] == 0.5


def test_gsd_target_is_a_scale(scene):
    path, _ = scene
    sampler = ndpatch.CocoSampler(path)
    by_gsd = sampler.load_sample({"gid": 1, "space_slice": (slice(20, 60), slice(40, 100)), "gsd": 20})
    by_scale = sampler.load_sample({"gid": 1, "space_slice": (slice(20, 60), slice(40, 100)), "scale": 0.5})
    np.testing.assert_array_equal(by_gsd["im"], by_scale["im"])


def test_window_geotiff_round_trips_and_lines_up(scene, tmp_path):
    path, pixels = scene
    sampler = ndpatch.CocoSampler(path)
    out = tmp_path / "window.tif"
    sample = geo.write_sample(sampler, {"gid": 1, "space_slice": (slice(30, 50), slice(50, 80))}, out)
    ds = gdal.Open(str(out))
    assert ds.GetGeoTransform() == sample["params"]["geotransform"]
    assert osr.SpatialReference(wkt=ds.GetProjection()).IsSame(osr.SpatialReference(wkt=sample["params"]["crs"]))
    # The written pixel at world (x, y) is the source pixel at the same world position.
    written = np.moveaxis(ds.ReadAsArray(), 0, -1)
    np.testing.assert_array_equal(written, pixels[30:50, 50:80])
    assert ds.GetRasterBand(1).GetNoDataValue() == 0


def test_valid_fraction_counts_padding_and_nodata(scene):
    path, _ = scene
    sampler = ndpatch.CocoSampler(path)
    # 20 columns: 4 outside the image, 8 nodata border, 8 valid
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(0, 10), slice(-4, 16))})
    assert sample["params"]["valid_fraction"] == pytest.approx(8 / 20)
    inside = sampler.load_sample({"gid": 1, "space_slice": (slice(0, 10), slice(50, 60))})
    assert inside["params"]["valid_fraction"] == 1.0
    assert geo.window_valid_fraction(sampler, {"gid": 1, "space_slice": (slice(0, 10), slice(-4, 16))}) == \
        pytest.approx(0.4)


@pytest.fixture()
def labelled(scene, tmp_path):
    """The scene's dataset plus the FIELD polygon imported from a GeoJSON in EPSG:4326."""
    path, _ = scene
    other = [(70.0, 60.0), (110.5, 60.0), (90.0, 90.5)]
    vectors = write_geojson(tmp_path / "fields.geojson",
                            [utm_to_lonlat(pixel_to_world(FIELD)), utm_to_lonlat(pixel_to_world(other))],
                            ["wheat", "forest"])
    out = tmp_path / "labelled.kwcoco.json"
    counts = geo.import_vectors(path, vectors, category_field="landuse", out=out)
    return str(out), counts, other


def test_imported_polygons_land_on_the_right_pixels(labelled):
    out, counts, other = labelled
    assert counts["annotations"] == 2 and counts["features"] == 2
    dset = kwcoco.CocoDataset(out)
    by_name = {dset.cats[ann["category_id"]]["name"]: ann for ann in dset.anns.values()}
    assert set(by_name) == {"wheat", "forest"}
    for name, ring in (("wheat", FIELD), ("forest", other)):
        ann = by_name[name]
        got = shapely.geometry.shape(
            {"type": "Polygon", "coordinates": [ann["segmentation"][0]["exterior"]]})
        assert got.symmetric_difference(shapely.geometry.Polygon(ring)).area < 1e-6
    np.testing.assert_allclose(by_name["wheat"]["bbox"], [10.3, 20.7, 29.9, 29.4], atol=1e-6)


def test_masks_match_independent_rasterisation(labelled):
    out, _, other = labelled
    sampler = ndpatch.CocoSampler(out)
    window = (slice(15, 65), slice(5, 115))
    sample = sampler.load_sample({"gid": 1, "space_slice": window}, with_masks=True)
    cats = {c["name"]: c["id"] for c in sampler.dset.cats.values()}
    ys, xs = np.mgrid[0:50, 0:110] + 0.5
    expected = np.zeros((50, 110), np.int32)
    for name, ring in (("wheat", FIELD), ("forest", other)):
        shifted = shapely.affinity.translate(shapely.geometry.Polygon(ring), -5, -15)
        expected[shapely.contains_xy(shifted, xs, ys)] = cats[name]
    np.testing.assert_array_equal(sample["label_map"], expected)
    masks = sample["instance_masks"]
    assert masks.shape == (2, 50, 110)
    for k, aid in enumerate(sample["mask_aids"]):
        cid = sampler.dset.anns[int(aid)]["category_id"]
        np.testing.assert_array_equal(masks[k], expected == cid)


def test_scaled_annotations_match_pixels(labelled):
    out, _, _ = labelled
    sampler = ndpatch.CocoSampler(out)
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(10, 70), slice(0, 60)), "scale": 0.5})
    assert sample["im"].shape == (30, 30, 3)
    box = sample["annots"]["rel_boxes"].to_xywh().data[0]
    np.testing.assert_allclose(box, [(10.3 - 0) / 2, (20.7 - 10) / 2, 29.9 / 2, 29.4 / 2], atol=1e-5)
    tf = sample["params"]["tf_rel_to_abs"]
    np.testing.assert_allclose((tf.matrix @ [box[0], box[1], 1.0])[:2], [10.3, 20.7], atol=1e-5)


def test_import_vectors_cli_fixed_class_and_errors(scene, tmp_path, capsys):
    path, _ = scene
    vectors = write_geojson(tmp_path / "one.geojson", [utm_to_lonlat(pixel_to_world(FIELD))], ["x"])
    out = tmp_path / "cli.kwcoco.json"
    assert main(["import-vectors", path, vectors, "--category", "field", "--out", str(out)]) == 0
    assert "annotations=1" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["categories"]] == ["field"]
    assert main(["import-vectors", path, vectors, "--category-field", "nope", "--out", str(out)]) == 1
    assert "no field 'nope'" in capsys.readouterr().err


def test_show_cli_writes_a_georeferenced_window(scene, tmp_path):
    path, pixels = scene
    out = tmp_path / "show.tif"
    assert main(["show", path, "--gid", "1", "--cx", "60", "--cy", "40", "--width", "20", "--height", "10",
                 "--out", str(out)]) == 0
    ds = gdal.Open(str(out))
    assert ds.GetGeoTransform() == (ORIGIN[0] + 500, 10.0, 0.0, ORIGIN[1] - 350, 0.0, -10.0)
    np.testing.assert_array_equal(np.moveaxis(ds.ReadAsArray(), 0, -1), pixels[35:45, 50:70])


def descriptors_on(path) -> int:
    """How many of this process's open file descriptors point at ``path``."""
    real = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")) == real
        except OSError:
            pass
    return count


@pytest.mark.parametrize("backend", ["npy", "auto"])
def test_georeferencing_comes_from_the_cache_entry(scene, tmp_path, backend):
    path, _ = scene
    workdir = str(tmp_path / "cache")
    converter = ndpatch.CocoSampler(path, backend="npy", workdir=workdir)
    assert converter.entry(1).meta["converted"]
    source = converter.index.source(1).path
    gdalio.POOL.forget(source)
    assert descriptors_on(source) == 0
    sampler = ndpatch.CocoSampler(path, backend=backend, workdir=workdir)
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(10, 30), slice(-4, 20))})
    batch = sampler.load_batch([{"gid": 1, "space_slice": (slice(0, 8), slice(0, 8))}] * 2, threads=2)
    assert sampler.entry(1).kind == "npy" and not sampler.entry(1).meta["converted"]
    assert sample["params"]["geotransform"] == (ORIGIN[0] - 40.0, 10.0, 0.0, ORIGIN[1] - 100.0, 0.0, -10.0)
    assert osr.SpatialReference(wkt=sample["params"]["crs"]).GetAuthorityCode(None) == str(UTM)
    assert batch["im"].shape == (2, 8, 8, 3)
    assert descriptors_on(source) == 0   # read from the cache: the source was only stat-ed
