"""Porting ndsampler 0.8.1 code to ndpatch by changing the import (issue 16).

Six training-data patterns as public ndsampler clients write them (netharn's
detection and classification datasets, bioharn's detection dataset, two
geowatch-style video datasets, ndsampler's ``examples/torch_dataloader.py``),
written here from their documented use and run on ``ndpatch.ndsampler``: each
asserts what ndsampler 0.8.1 returns for it. Then the cases that were silently
wrong before, the deprecated keywords, the regions API and a DataLoader with
two workers.
"""
import warnings

import kwimage
import numpy as np
import pytest

import ndpatch
import ndpatch.ndsampler as ndsampler
from ndpatch.demo import kwcoco_demo, write_raster
from ndpatch.errors import MissingNegativePool, NdpatchError, SamplingError, TargetError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def shapes8():
    return ndsampler.CocoSampler(kwcoco_demo("shapes8"), backend=None)


@pytest.fixture(scope="module")
def vidshapes():
    return ndsampler.CocoSampler(kwcoco_demo("vidshapes2-multispectral", num_frames=4), backend=None)


# -- the six porter scenarios ------------------------------------------------------------------
class DetectFitDataset(torch.utils.data.Dataset):
    """netharn's object-detection pattern: one positive per index, boxes and class indices."""

    def __init__(self, sampler, window_dims=(128, 128)):
        self.sampler = sampler
        self.window_dims = window_dims
        self.input_id = sampler.hashid
        self.classes = sampler.catgraph
        sampler.regions.preselect(window_dims=window_dims, rng=0)

    def __len__(self):
        return len(self.sampler)

    def __getitem__(self, index):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            sample = self.sampler.load_item(index, pad=(4, 4), with_annots=["boxes"])
        boxes = sample["annots"]["rel_boxes"].to_ltrb().data
        cidxs = [self.classes.id_to_idx[cid] for cid in sample["annots"]["cids"]]
        return sample["im"], boxes, cidxs


def test_netharn_detection(shapes8):
    dset = DetectFitDataset(shapes8)
    assert len(dset) == shapes8.n_positives == shapes8.n_annots
    im, boxes, cidxs = dset[0]
    assert im.shape[:2] == (136, 136)   # the preselected 128 window plus pad 4 on each side
    assert boxes.shape == (len(cidxs), 4) and len(cidxs) >= 1
    assert dset.input_id == shapes8.hashid and len(shapes8.hashid) > 20


class ClfDataset(torch.utils.data.Dataset):
    """netharn's classification pattern: a square chip around each annotation, its class index."""

    def __init__(self, sampler, input_dims=(64, 64)):
        self.sampler = sampler
        self.input_dims = input_dims
        self.classes = sampler.classes

    def __len__(self):
        return self.sampler.n_positives

    def __getitem__(self, index):
        tr = self.sampler.regions.get_positive(index, rng=np.random.RandomState(index))
        tr["window_dims"] = "square"
        sample = self.sampler.load_sample(tr, with_annots=False)
        chip = kwimage.imresize(sample["im"], dsize=self.input_dims[::-1])
        return chip, self.classes.id_to_idx[tr["category_id"]], tr["aid"]


def test_netharn_classification(shapes8):
    dset = ClfDataset(shapes8)
    chip, label, aid = dset[3]
    assert chip.shape == (64, 64, 3)
    cid = shapes8.dset.anns[aid]["category_id"]
    assert shapes8.lookup_class_name(dset.classes.idx_to_id[label]) == shapes8.dset.cats[cid]["name"]
    tr = shapes8.regions.get_positive(3)
    sample = shapes8.load_sample({**tr, "window_dims": "square"})
    side = max(np.ceil(tr["width"]), np.ceil(tr["height"]))
    assert sample["im"].shape == (side, side, 3)
    assert sample["target"]["annot_idx"] >= 0
    assert sample["annots"]["aids"][sample["target"]["annot_idx"]] == tr["aid"]


