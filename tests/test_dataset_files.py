"""Dataset files as users have them: zipped bundles, no categories, legacy assets, bad records."""
import json
import os
import warnings
import zipfile

import kwcoco
import numpy as np
import pytest

import ndpatch
from ndpatch.dataset import load_dataset
from ndpatch.demo import write_raster
from ndpatch.errors import DatasetError, DatasetWarning
from ndpatch.splits import split_dataset


@pytest.fixture
def bundle(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    write_raster(tmp_path / "a.tif", pixels)
    return tmp_path, pixels


def test_a_kwcoco_zip_bundle_loads_and_samples(bundle):
    folder, pixels = bundle
    dset = kwcoco.CocoDataset({"categories": [{"id": 1, "name": "car"}],
                               "images": [{"id": 1, "file_name": "a.tif", "width": 40, "height": 30}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 5, 6]}]},
                              bundle_dpath=str(folder))
    dset.fpath = str(folder / "data.kwcoco.zip")
    dset.dump()
    assert zipfile.is_zipfile(folder / "data.kwcoco.zip")
    sampler = ndpatch.CocoSampler(str(folder / "data.kwcoco.zip"))
    assert os.path.isabs(sampler.dset.bundle_dpath)
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(0, 10), slice(0, 10))})
    np.testing.assert_array_equal(sample["im"], pixels[:10, :10])
    assert sample["annots"]["aids"].tolist() == [1]


@pytest.mark.parametrize("content, message", [
    (b"hello", "not a zip file"),
    (None, "cannot read the kwcoco zip bundle: .*exactly 1 kwcoco member"),
])
def test_bad_zip_bundles_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.kwcoco.zip"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.kwcoco.json", "{}")
            archive.writestr("b.kwcoco.json", "{}")
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        ndpatch.CocoSampler(str(path))


def test_malformed_json_is_still_named(tmp_path):
    (tmp_path / "bad.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"bad.json: malformed json"):
        load_dataset(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match=r"list.json: not a COCO dataset"):
        load_dataset(tmp_path / "list.json")


@pytest.fixture
def nwpu(tmp_path):
    """torchgeo's committed NWPU VHR-10 test file (tests/data/vhr10): no categories, a 9-number polygon."""
    for i in (1, 2):
        write_raster(tmp_path / f"00{i}.jpg", np.full((8, 8, 3), 40 * i, np.uint8), driver="JPEG")
    data = {"images": [{"file_name": "001.jpg", "height": 8, "width": 8, "id": 0},
                       {"file_name": "002.jpg", "height": 8, "width": 8, "id": 1}],
            "annotations": [
                {"id": 0, "image_id": 0, "category_id": 1, "area": 4.0, "bbox": [4, 4, 2, 2],
                 "segmentation": [[1, 1, 2, 2, 3, 3, 4, 5, 5]], "iscrowd": 0},
                {"id": 1, "image_id": 1, "category_id": 1, "area": 4.0, "bbox": [4, 4, 2, 2],
                 "segmentation": [[1, 1, 2, 2, 3, 3, 4, 4, 5, 5]], "iscrowd": 0}]}
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    return str(tmp_path / "annotations.json")


def test_a_json_without_categories_gets_them_from_its_annotations(nwpu):
    with pytest.warns(DatasetWarning, match=r"has no categories; its annotations' category ids 1 get categories"):
        sampler = ndpatch.CocoSampler(nwpu)
    assert [cat["name"] for cat in sampler.dset.dataset["categories"]] == ["1"]
    sample = sampler.load_sample({"gid": 1, "space_slice": (slice(0, 8), slice(0, 8))}, with_masks=True)
    assert sample["annots"]["cids"].tolist() == [1] and list(sample["classes"]) == ["1"]
    assert len(sample["annots"]["rel_ssegs"]) == 1 and sample["label_map"].shape == (8, 8)  # a collinear ring: no area


def test_an_odd_length_polygon_is_named_not_a_bare_valueerror(nwpu):
    with pytest.warns(DatasetWarning):
        sampler = ndpatch.CocoSampler(nwpu)
    window = {"gid": 0, "space_slice": (slice(0, 8), slice(0, 8))}
    assert sampler.load_sample(window, with_annots=False)["im"].shape == (8, 8, 3)
    boxes = sampler.load_sample(window)["annots"]
    assert boxes["aids"].tolist() == [0] and boxes.xywh.tolist() == [[4.0, 4.0, 2.0, 2.0]]
    expected = r"annotation 0 \(image 0\): segmentation is not .*a polygon of 9 numbers: x, y pairs need an even count"
    with pytest.raises(DatasetError, match=expected):
        boxes["rel_ssegs"]
    with pytest.raises(DatasetError, match=expected):
        sampler.load_sample(window, with_masks=True)
    sampler.regions.configure(window_dims=(4, 4))
    with pytest.raises(DatasetError, match=r"image 0: annotation 0 has a segmentation that is not a polygon"):
        sampler.regions.new_sample_grid()


@pytest.mark.parametrize("key", ["images", "annotations"])
def test_duplicate_ids_are_refused(bundle, key):
    folder, _ = bundle
    data = {"categories": [{"id": 1, "name": "car"}],
            "images": [{"id": 1, "file_name": "a.tif"}, {"id": 2, "file_name": "a.tif"}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
                            {"id": 6, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]}
    data[key][1]["id"] = data[key][0]["id"]
    path = folder / "dup.kwcoco.json"
    path.write_text(json.dumps(data))
    name, repeated = ("image", 1) if key == "images" else ("annotation", 5)
    with pytest.raises(DatasetError, match=rf"dup.kwcoco.json: {name} id {repeated} appears 2 times; ids must be unique"):
        ndpatch.CocoSampler(str(path))
    with pytest.warns(UserWarning, match="same id"):   # kwcoco's own, when the dataset is made by the caller
        dset = kwcoco.CocoDataset(data)
    with pytest.raises(DatasetError, match=f"{name} id {repeated} appears 2 times"):
        ndpatch.CocoSampler(dset)


def dataset_with_annotation(folder, ann):
    data = {"categories": [{"id": 1, "name": "car"}],
            "images": [{"id": 1, "file_name": "a.tif", "width": 40, "height": 30}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
                            {"id": 7, "image_id": 1, "category_id": 1, **ann}]}
    path = folder / "d.kwcoco.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("bbox, reason", [
    ([1, 2, 3], r"bbox \[1, 2, 3\] is not \[x, y, w, h\] of finite numbers"),
    (["1", 2, 3, 4], r"bbox \['1', 2, 3, 4\] is not \[x, y, w, h\]"),
    ([0, 0, 1e308, 4], r"bbox \[0, 0, 1e\+308, 4\] has a coordinate beyond 2147483648 pixels"),
    ([0, 0, -2, 4], r"bbox \[0, 0, -2, 4\] is not \[x, y, w, h\] of finite numbers with w, h >= 0"),
    ([0, 0, True, 4], r"bbox \[0, 0, True, 4\] is not \[x, y, w, h\]"),
])
def test_bad_boxes_name_the_annotation(bundle, bbox, reason):
    folder, _ = bundle
    sampler = ndpatch.CocoSampler(dataset_with_annotation(folder, {"bbox": bbox}))
    expected = rf"d.kwcoco.json: annotation 7 \(image 1\): {reason}"
    with pytest.raises(DatasetError, match=expected):
        sampler.load_sample({"gid": 1, "space_slice": (slice(0, 8), slice(0, 8))})
    with pytest.raises(DatasetError, match=expected):
        sampler.regions.targets
    assert sampler.load_sample({"gid": 1, "space_slice": (slice(0, 8), slice(0, 8))}, with_annots=False)


