"""`ndpatch stats`: counts against the dataset's own, cache state, unreadable images, the table."""
import json
import os
import shutil
from collections import Counter

import numpy as np

from ndpatch.cli import main
from ndpatch.demo import make_dataset
from ndpatch.stats import PERCENTILES, dataset_stats
from ndpatch.warmup import warmup

SPECS = [{"shape": (40, 50, 3), "dtype": "uint8"}, {"shape": (30, 20), "dtype": "uint16", "nodata": 0},
         {"shape": (64, 48, 4), "dtype": "float32"}]


def stats_json(argv, capsys) -> tuple[int, dict]:
    status = main(["stats", *argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_stats_json_counts_equal_the_datasets(tmp_path, capsys):
    dset = make_dataset(tmp_path / "d", SPECS)
    shutil.copy(tmp_path / "d" / "images" / "img_000.tif", tmp_path / "d" / "images" / "extra.tif")
    dset.add_image(file_name="images/extra.tif", width=50, height=40)   # an image without annotations
    dset.add_annotation(1, category_id=None, bbox=[1, 2, 3, 4])
    dset.dump(dset.fpath)
    status, stats = stats_json([dset.fpath, "--workdir", str(tmp_path / "cache")], capsys)
    assert status == 0
    images = stats["images"]
    assert images["count"] == dset.n_images == 4
    assert images["height"] == {"min": 30, "median": 40, "max": 64}
    assert images["width"] == {"min": 20, "median": 49, "max": 50}
    assert images["bands"] == {"1": 1, "3": 2, "4": 1}
    assert images["dtypes"] == {"float32": 1, "uint16": 1, "uint8": 2}
    assert (images["with_nodata"], images["without_annotations"], images["unreadable"]) == (1, 1, {})
    annots = stats["annotations"]
    assert annots["count"] == dset.n_annots
    expected = Counter(dset.cats[a["category_id"]]["name"] if a.get("category_id") else "(no category)"
                       for a in dset.anns.values())
    assert {name: row["annotations"] for name, row in annots["per_class"].items()} == expected
    assert annots["per_class"]["triangle"] == {"id": 2, "annotations": 3, "images": 3}
    assert (annots["with_polygon"], annots["with_keypoints"]) == (3, 3)
    widths = np.array([a["bbox"][2] for a in dset.anns.values()])
    assert list(annots["box_width"]) == [f"p{p}" for p in PERCENTILES]
    assert np.allclose(list(annots["box_width"].values()), np.percentile(widths, PERCENTILES), atol=0.01)
    assert stats["videos"] == 0 and stats["dataset"] == dset.fpath


def test_stats_reports_what_each_backend_has_cached_without_converting(tmp_path, capsys):
    dset = make_dataset(tmp_path / "d", SPECS)
    workdir = str(tmp_path / "cache")
    _, before = stats_json([dset.fpath, "--workdir", workdir], capsys)
    assert before["cache"]["backends"] == {name: {"cached": 0, "images": 3} for name in ("npy", "cog", "auto")}
    assert not any(name.endswith(".npy") for _, _, files in os.walk(workdir) for name in files)
    warmup(dset, backend="npy", workdir=workdir, workers=0, progress=False)
    _, after = stats_json([dset.fpath, "--workdir", workdir], capsys)
    assert after["cache"]["backends"]["npy"] == {"cached": 3, "images": 3}
    assert after["cache"]["backends"]["auto"]["cached"] == 3      # auto shares npy's entries
    assert after["cache"]["backends"]["cog"]["cached"] == 0
    assert after["cache"]["root"] == workdir


def test_an_unreadable_image_is_listed_and_exits_1(tmp_path, capsys):
    dset = make_dataset(tmp_path / "d", SPECS[:2])
    os.unlink(tmp_path / "d" / dset.imgs[2]["file_name"])
    status, stats = stats_json([dset.fpath], capsys)
    assert status == 1
    assert list(stats["images"]["unreadable"]) == ["2"] and "img_001.tif" in stats["images"]["unreadable"]["2"]
    assert stats["images"]["count"] == 2 and stats["images"]["bands"] == {"3": 1}


def test_stats_table(tmp_path, capsys):
    dset = make_dataset(tmp_path / "d", SPECS)
    assert main(["stats", dset.fpath, "--workdir", str(tmp_path / "cache")]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == f"dataset {dset.fpath}: 3 images, 0 videos, 9 annotations, 3 classes"
    assert "  height  30   40      64" in lines
    assert "  dtypes               float32: 1, uint16: 1, uint8: 1" in lines
    assert "  triangle  2   3            3" in lines
    assert "  npy      0 of 3" in lines
    assert dataset_stats(dset)["images"]["count"] == 3