class BioharnDetectDataset(torch.utils.data.Dataset):
    """bioharn's pattern: a sliding grid, boxes and polygons, a fill for the part past the image."""

    def __init__(self, sampler, window_dims=(256, 256), window_overlap=0.25):
        self.sampler = sampler
        sampler.frames.prepare(workers=2)
        grid = sampler.new_sample_grid("image_detection", window_dims, window_overlap)
        self.chosen = grid["targets"]
        self.n_positives = len(grid["positives_indexes"])
        self.depends = sampler._depends()

    def __len__(self):
        return len(self.chosen)

    def __getitem__(self, index):
        tr = dict(self.chosen[index])
        tr["channels"] = "<all>"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            sample = self.sampler.load_sample(tr, with_annots=["boxes", "segmentation"],
                                              padkw={"constant_values": 127})
        dets = sample["annots"]["frame_dets"][0]
        return sample["im"], dets, tr


def test_bioharn_detection(tmp_path):
    sampler = ndsampler.CocoSampler(kwcoco_demo("shapes8"), backend={"type": "npy", "config": {}},
                                    workdir=tmp_path)
    dset = BioharnDetectDataset(sampler)
    assert sampler._backend["type"] == "npy"
    assert set(dset.depends) == {"regions_hashid", "frames_hashid"}
    # starts 0, 192 (the 0.25 overlap) and 344 (the last, flush with the edge): 3 x 3 per image
    assert len(dset) == 8 * 9 and 0 < dset.n_positives < len(dset)
    im, dets, tr = dset[len(dset) - 1]
    assert im.shape == (256, 256, 3)
    assert tr["slices"] == sampler.new_sample_grid("image_detection", (256, 256), 0.25)["targets"][-1]["slices"]
    assert set(tr["aids"]) <= set(dets.data["aids"].tolist())   # the grid's polygon hits are among the box hits
    assert all(poly is not None for poly in dets.data["segmentations"].data)
    assert dets.data["keypoints"] is None or all(k is None for k in dets.data["keypoints"].data)


class VideoGridDataset(torch.utils.data.Dataset):
    """geowatch's grid pattern: space-time windows of a multispectral video as float32 with NaN fill."""

    def __init__(self, sampler, window_dims=(2, 96, 96), channels="B1|B8|B11"):
        self.sampler = sampler
        self.channels = channels
        grid = ndsampler.new_video_sample_grid(sampler.dset, window_dims=window_dims, window_overlap=0.0, verbose=0)
        self.targets = grid["targets"]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        tr = dict(self.targets[index])
        tr["channels"] = self.channels
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            sample = self.sampler.load_sample(tr, with_annots="boxes+segmentation", nodata="float",
                                              dtype=np.float32)
        return sample


def test_geowatch_video_grid(vidshapes):
    dset = VideoGridDataset(vidshapes)
    assert len(dset) > 0
    sample = dset[0]
    tr = sample["target"]
    assert sample["im"].shape == (2, 96, 96, 3) and sample["im"].dtype == np.float32
    assert len(tr["gids"]) == 2 and tr["vidid"] == dset.targets[0]["vidid"]
    assert tr["gids"] == dset.targets[0]["gids"]
    assert len(sample["annots"]["frame_dets"]) == 2


def test_geowatch_xarray_frames(vidshapes):
    """geowatch's second pattern: chosen frames by id, every channel, as xarray with channel names."""
    vidid = vidshapes.dset.videos().lookup("id")[0]
    gids = list(vidshapes.dset.images(video_id=vidid))[1:3]
    target = {"video_id": vidid, "image_ids": gids, "space_slice": (slice(0, 32), slice(10, 42)),
              "channels": "<all>", "as_xarray": True, "label": "mine"}
    sample = vidshapes.load_sample(target)
    im = sample["im"]
    assert im.dims == ("t", "y", "x", "c") and im.shape[:3] == (2, 32, 32)
    names = kwcoco_demo("vidshapes2-multispectral", num_frames=4).coco_image(gids[0]).channels.fuse().parsed
    assert sorted(im.coords["c"].values.tolist()) == sorted(names)
    assert sample["target"]["gids"] == gids and sample["target"]["label"] == "mine"
    b1 = vidshapes.load_sample({"gids": gids, "space_slice": (slice(0, 32), slice(10, 42)), "channels": "B1"})
    np.testing.assert_array_equal(im.sel(c="B1").values, b1["im"][..., 0])