def test_an_annotation_without_extent_is_warned_about_once(bundle):
    folder, _ = bundle
    sampler = ndpatch.CocoSampler(dataset_with_annotation(folder, {}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            sample = sampler.load_sample({"gid": 1, "space_slice": (slice(0, 30), slice(0, 40))})
        table = sampler.regions.targets
    messages = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert messages == ["dataset " + sampler.dset.fpath + ": 1 annotation(s) have no bbox, segmentation or keypoints "
                        "and are left out of every window: annotation 7 (image 1)"]
    assert sample["annots"]["aids"].tolist() == [1] and table["aid"].tolist() == [1]


@pytest.mark.parametrize("declared", [(20, 25), (40, 50), (100000, 100000)])
@pytest.mark.parametrize("backend", [None, "npy"])
def test_declared_sizes_that_disagree_with_the_file_warn_once(bundle, tmp_path, declared, backend):
    folder, pixels = bundle
    dset = kwcoco.CocoDataset()
    dset.add_image(file_name=str(folder / "a.tif"), height=declared[0], width=declared[1])
    sampler = ndpatch.CocoSampler(dset, backend=backend, workdir=str(tmp_path / "cache"))
    window = {"gid": 1, "space_slice": (slice(20, 36), slice(30, 46))}
    with pytest.warns(DatasetWarning, match=rf"image 1 \(.*a.tif\): the dataset says it is {declared[1]}x{declared[0]} "
                                            r"\(width x height\) but the file is 40x30; ndpatch reads the file's size"):
        sample = sampler.load_sample(window)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = sampler.load_sample(window)
    expected = np.zeros((16, 16, 3), np.uint8)
    expected[:10, :10] = pixels[20:30, 30:40]
    np.testing.assert_array_equal(sample["im"], expected)
    np.testing.assert_array_equal(again["im"], expected)
    assert sample["params"]["data_dims"] == (30, 40)
    assert sample["params"]["valid_fraction"] == 100 / 256


def test_split_keeps_legacy_auxiliary_assets_readable(tmp_path):
    rng = np.random.default_rng(1)
    bands = {name: rng.integers(0, 255, (24, 32), dtype=np.uint8) for name in ("red", "nir")}
    (tmp_path / "src" / "bands").mkdir(parents=True)
    for name, band in bands.items():
        write_raster(tmp_path / "src" / "bands" / f"{name}.tif", band)
    images = [{"id": gid, "width": 32, "height": 24, "name": f"img{gid}",
               "auxiliary": [{"file_name": f"bands/{name}.tif", "channels": name, "width": 32, "height": 24}
                             for name in bands]} for gid in (1, 2, 3)]
    path = tmp_path / "src" / "data.kwcoco.json"
    path.write_text(json.dumps({"images": images, "categories": [], "annotations": []}))
    report = split_dataset(str(path), tmp_path / "splits", {"train": 2 / 3, "val": 1 / 3, "test": 0}, seed=0)
    assert sum(part["images"] for part in report.values()) == 3
    for name in ("train", "val"):
        written = json.loads((tmp_path / "splits" / f"{name}.kwcoco.json").read_text())
        for img in written["images"]:
            files = [a["file_name"] for a in img.get("auxiliary") or img.get("assets")]
            assert files == ["../src/bands/red.tif", "../src/bands/nir.tif"]
        sampler = ndpatch.CocoSampler(str(tmp_path / "splits" / f"{name}.kwcoco.json"))
        gid = written["images"][0]["id"]
        im = sampler.load_sample({"gid": gid, "space_slice": (slice(2, 12), slice(5, 25)), "channels": "nir|red"})["im"]
        np.testing.assert_array_equal(im, np.dstack([bands["nir"][2:12, 5:25], bands["red"][2:12, 5:25]]))
