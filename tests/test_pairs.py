"""import-pairs: label rasters as assets, polygons that rasterise back exactly, and the export round trip."""
import numpy as np
import pytest
from osgeo import gdal

import ndpatch
from ndpatch.cli import main
from ndpatch.demo import make_dataset, write_raster
from ndpatch.errors import DatasetError, OutputExistsError
from ndpatch.export import export
from ndpatch.masks import class_map
from ndpatch.pairs import import_pairs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    dset = make_dataset(root / "src", [{"shape": (60, 70, 3), "dtype": "uint8"}, {"shape": (50, 64), "dtype": "uint16"}])
    export(dset, root / "chips", window=24, progress=False)
    return root


def test_export_import_export_gives_identical_chips(exported, tmp_path):
    out = tmp_path / "pairs.kwcoco.json"
    assert main(["import-pairs", str(exported / "chips/images"), str(exported / "chips/labels"), str(out)]) == 0
    dset = ndpatch.CocoSampler(str(out)).dset
    assert [c["name"] for c in dset.dataset["categories"]] == ["box", "triangle", "point"]
    assert dset.imgs[1]["assets"][1]["channels"] == "class_id"
    export(str(out), tmp_path / "again", window=24, progress=False)
    for kind in ("images", "labels"):
        names = sorted(p.name for p in (exported / "chips" / kind).iterdir())
        assert sorted(p.name for p in (tmp_path / "again" / kind).iterdir()) == names
        for name in names:
            a = gdal.Open(str(exported / "chips" / kind / name)).ReadAsArray()
            b = gdal.Open(str(tmp_path / "again" / kind / name)).ReadAsArray()
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_polygons_rasterise_back_to_the_label_raster(exported, tmp_path):
    dset = import_pairs(exported / "chips/images", exported / "chips/labels", tmp_path / "p.kwcoco.json",
                        polygons=True)
    assert dset.n_annots > 0
    sampler = ndpatch.CocoSampler(str(tmp_path / "p.kwcoco.json"))
    for gid, img in sampler.dset.imgs.items():
        label = gdal.Open(str(exported / "chips/labels" / img["file_name"].split("/")[-1])).ReadAsArray()
        sample = sampler.load_sample({"gid": gid, "space_slice": (slice(0, img["height"]), slice(0, img["width"]))})
        painted = class_map(sample["annots"], label.shape)
        # Polygonize traces pixel edges: every region's pixel centres are inside its own polygon only
        # (regions of one label never overlap), so the map is exact wherever one region covers a pixel.
        np.testing.assert_array_equal(painted, label)


def test_errors(exported, tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "labs").mkdir()
    write_raster(tmp_path / "imgs/a.tif", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(DatasetError, match="no label raster of the same name.*a.tif"):
        import_pairs(tmp_path / "imgs", tmp_path / "labs", tmp_path / "x.json")
    write_raster(tmp_path / "labs/a.tif", np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(DatasetError, match="one band"):
        import_pairs(tmp_path / "imgs", tmp_path / "labs", tmp_path / "x.json")
    write_raster(tmp_path / "labs/a.tif", np.zeros((3, 5), np.uint8))
    with pytest.raises(DatasetError, match="label raster is 3x5"):
        import_pairs(tmp_path / "imgs", tmp_path / "labs", tmp_path / "x.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(OutputExistsError):
        import_pairs(tmp_path / "imgs", tmp_path / "labs", tmp_path / "x.json")
