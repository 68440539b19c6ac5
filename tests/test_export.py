"""Export formats: chips bit-exact against load_sample and an independent rasterisation; kwcoco,
webdataset and TFRecord read back; errors; the docs example."""
import csv
import json
import pickle
import sys
from collections import Counter
from pathlib import Path

import kwcoco
import numpy as np
import pytest
import shapely
from hypothesis import given, strategies as st
from osgeo import gdal

import ndpatch
from ndpatch.cli import main
from ndpatch.demo import make_dataset, random_pixels, write_raster
from ndpatch.errors import DatasetError, ExportError, OutputExistsError
from ndpatch.export import TFRECORD_FEATURES, export
from ndpatch.export.plan import stratified_subset
from ndpatch.masks import class_map

GEO_TRANSFORM = (500000.0, 0.5, 0.0, 4600000.0, 0.0, -0.5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two images: a georeferenced RGB uint8 (UTM 33N) and a single-band uint16."""
    root = tmp_path_factory.mktemp("export_src")
    dset = make_dataset(root, [{"shape": (70, 90, 3), "dtype": "uint8"}, {"shape": (64, 80), "dtype": "uint16"}])
    path = dset.get_image_fpath(1)
    write_raster(path, random_pixels((70, 90, 3), "uint8", np.random.default_rng(5)),
                 geotransform=GEO_TRANSFORM, crs_epsg=32633)
    return dset


@pytest.fixture(scope="module")
def chips_dir(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("chips") / "out"
    export(dataset, out, format="chips", window="32x40", overlap=0.25, progress=False)
    return out


def read_rows(out):
    with open(out / "chips.csv") as file:
        return list(csv.DictReader(file))


def read_tif(path):
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray()
    return (arr[None] if arr.ndim == 2 else arr).transpose(1, 2, 0), ds


def reference_label(dset, gid, r0, c0, shape):
    """Pixel-centre rasterisation with shapely, smaller area on top; also the pixels on any edge."""
    label = np.zeros(shape, np.uint8)
    edge = np.zeros(shape, bool)
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    xs, ys = cols.ravel() + c0 + 0.5, rows.ravel() + r0 + 0.5
    geoms = []
    for aid in dset.index.gid_to_aids[gid]:
        ann = dset.anns[aid]
        if ann.get("segmentation"):
            geom = shapely.Polygon(np.array(ann["segmentation"][0]).reshape(-1, 2))
        else:
            x, y, w, h = ann["bbox"]
            geom = shapely.box(x, y, x + w, y + h)
        geoms.append((-geom.area, aid, geom, ann["category_id"]))
    for _, _, geom, cid in sorted(geoms, key=lambda g: g[:2]):
        label[shapely.contains_xy(geom, xs, ys).reshape(shape)] = cid
        edge |= (shapely.distance(geom.boundary, shapely.points(xs, ys)) < 1e-6).reshape(shape)
    return label, edge


def test_chips_equal_load_sample_and_reference_labels(dataset, chips_dir):
    sampler = ndpatch.CocoSampler(dataset)
    rows = read_rows(chips_dir)
    assert len(rows) == 3 * 3 + 3 * 3  # 70 rows / 32 step 24 -> 0,24,38; 90 cols / 40 step 30 -> 0,30,50 ...
    for row in rows:
        gid, r0, r1, c0, c1 = (int(row[k]) for k in ("image_id", "row_start", "row_stop", "col_start", "col_stop"))
        assert (r1 - r0, c1 - c0) == (32, 40)
        image, _ = read_tif(chips_dir / "images" / f"{row['chip']}.tif")
        expected = sampler.load_sample({"gid": gid, "space_slice": (slice(r0, r1), slice(c0, c1))})["im"]
        assert image.dtype == expected.dtype
        np.testing.assert_array_equal(image, expected)
        label, _ = read_tif(chips_dir / "labels" / f"{row['chip']}.tif")
        assert label.shape[-1] == 1 and label.dtype == np.uint8
        ref, edge = reference_label(dataset, gid, r0, c0, (32, 40))
        np.testing.assert_array_equal(label[..., 0][~edge], ref[~edge])
        assert row["file_name"] == dataset.imgs[gid]["file_name"]
        assert [int(a) for a in row["aids"].split()] == sampler.load_sample(
            {"gid": gid, "space_slice": (slice(r0, r1), slice(c0, c1))})["annots"]["aids"].tolist()


def test_grid_covers_every_pixel(dataset, chips_dir):
    covered = {gid: np.zeros((img["height"], img["width"]), int) for gid, img in dataset.imgs.items()}
    for row in read_rows(chips_dir):
        covered[int(row["image_id"])][int(row["row_start"]):int(row["row_stop"]),
                                      int(row["col_start"]):int(row["col_stop"])] += 1
    assert all((c > 0).all() for c in covered.values())


def test_chips_are_georeferenced_and_lossless(chips_dir):
    for row in read_rows(chips_dir):
        _, ds = read_tif(chips_dir / "images" / f"{row['chip']}.tif")
        assert ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "DEFLATE"
        if row["image_id"] != "1":
            assert ds.GetGeoTransform(can_return_null=True) is None
            continue
        gt = ds.GetGeoTransform()
        inverse = gdal.InvGeoTransform(GEO_TRANSFORM)
        col, row_ = gdal.ApplyGeoTransform(inverse, gt[0], gt[3])
        assert (round(row_, 9), round(col, 9)) == (int(row["row_start"]), int(row["col_start"]))
        assert gt[1:] == GEO_TRANSFORM[1:] or np.allclose(gt[1:], GEO_TRANSFORM[1:])
        assert "32633" in ds.GetProjectionRef()
        _, label = read_tif(chips_dir / "labels" / f"{row['chip']}.tif")
        assert label.GetGeoTransform() == gt


def test_classes_and_summary(chips_dir):
    assert json.loads((chips_dir / "classes.json").read_text()) == {
        "0": "background", "1": "box", "2": "triangle", "3": "point"}
    summary = json.loads((chips_dir / "summary.json").read_text())
    assert summary["chips"] == 18 and summary["bytes"] > 0
    assert sum(summary["class_pixels"].values()) == 18 * 32 * 40


def test_kwcoco_export_annotations_are_shifted_originals(dataset, tmp_path):
    export(dataset, tmp_path / "k", format="kwcoco", window=32, progress=False)
    out = kwcoco.CocoDataset(str(tmp_path / "k" / "data.kwcoco.json"))
    assert out.n_images == len(read_rows(tmp_path / "k"))
    for gid, img in out.imgs.items():
        src = img["ndpatch_source"]
        dx, dy = src["col_start"], src["row_start"]
        got = [out.anns[a] for a in out.index.gid_to_aids[gid]]
        x0, y0, x1, y1 = dx, dy, src["col_stop"], src["row_stop"]
        originals = [a for a in dataset.annots(gid=src["image_id"]).objs
                     if a["bbox"][0] < x1 and a["bbox"][0] + max(a["bbox"][2], 1e-9) > x0
                     and a["bbox"][1] < y1 and a["bbox"][1] + max(a["bbox"][3], 1e-9) > y0]
        assert len(got) == len(originals)
        for new, old in zip(got, originals):
            assert new["bbox"] == [old["bbox"][0] - dx, old["bbox"][1] - dy, *old["bbox"][2:]]
            assert new["category_id"] == old["category_id"]
            if old.get("segmentation"):
                np.testing.assert_allclose(np.array(new["segmentation"][0]).reshape(-1, 2),
                                           np.array(old["segmentation"][0]).reshape(-1, 2) - [dx, dy])
            if old.get("keypoints"):
                assert new["keypoints"][0]["xy"] == [old["keypoints"][0]["xy"][0] - dx,
                                                     old["keypoints"][0]["xy"][1] - dy]
    sampler = ndpatch.CocoSampler(str(tmp_path / "k" / "data.kwcoco.json"))
    assert sampler.load_sample({"gid": 1})["im"].shape == (32, 32, 3)


def expected_sample(sampler, provenance):
    rows = slice(provenance["row_start"], provenance["row_stop"])
    cols = slice(provenance["col_start"], provenance["col_stop"])
    sample = sampler.load_sample({"gid": provenance["image_id"], "space_slice": (rows, cols)})
    return sample["im"], class_map(sample["annots"], sample["im"].shape[:2]), sample["annots"]


def test_webdataset_shards_read_back(dataset, tmp_path):
    import webdataset as wds
    export(dataset, tmp_path / "w", format="webdataset", window=32, shard_size=4, progress=False)
    shards = sorted(str(p) for p in (tmp_path / "w").glob("shard-*.tar"))
    assert len(shards) == -(-len(read_rows(tmp_path / "w")) // 4)
    sampler = ndpatch.CocoSampler(dataset)
    samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode())
    assert [s["__key__"] for s in samples] == [r["chip"] for r in read_rows(tmp_path / "w")]
    for sample in samples:
        im, label, annots = expected_sample(sampler, sample["json"]["provenance"])
        np.testing.assert_array_equal(sample["image.npy"], im)
        np.testing.assert_array_equal(sample["label.npy"], label)
        assert [a["category_id"] for a in sample["json"]["annotations"]] == annots["cids"].tolist()


def test_tfrecord_shards_read_back(dataset, tmp_path):
    from tfrecord.reader import tfrecord_loader
    export(dataset, tmp_path / "t", format="tfrecord", window=32, shard_size=5, progress=False)
    rows = read_rows(tmp_path / "t")
    sampler = ndpatch.CocoSampler(dataset)
    records = [rec for shard in sorted((tmp_path / "t").glob("shard-*.tfrecord"))
               for rec in tfrecord_loader(str(shard), None, TFRECORD_FEATURES)]
    assert len(records) == len(rows)
    for rec, row in zip(records, rows):
        assert bytes(rec["chip"]).decode() == row["chip"]
        r0, r1, c0, c1 = rec["window"].tolist()
        im, label, annots = expected_sample(sampler, {"image_id": int(rec["image_id"][0]), "row_start": r0,
                                                      "row_stop": r1, "col_start": c0, "col_stop": c1})
        image = np.frombuffer(bytes(rec["image"]), bytes(rec["image_dtype"]).decode()).reshape(rec["image_shape"])
        np.testing.assert_array_equal(image, im)
        np.testing.assert_array_equal(
            np.frombuffer(bytes(rec["label"]), bytes(rec["label_dtype"]).decode()).reshape(label.shape), label)
        np.testing.assert_allclose(rec["boxes"].reshape(-1, 4), annots["rel_boxes"].to_xywh().data)
        assert rec["class_ids"].tolist() == annots["cids"].tolist()


@pytest.mark.parametrize("format, module", [("webdataset", "webdataset"), ("tfrecord", "tfrecord")])
def test_a_format_whose_module_is_missing_is_refused_before_writing(dataset, tmp_path, capsys, monkeypatch,
                                                                     format, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if the export extra were not installed
    with pytest.raises(ExportError, match=rf"needs {module}.*pip install 'ndpatch\[export\]'"):
        export(dataset, tmp_path / "out", format=format, window=32, progress=False)
    assert main(["export", dataset.fpath, str(tmp_path / "out"), "--window", "32", "--format", format]) == 1
    assert f"needs {module}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_two_workers_write_the_same_chips(dataset, chips_dir, tmp_path):
    export(dataset, tmp_path / "w2", format="chips", window="32x40", overlap=0.25, workers=2, progress=False)
    assert (tmp_path / "w2" / "chips.csv").read_text() == (chips_dir / "chips.csv").read_text()
    for row in read_rows(chips_dir):
        for kind in ("images", "labels"):
            name = f"{kind}/{row['chip']}.tif"
            np.testing.assert_array_equal(read_tif(tmp_path / "w2" / name)[0], read_tif(chips_dir / name)[0])


def test_targets_positives_and_count(dataset, tmp_path):
    summary = export(dataset, tmp_path / "p", targets="positives", window=16, count=4, seed=3, progress=False)
    rows = read_rows(tmp_path / "p")
    assert summary["chips"] == len(rows) == 4
    assert all(row["aids"] for row in rows)


def test_bad_inputs(dataset, chips_dir, tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'png'"):
        export(dataset, tmp_path / "a", format="png", progress=False)
    with pytest.raises(DatasetError, match="does not exist"):
        export(tmp_path / "missing.json", tmp_path / "b", progress=False)
    with pytest.raises(OutputExistsError, match="exists and is not empty"):
        export(dataset, chips_dir, window="32x40", overlap=0.25, progress=False)
    with pytest.raises(ExportError, match="settings differ in overlap, window"):
        export(dataset, chips_dir, window=16, resume=True, progress=False)
    with pytest.raises(ndpatch.TargetError, match="window size"):
        export(dataset, tmp_path / "c", window="abc", progress=False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("user file")
    with pytest.raises(OutputExistsError, match="holds no ndpatch export"):
        export(dataset, tmp_path / "d", resume=True, progress=False)
    (tmp_path / "f").write_text("a file")
    with pytest.raises(OutputExistsError, match="exists and is not a folder"):
        export(dataset, tmp_path / "f", overwrite=True, progress=False)


def test_overwrite_replaces_only_the_previous_export(dataset, tmp_path):
    out = tmp_path / "o"
    export(dataset, out, window=32, progress=False)
    (out / "notes.txt").write_text("mine")
    export(dataset, out, window=64, overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    names = {p.name for p in (out / "images").iterdir()}
    assert names == {f"{r['chip']}.tif" for r in read_rows(out)}


def test_cli_export_and_error_exit(dataset, tmp_path, capsys):
    assert main(["export", dataset.fpath, str(tmp_path / "cli"), "--window", "32", "--format", "kwcoco"]) == 0
    assert "chips (kwcoco)" in capsys.readouterr().out
    assert main(["export", dataset.fpath, str(tmp_path / "cli"), "--window", "32"]) == 1
    assert "ndpatch: error:" in capsys.readouterr().err


# -- multi-file images (bands at 10, 20 and 60 m as separate files) -----------------------
UTM31 = 32631
X0, Y0 = 600000.0, 5000000.0


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory):
    """A 120x180 (10 m) scene: B04|B03|B02 at 10 m, B8A at 20 m, B01 at 60 m, and a class_id raster."""
    root = tmp_path_factory.mktemp("sentinel")
    rng = np.random.default_rng(4)
    height, width = 120, 180
    labels = np.zeros((height, width), np.uint8)
    labels[10:50, 30:100] = 2
    bands = {"b10.tif": (10, "B04|B03|B02", 3), "b20.tif": (20, "B8A", 1), "b60.tif": (60, "B01", 1)}
    assets = []
    for name, (res, channels, n) in bands.items():
        pixels = rng.integers(0, 10000, (height * 10 // res, width * 10 // res, n)).astype(np.uint16)
        write_raster(root / name, pixels, geotransform=(X0, res, 0, Y0, 0, -res), crs_epsg=UTM31)
        assets.append({"file_name": name, "channels": channels, "width": pixels.shape[1],
                       "height": pixels.shape[0], "warp_aux_to_img": {"scale": res / 10}})
    write_raster(root / "labels.tif", labels, geotransform=(X0, 10, 0, Y0, 0, -10), crs_epsg=UTM31)
    assets.append({"file_name": "labels.tif", "channels": "class_id", "width": width, "height": height})
    dset = kwcoco.CocoDataset()
    dset.fpath = str(root / "s2.kwcoco.json")
    dset.add_category("water", id=2)
    dset.add_image(name="scene", width=width, height=height, assets=assets)
    dset.dump(dset.fpath)
    return root, dset.fpath, labels


def gdal_window(path, band, c0, r0, size, scale):
    """GDAL's own read of a window of the 10 m grid from a band at ``scale`` times coarser (bilinear)."""
    ds = gdal.Open(str(path))
    return ds.GetRasterBand(band).ReadAsArray(c0 // scale, r0 // scale, size // scale, size // scale, size, size,
                                              resample_alg=gdal.GRIORA_Bilinear)


def test_multi_file_images_export_as_gdal_reads_them(sentinel, tmp_path):
    root, path, labels = sentinel
    summary = export(path, tmp_path / "s2", window=60, channels="B04|B8A|B01|B02", workers=2, progress=False)
    rows = read_rows(tmp_path / "s2")
    assert summary["chips"] == len(rows) == 6
    for row in rows:
        r0, c0 = int(row["row_start"]), int(row["col_start"])
        assert row["file_name"] == "b10.tif|b20.tif|b60.tif|labels.tif"
        image, ds = read_tif(tmp_path / "s2" / "images" / f"{row['chip']}.tif")
        assert image.dtype == np.uint16 and image.shape == (60, 60, 4)
        np.testing.assert_array_equal(image[..., 0], gdal_window(root / "b10.tif", 1, c0, r0, 60, 1))
        np.testing.assert_array_equal(image[..., 1], gdal_window(root / "b20.tif", 1, c0, r0, 60, 2))
        np.testing.assert_array_equal(image[..., 2], gdal_window(root / "b60.tif", 1, c0, r0, 60, 6))
        np.testing.assert_array_equal(image[..., 3], gdal_window(root / "b10.tif", 3, c0, r0, 60, 1))
        assert ds.GetGeoTransform() == (X0 + 10 * c0, 10.0, 0.0, Y0 - 10 * r0, 0.0, -10.0)
        assert "32631" in ds.GetProjectionRef()
        label, _ = read_tif(tmp_path / "s2" / "labels" / f"{row['chip']}.tif")
        np.testing.assert_array_equal(label[..., 0], labels[r0:r0 + 60, c0:c0 + 60])


def test_multi_file_images_export_every_image_channel_by_default(sentinel, tmp_path):
    _, path, _ = sentinel
    export(path, tmp_path / "all", window=60, format="kwcoco", progress=False)
    image, _ = read_tif(tmp_path / "all" / "images" / "chip_000000.tif")
    assert image.shape == (60, 60, 5)  # B04 B03 B02 B8A B01; class_id is the label, not a band


# -- --count ------------------------------------------------------------------------------
def test_count_samples_windows_at_random_stratified_across_images(dataset, tmp_path):
    whole = export(dataset, tmp_path / "all", window=8, progress=False)["chips"]
    windows = {(r["image_id"], r["row_start"], r["col_start"]) for r in read_rows(tmp_path / "all")}
    per_image = Counter(r["image_id"] for r in read_rows(tmp_path / "all"))
    picks = {}
    for seed in (0, 0, 1):
        export(dataset, tmp_path / f"n{seed}", window=8, count=20, seed=seed, overwrite=True, progress=False)
        rows = read_rows(tmp_path / f"n{seed}")
        picked = [(r["image_id"], r["row_start"], r["col_start"]) for r in rows]
        assert len(picked) == len(set(picked)) == 20 and set(picked) <= windows
        counts = Counter(r["image_id"] for r in rows)
        for gid, n in per_image.items():
            assert abs(counts[gid] - 20 * n / whole) < 1
        assert picks.setdefault(seed, picked) == picked, "the same seed gives the same windows"
    assert picks[0] != picks[1]
    assert picks[0] != sorted(windows)[:20]


@given(gids=st.lists(st.integers(1, 5), min_size=1, max_size=60), count=st.integers(0, 70),
       seed=st.integers(0, 2**32 - 1))
def test_stratified_subset_rule(gids, count, seed):
    table = np.array([(gid, i, 0) for i, gid in enumerate(sorted(gids))], dtype=np.int64)
    picked = stratified_subset(table, count, seed)
    assert len(picked) == min(count, len(table))
    assert (picked[:, 1] == np.sort(picked[:, 1])).all() and len(set(picked[:, 1])) == len(picked)
    for gid, n in Counter(gids).items():
        share = count * n / len(table) if count < len(table) else n
        assert np.floor(share) <= (picked[:, 0] == gid).sum() <= np.ceil(share)
    np.testing.assert_array_equal(stratified_subset(table, count, seed), picked)


# -- what goes to worker processes --------------------------------------------------------
def test_workers_get_the_dataset_path_not_the_dataset(dataset, tmp_path, monkeypatch):
    from ndpatch.export import runner
    sent = []

    def process_pool(workers, initializer, initargs, preload=()):
        sent.append(initargs)
        raise InterruptedError("stop here")

    monkeypatch.setattr(runner, "process_pool", process_pool)
    with pytest.raises(InterruptedError):
        export(dataset.fpath, tmp_path / "o", window=8, workers=2, progress=False)
    (spec,) = sent[0]
    assert spec.dataset == str(Path(dataset.fpath).resolve()) and len(pickle.dumps(spec)) < 2000


def test_flag_errors(dataset, tmp_path):
    with pytest.raises(ExportError, match="resume and overwrite exclude each other"):
        export(dataset, tmp_path / "a", resume=True, overwrite=True, progress=False)
    with pytest.raises(ExportError, match="workers must be >= 0"):
        export(dataset, tmp_path / "a", workers=-1, progress=False)
