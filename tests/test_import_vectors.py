"""``import-vectors`` over many images and features: the same polygons as a brute-force clip, no duplicates on a
re-import, clear errors for vector files OGR cannot read."""
import json

import kwcoco
import numpy as np
import pytest
import shapely

from ndpatch import geo
from ndpatch.cli import main
from ndpatch.demo import write_raster
from ndpatch.errors import DatasetError, DatasetWarning, SourceReadError

UTM = 32631
GRID = 5                          # images on a GRID x GRID layout, 60 x 80 pixels of 10 m each


def geotransform(i):
    return (500000.0 + (i % GRID) * 700, 10.0, 0.0, 4100000.0 - (i // GRID) * 500, 0.0, -10.0)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles")
    dset = kwcoco.CocoDataset()
    dset.fpath = str(root / "tiles.kwcoco.json")
    for i in range(GRID * GRID):
        write_raster(root / f"t{i}.tif", np.zeros((60, 80), np.uint8), geotransform=geotransform(i), crs_epsg=UTM)
        dset.add_image(file_name=f"t{i}.tif", width=80, height=60)
    write_raster(root / "plain.tif", np.zeros((10, 10), np.uint8))        # no georeferencing
    dset.add_image(file_name="plain.tif", width=10, height=10)
    dset.dump()
    rng = np.random.default_rng(0)
    polygons = []
    for _ in range(300):
        x, y = 500000 + rng.uniform(-100, GRID * 700), 4100000 - rng.uniform(-100, GRID * 500)
        w, h = rng.uniform(5, 200, 2)
        polygons.append([(x, y), (x + w, y - h / 3), (x + w / 2, y - h), (x, y)])
    polygons.append([(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 0.0)])  # far away: on no image
    vectors = root / "polygons.geojson"
    vectors.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": f"EPSG:{UTM}"}},
        "features": [{"type": "Feature", "properties": {"kind": ["a", "b"][k % 2]},
                      "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}}
                     for k, ring in enumerate(polygons)]}))
    return dset.fpath, str(vectors), polygons


def brute_force(polygons):
    """Each polygon clipped to each image, in pixels: {(image index, polygon index): shapely geometry}."""
    found = {}
    for i in range(GRID * GRID):
        c, a, _, f, _, e = geotransform(i)
        frame = shapely.box(0, 0, 80, 60)
        for k, ring in enumerate(polygons):
            pixels = shapely.Polygon([((x - c) / a, (y - f) / e) for x, y in ring]).intersection(frame)
            if pixels.area > 0:
                found[(i + 1, k)] = pixels
    return found


def test_the_indexed_import_finds_what_a_brute_force_clip_finds(tiles, tmp_path):
    path, vectors, polygons = tiles
    out = tmp_path / "out.kwcoco.json"
    counts = geo.import_vectors(path, vectors, category_field="kind", out=out)
    expected = brute_force(polygons)
    assert counts == {"features": len(polygons), "annotations": len(expected), "replaced": 0,
                      "images": GRID * GRID, "images_without_georef": 1}
    dset = kwcoco.CocoDataset(str(out))
    got = {(ann["image_id"], ann["vector_source"]["fid"]): ann for ann in dset.anns.values()}
    assert set(got) == set(expected)
    for key, ann in got.items():
        rings = [shapely.Polygon(part["exterior"], part.get("interiors", [])) for part in ann["segmentation"]]
        assert shapely.union_all(rings).symmetric_difference(expected[key]).area < 1e-6
        assert dset.cats[ann["category_id"]]["name"] == ["a", "b"][key[1] % 2]
        assert ann["vector_source"]["layer"] == "polygons"


def test_importing_twice_replaces_instead_of_duplicating(tiles, tmp_path):
    path, vectors, polygons = tiles
    out = tmp_path / "twice.kwcoco.json"
    first = geo.import_vectors(path, vectors, category="thing", out=out)
    second = geo.import_vectors(out, vectors, category="thing", out=out)
    assert second["replaced"] == first["annotations"] == second["annotations"]
    dset = kwcoco.CocoDataset(str(out))
    keys = [(ann["image_id"], ann["vector_source"]["fid"]) for ann in dset.anns.values()]
    assert len(keys) == len(set(keys)) == first["annotations"]
    other = tmp_path / "other.geojson"
    other.write_text(json.dumps({"type": "FeatureCollection",
                                 "crs": {"type": "name", "properties": {"name": f"EPSG:{UTM}"}},
                                 "features": [{"type": "Feature", "properties": {},
                                               "geometry": {"type": "Polygon", "coordinates": [[
                                                   [500010, 4099990], [500100, 4099990], [500100, 4099900],
                                                   [500010, 4099990]]]}}]}))
    third = geo.import_vectors(out, str(other), category="thing", out=out)
    assert third == {"features": 1, "annotations": 1, "replaced": 0, "images": GRID * GRID,
                     "images_without_georef": 1}
    assert kwcoco.CocoDataset(str(out)).n_annots == first["annotations"] + 1   # another file's polygons stay


def test_unreadable_vector_files_are_named(tiles, tmp_path, capsys):
    path, _, _ = tiles
    with pytest.raises(SourceReadError, match=r"vector file .*missing.geojson does not exist"):
        geo.import_vectors(path, tmp_path / "missing.geojson", category="x")
    garbage = tmp_path / "garbage.geojson"
    garbage.write_text("this is not geojson")
    with pytest.raises(SourceReadError, match=r"garbage.geojson: OGR cannot read it as vector data"):
        geo.import_vectors(path, garbage, category="x")
    assert main(["import-vectors", path, str(tmp_path / "missing.geojson"), "--category", "x"]) == 1
    assert "missing.geojson does not exist" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="exactly one of category_field and category"):
        geo.import_vectors(path, garbage)


def test_no_georeferenced_image_warns_that_nothing_was_imported(tmp_path):
    write_raster(tmp_path / "plain.tif", np.zeros((10, 10), np.uint8))
    dset = kwcoco.CocoDataset()
    dset.add_image(file_name=str(tmp_path / "plain.tif"), width=10, height=10)
    vectors = tmp_path / "v.geojson"
    vectors.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.warns(DatasetWarning, match="no image of dataset .* is georeferenced .*nothing imported"):
        counts = geo.import_vectors(dset, vectors, category="x")
    assert counts["images_without_georef"] == 1 and counts["annotations"] == 0


def test_cli_shows_progress_unless_quiet(tiles, tmp_path, capsys):
    path, vectors, _ = tiles
    out = tmp_path / "cli.kwcoco.json"
    assert main(["import-vectors", path, vectors, "--category", "x", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "import-vectors: 100%" in captured.err and "annotations=" in captured.out
    assert main(["import-vectors", path, vectors, "--category", "x", "--out", str(out), "-q"]) == 0
    captured = capsys.readouterr()
    assert "import-vectors" not in captured.err and "replaced=" in captured.out