class DemoDataset(torch.utils.data.Dataset):
    """ndsampler's ``examples/torch_dataloader.py`` pattern: plain image files, random chips, ``frames.prepare``."""

    def __init__(self, image_paths, backend=None, workdir=None):
        import kwcoco
        self.image_paths = sorted(image_paths)
        coco = {"images": [{"id": i, "file_name": str(p)} for i, p in enumerate(self.image_paths)],
                "annotations": [], "categories": []}
        self.sampler = ndsampler.CocoSampler(kwcoco.CocoDataset(coco), backend=backend, workdir=workdir)
        self.sampler.frames.prepare(workers=2)

    def __len__(self):
        return len(self.image_paths)

    def __getitem__(self, idx):
        rng = np.random.default_rng(idx)
        size = int(rng.integers(20, 28))
        cx, cy = (int(rng.integers(size // 2, 64 - size // 2)) for _ in range(2))
        target = {"gid": idx, "cx": cx, "cy": cy, "width": size, "height": size}
        return torch.from_numpy(self.sampler.load_sample(target)["im"].copy())


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = folder / f"demo_image_{i:03d}.png"
        write_raster(path, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), driver="PNG")
        paths.append(path)
    return paths


@pytest.mark.parametrize("backend", [None, "cog"])
def test_torch_dataloader_example_two_workers(image_folder, backend, tmp_path):
    dset = DemoDataset(image_folder, backend=backend, workdir=tmp_path)
    assert dset.sampler._backend["type"] == backend
    loader = torch.utils.data.DataLoader(dset, batch_size=1, num_workers=2)
    chips = list(loader)
    assert len(chips) == 4
    for idx, chip in enumerate(chips):
        ref = ndpatch.CocoSampler(dset.sampler.dset).load_sample(
            {"gid": idx, "cx": 0, "cy": 0, "width": 1, "height": 1})  # opens the same file directly
        assert chip.dtype == torch.uint8 and chip.shape[-1] == ref["im"].shape[-1] == 3
        np.testing.assert_array_equal(chip[0].numpy(), dset[idx].numpy())


# -- what was silently wrong -----------------------------------------------------------------
def test_slices_2d_are_the_window(shapes8):
    sample = shapes8.load_sample({"gid": 1, "slices": (slice(0, 64), slice(0, 32))})
    assert sample["im"].shape == (64, 32, 3)
    full = shapes8.load_sample({"gid": 1})["im"]
    np.testing.assert_array_equal(sample["im"], full[:64, :32])


def test_slices_3d_for_videos(vidshapes):
    vidid = vidshapes.dset.videos().lookup("id")[0]
    sample = vidshapes.load_sample({"vidid": vidid, "slices": (slice(1, 3), slice(0, 16), slice(8, 40))})
    assert sample["im"].shape[:3] == (2, 16, 32)
    assert sample["target"]["gids"] == list(vidshapes.dset.images(video_id=vidid))[1:3]


def test_window_dims_square_and_tuple(shapes8):
    assert shapes8.load_sample({"aid": 1, "window_dims": "square"})["im"].shape == (162, 162, 3)
    sample = shapes8.load_sample({"aid": 1, "window_dims": (30, 20)})
    assert sample["im"].shape == (30, 20, 3) and sample["target"]["window_dims"] == (30, 20)
    with pytest.raises(TargetError, match="window_dims must be"):
        shapes8.load_sample({"aid": 1, "window_dims": "round"})


def test_as_xarray_image(shapes8):
    sample = shapes8.load_sample({"gid": 1, "slices": (slice(0, 8), slice(0, 8)), "as_xarray": True})
    assert sample["im"].dims == ("y", "x", "c")
    np.testing.assert_array_equal(sample["im"].values, shapes8.load_sample({"gid": 1})["im"][:8, :8])


def test_targets_table_has_rows_and_columns(shapes8):
    targets = shapes8.regions.targets
    assert len(targets) == shapes8.n_annots
    assert targets.columns == ["aid", "gid", "category_id", "cx", "cy", "width", "height", "img_width", "img_height"]
    assert targets["aid"].tolist() == sorted(shapes8.dset.anns)


def test_image_ids_alias_and_all_channels(shapes8):
    sample = shapes8.load_sample({"image_ids": [1], "channels": "<all>"})
    assert sample["im"].shape == (1, 600, 600, 3)
    assert shapes8.load_sample({"gid": 1, "channels": "<all>"})["im"].shape == (600, 600, 3)


def test_unknown_keys_pass_through(shapes8):
    target = {"gid": 2, "cx": 10, "cy": 10, "width": 4, "height": 4, "label": 7, "my_id": "x"}
    returned = shapes8.load_sample(target)["target"]
    assert returned["label"] == 7 and returned["my_id"] == "x"
    assert target == {"gid": 2, "cx": 10, "cy": 10, "width": 4, "height": 4, "label": 7, "my_id": "x"}


# -- the sampler API -------------------------------------------------------------------------
def test_sampler_api_names(shapes8):
    assert ndsampler.CocoSampler is ndpatch.CocoSampler
    assert ndsampler.CocoSampler.coerce(shapes8) is shapes8
    assert shapes8.image_ids == sorted(shapes8.dset.imgs) and shapes8.n_images == 8
    assert shapes8.n_categories == len(shapes8.dset.cats) and shapes8.class_ids == list(shapes8.dset.cats)
    assert len(shapes8) == shapes8.n_samples == shapes8.n_positives
    assert shapes8.lookup_class_id(shapes8.lookup_class_name(3)) == 3
    assert shapes8.BACKGROUND_CLASS_ID == 0 and shapes8.catgraph is shapes8.classes
    img, anns = shapes8.load_image_with_annots(1)
    assert np.asarray(img["imdata"]).shape == (600, 600, 3)
    assert [a["id"] for a in anns] == [a["id"] for a in shapes8.load_annotations(1)] == \
        list(shapes8.dset.index.gid_to_aids[1])
    np.testing.assert_array_equal(shapes8.load_image(1, cache=False)[10:20], shapes8.frames.load_region(1, (
        slice(10, 20),)))
    assert shapes8.frames.load_image(1)[-1, -1].shape == (3,)


def test_demo_passes_kwargs_to_kwcoco():
    sampler = ndsampler.CocoSampler.demo("vidshapes1-multispectral", num_frames=5)
    assert sampler.n_images == 5


def test_backend_as_dict(tmp_path):
    sampler = ndsampler.CocoSampler(kwcoco_demo("shapes2"), workdir=tmp_path,
                                    backend={"type": "cog", "config": {"compress": "auto"}})
    assert sampler._backend == {"type": "cog", "config": sampler._backend["config"]}
    direct = ndsampler.CocoSampler(kwcoco_demo("shapes2"))
    target = {"gid": 1, "cx": 40, "cy": 40, "width": 16, "height": 16}
    np.testing.assert_array_equal(sampler.load_sample(target)["im"], direct.load_sample(target)["im"])
    with pytest.raises(NdpatchError, match="unknown keys"):
        ndsampler.CocoSampler(kwcoco_demo("shapes2"), backend={"kind": "npy"})


@pytest.mark.parametrize("key,value,target_key", [("pad", 3, "pad"), ("dtype", np.float32, "dtype"),
                                                  ("nodata", "float", "nodata")])
def test_deprecated_keywords_warn_and_work(shapes8, key, value, target_key):
    target = {"gid": 1, "cx": 2, "cy": 2, "width": 6, "height": 6}
    with pytest.warns(DeprecationWarning, match=repr(key)):
        old = shapes8.load_sample(dict(target), **{key: value})
    new = shapes8.load_sample({**target, target_key: value})
    np.testing.assert_array_equal(old["im"], new["im"])
    assert old["im"].dtype == new["im"].dtype


def test_deprecated_padkw_and_tr(shapes8):
    target = {"gid": 1, "cx": 2, "cy": 2, "width": 8, "height": 8}
    with pytest.warns(DeprecationWarning, match="padkw"):
        sample = shapes8.load_sample(dict(target), padkw={"mode": "constant", "constant_values": 9})
    assert (sample["im"][:2] == 9).all()
    with pytest.warns(DeprecationWarning, match="'tr'"):
        again = shapes8.load_sample(tr=dict(target))
    assert again["im"].shape == (8, 8, 3)
    with pytest.raises(TargetError, match="unexpected keyword"):
        shapes8.load_sample(dict(target), window=3)


def test_with_annots_fields(shapes8):
    target = {"gid": 1}
    boxes_only = shapes8.load_sample(target, with_annots=["boxes"])
    assert all(s is None for s in boxes_only["annots"]["rel_ssegs"].data)
    both = shapes8.load_sample(target, with_annots=["boxes", "segmentation"])
    assert all(s is not None for s in both["annots"]["rel_ssegs"].data)
    np.testing.assert_array_equal(boxes_only["annots"]["aids"], both["annots"]["aids"])
    with pytest.raises(TargetError, match="with_annots fields"):
        shapes8.load_sample(target, with_annots=["masks"])


# -- the regions API -------------------------------------------------------------------------
def test_get_positive_with_a_seed_is_stateless(shapes8):
    regions = ndsampler.CocoSampler(kwcoco_demo("shapes8")).regions
    first = [regions.get_positive(rng=seed)["aid"] for seed in range(6)]
    again = [regions.get_positive(rng=seed)["aid"] for seed in range(6)]
    assert first == again
    epoch = [regions.get_positive()["aid"] for _ in range(regions.epoch_size)]
    assert sorted(epoch) == sorted(regions.targets["aid"].tolist())   # no rng: one coverage epoch


def test_missing_negative_pool():
    regions = ndsampler.CocoSampler(kwcoco_demo("shapes8")).regions
    with pytest.raises(MissingNegativePool) as info:
        regions.get_negative(0)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, SamplingError)
    assert ndsampler.MissingNegativePool is MissingNegativePool


def test_hit_box_grid_is_ndsampler_grid():
    theirs = pytest.importorskip("ndsampler", reason="ndsampler 0.8.1 is not installed")
    dset = kwcoco_demo("shapes8")
    ours = ndpatch.CocoSampler(dset).regions.new_sample_grid("image_detection", (200, 200), 0.3, hit="box")
    real = theirs.CocoSampler(dset).regions.new_sample_grid("image_detection", (200, 200), 0.3)
    assert [t["slices"] for t in ours["targets"]] == [t["slices"] for t in real["targets"]]
    assert [sorted(t["aids"]) for t in ours["targets"]] == [sorted(t["aids"]) for t in real["targets"]]
    # ndsampler 0.8.1 counts its indexes one past each target (a bug); ndpatch's point at it (docs/differences.md)
    assert ours["positives_indexes"] == [i - 1 for i in real["positives_indexes"]]
    assert ours["negatives_indexes"] == [i - 1 for i in real["negatives_indexes"]]


def test_module_level_names():
    dset = kwcoco_demo("shapes8")
    from ndpatch.ndsampler import isect_indexer
    from ndpatch.ndsampler.coco_regions import new_image_sample_grid
    grid = new_image_sample_grid(dset, (300, 300), verbose=0)
    assert len(grid["targets"]) == 8 * 4
    assert len(ndsampler.tabular_coco_targets(dset)) == dset.n_annots
    index = isect_indexer.FrameIntersectionIndex.from_coco(dset)
    assert index.overlapping_aids(1, kwimage.Boxes([0, 0, 600, 600], "xywh")) == sorted(dset.index.gid_to_aids[1])
    frames = ndsampler.SimpleFrames({gid: dset.get_image_fpath(gid) for gid in dset.imgs}, None, None)
    assert frames.load_image(2).shape == (600, 600, 3)
    assert len(ndsampler.select_positive_regions(ndsampler.tabular_coco_targets(dset), (64, 64), rng=0)) > 0
    vids = kwcoco_demo("vidshapes2", num_frames=3)
    assert len(ndsampler.new_video_sample_grid(vids, (3, 64, 64), verbose=0)["targets"]) > 0


def test_every_public_name_of_ndsampler_is_there():
    """ndsampler 0.8.1's top-level names, and each submodule's own classes and functions, exist in ndpatch.ndsampler."""
    import importlib
    import inspect
    real = pytest.importorskip("ndsampler")
    assert not [name for name in real.__all__ if not hasattr(ndsampler, name)]
    left_out = {"category_tree": {"Mixin_CategoryTree_Torch"}}   # torch helpers (docs/porting.md)
    for mod in ["abstract_frames", "abstract_sampler", "category_tree", "coco_frames", "coco_regions",
                "coco_sampler", "isect_indexer", "toydata"]:
        theirs = importlib.import_module(f"ndsampler.{mod}")
        names = {name for name, value in vars(theirs).items() if not name.startswith("_")
                 and (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == theirs.__name__}
        assert names - left_out.get(mod, set()) <= set(dir(getattr(ndsampler, mod))), mod


def test_regions_api(shapes8):
    regions = shapes8.regions
    assert regions.dset is shapes8.dset and regions.workdir == shapes8.workdir
    aids = list(shapes8.dset.index.gid_to_aids[1])
    segs = regions.get_segmentations(aids)
    assert len(segs) == len(aids) and all(isinstance(s, kwimage.MultiPolygon) for s in segs)
    whole = kwimage.Boxes([[0, 0, 600, 600]], "xywh")
    assert regions.overlapping_aids(1, whole) == sorted(aids)
    box = shapes8.dset.anns[aids[0]]["bbox"]
    corner = kwimage.Boxes([[box[0], box[1], box[2] / 4, box[3] / 4]], "xywh")   # a 1/16 of the box
    assert aids[0] in regions.overlapping_aids(1, corner, visible_thresh=0.05)
    assert aids[0] not in regions.overlapping_aids(1, corner, visible_thresh=0.1)
    assert regions.isect_index.overlapping_aids(1, whole) == sorted(aids)
    assert regions.get_item(0)["aid"] == regions.get_positive(0)["aid"]


def test_finalize_false_and_native_scale(vidshapes):
    target = {"gid": 1, "slices": (slice(0, 16), slice(0, 16)), "channels": "B1|B10"}   # files at image scale
    image = vidshapes.load_sample({**target, "finalize": False})
    assert not isinstance(image["im"], np.ndarray)   # a delayed_image crop, read when finalized
    np.testing.assert_array_equal(np.asarray(image["im"].finalize()), vidshapes.load_sample(target)["im"])
    vidid = vidshapes.dset.videos().lookup("id")[0]
    native = vidshapes.load_sample({"vidid": vidid, "space_slice": (slice(0, 60), slice(0, 60)),
                                    "channels": "B1|B8", "use_native_scale": True})
    first = native["im"][0]   # per frame: one window per file, at that file's own resolution
    assert [part.shape[:2] for part in first] == [(60, 60), (10, 10)]
    realigned = vidshapes.load_sample({"vidid": vidid, "space_slice": (slice(0, 60), slice(0, 60)),
                                       "channels": "B1|B8", "use_native_scale": True, "realign_native": "largest"})
    assert realigned["im"].shape == (len(native["im"]), 60, 60, 2)


def test_hit_box_negatives(tmp_path):
    """A thin diagonal object: its box covers the image, its polygon leaves room for negatives."""
    import kwcoco
    write_raster(tmp_path / "img.tif", np.zeros((64, 64), dtype=np.uint8))
    diagonal = [0, 0, 4, 0, 64, 60, 64, 64, 60, 64, 0, 4]
    dset = kwcoco.CocoDataset({"images": [{"id": 1, "file_name": str(tmp_path / "img.tif"), "width": 64, "height": 64}],
                               "categories": [{"id": 1, "name": "line"}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 64],
                                                "segmentation": [diagonal]}]})
    regions = ndsampler.CocoSampler(dset).regions
    regions.configure(window_dims=(16, 16))
    negative = regions.get_negative(rng=0)
    rows, cols = regions.window(negative)
    assert rows.start >= cols.stop or cols.start >= rows.stop   # off the diagonal
    regions.configure(window_dims=(16, 16), hit="box")
    with pytest.raises(SamplingError, match="has room for a 16x16 negative"):
        regions.get_negative(rng=0)
