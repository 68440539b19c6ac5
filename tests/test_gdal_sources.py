"""Sources read exactly as GDAL reads them, sidecars included; hostile sources refused.

Every raster here is written by GDAL at test time. The reference is GDAL itself,
run in a fresh interpreter where ndpatch is *not* imported (``import ndpatch``
must not change what GDAL sees of a file, for ndpatch or for the user).
"""
import json
import os
import subprocess
import sys

import kwcoco
import numpy as np
import pytest
from osgeo import gdal, osr

import ndpatch
from ndpatch import gdalio
from ndpatch.cache import ImageSource, make_backend, read_window
from ndpatch.cache.validity import MASK_BAND_KINDS
from ndpatch.cli import main
from ndpatch.demo import write_raster
from ndpatch.errors import NdpatchError, SourceReadError

BACKENDS = [None, "npy", "cog", "auto"]
UTM = 32631
ORIGIN = (500000.0, 4100000.0)


def _wkt(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def _random(shape, dtype="uint8", seed=0):
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def make_sources(bundle):
    """One raster per sidecar case, each written by GDAL; returns {name: file name in the bundle}."""
    bundle.mkdir(parents=True, exist_ok=True)
    gt = (ORIGIN[0], 10.0, 0.0, ORIGIN[1], 0.0, -10.0)
    names = {}

    # external overviews (.ovr), rewritten so that a read which uses them is recognisable
    path = write_raster(bundle / "ovr.tif", _random((64, 64), seed=1),
                        options=["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"])
    gdal.Open(path).BuildOverviews("NEAREST", [2])  # read-only: writes ovr.tif.ovr
    ovr = gdal.Open(path + ".ovr", gdal.GA_Update)
    ovr.GetRasterBand(1).WriteArray(_random((32, 32), seed=2))
    ovr = None
    names["ovr"] = "ovr.tif"

    # an external per-dataset mask (.msk)
    path = write_raster(bundle / "msk.tif", _random((40, 48, 3), seed=3))
    ds = gdal.Open(path)
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    mask = np.zeros((40, 48), np.uint8)
    mask[5:30, 10:40] = 255
    ds.GetRasterBand(1).GetMaskBand().WriteArray(mask)
    ds = None
    names["msk"] = "msk.tif"

    # an alpha band
    rgba = _random((30, 36, 4), seed=4)
    rgba[..., 3] = 0
    rgba[3:20, 4:30, 3] = 255
    write_raster(bundle / "alpha.tif", rgba, options=["ALPHA=YES", "PHOTOMETRIC=RGB"])
    names["alpha"] = "alpha.tif"

    # PNG georeferenced by a world file (.wld)
    write_raster(bundle / "world.png", _random((20, 24, 3), seed=5), driver="PNG",
                 options=["WORLDFILE=YES"], geotransform=gt)
    names["wld"] = "world.png"

    # TIFF georeferenced by a .tfw, its CRS in .aux.xml
    path = write_raster(bundle / "tfw.tif", _random((32, 40), seed=6), geotransform=gt,
                        options=["PROFILE=BASELINE", "TFW=YES"])
    with open(path + ".aux.xml", "w") as file:  # the CRS only (GDAL would also save the geotransform)
        file.write(f"<PAMDataset><SRS>{_wkt(UTM)}</SRS></PAMDataset>")
    names["tfw"] = "tfw.tif"

    # TIFF georeferenced (geotransform and CRS) by .aux.xml only
    path = write_raster(bundle / "aux.tif", _random((32, 40), seed=7), options=["PROFILE=BASELINE"])
    ds = gdal.Open(path)
    ds.SetGeoTransform(gt)
    ds.SetProjection(_wkt(UTM))
    ds = None
    names["aux"] = "aux.tif"

    # ENVI: raw .img + .hdr (georeferenced in the header)
    write_raster(bundle / "cube.img", _random((18, 22, 2), "int16", seed=8), driver="ENVI",
                 geotransform=gt, crs_epsg=UTM)
    names["envi"] = "cube.img"

    # signed byte (GDAL 3.6: Byte + PIXELTYPE=SIGNEDBYTE)
    write_raster(bundle / "signed.tif", _random((16, 20), seed=9), options=["PIXELTYPE=SIGNEDBYTE"])
    names["signed"] = "signed.tif"
    return names


REFERENCE = r'''
import json, sys
import numpy as np
if sys.argv[1] == "with-ndpatch":  # read everything through ndpatch first, in this same process
    import kwcoco, ndpatch
    for backend in (None, "npy", "cog"):
        sampler = ndpatch.CocoSampler(kwcoco.CocoDataset(sys.argv[3]), workdir=sys.argv[4], backend=backend)
        for gid in sampler.dset.imgs:
            sampler.load_sample({"gid": gid, "space_slice": (slice(0, 8), slice(0, 8))})
from osgeo import gdal
gdal.UseExceptions()
facts = {}
for k, path in enumerate(sys.argv[5:]):
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    pixels = ds.ReadAsArray()
    pixels = np.moveaxis(pixels[None] if pixels.ndim == 2 else pixels, 0, -1)
    arrays = {"pixels": pixels, "mask": band.GetMaskBand().ReadAsArray()}
    if band.GetOverviewCount():
        overview = band.GetOverview(0)
        arrays["overview"] = overview.ReadAsArray()
    np.savez(f"{sys.argv[2]}/{k}.npz", **arrays)
    gt = ds.GetGeoTransform(can_return_null=True)
    facts[path] = {"dtype": str(pixels.dtype), "overviews": band.GetOverviewCount(),
                   "mask_flags": band.GetMaskFlags(), "geotransform": list(gt) if gt else None,
                   "crs": ds.GetProjectionRef() or None, "files": sorted(ds.GetFileList())}
print(json.dumps(facts))
'''


def gdal_reference(paths, out_dir, with_ndpatch=False, dset_path="", workdir=""):
    """What GDAL reads of each file, in a fresh interpreter (ndpatch imported only when asked)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-c", REFERENCE, "with-ndpatch" if with_ndpatch else "plain",
            str(out_dir), dset_path, workdir, *paths]
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=300)
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    for k, path in enumerate(paths):
        with np.load(out_dir / f"{k}.npz") as arrays:
            facts[path].update({name: arrays[name] for name in arrays.files})
    return facts


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """(dataset, {case: gid}, {gid: GDAL's reference facts}) over the sidecar cases."""
    root = tmp_path_factory.mktemp("sources")
    bundle = root / "bundle"
    names = make_sources(bundle)
    dset = kwcoco.CocoDataset()
    gids = {}
    for case, name in names.items():
        ds = gdal.Open(str(bundle / name))
        gids[case] = dset.add_image(file_name=name, width=ds.RasterXSize, height=ds.RasterYSize)
    dset.fpath = str(bundle / "data.kwcoco.json")
    dset.dump(dset.fpath)
    dset = kwcoco.CocoDataset(dset.fpath)
    paths = [str(bundle / names[case]) for case in gids]
    reference = gdal_reference(paths, root / "reference")
    return dset, gids, {gid: reference[path] for gid, path in zip(gids.values(), paths)}, root


def test_the_cases_carry_the_sidecars_they_are_about(sources):
    dset, gids, reference, _ = sources
    files = {case: [os.path.basename(f) for f in reference[gid]["files"]] for case, gid in gids.items()}
    assert "ovr.tif.ovr" in files["ovr"] and reference[gids["ovr"]]["overviews"] == 1
    assert "msk.tif.msk" in files["msk"] and reference[gids["msk"]]["mask_flags"] == gdal.GMF_PER_DATASET
    assert reference[gids["alpha"]]["mask_flags"] == gdal.GMF_ALPHA | gdal.GMF_PER_DATASET
    assert "world.wld" in files["wld"] and reference[gids["wld"]]["geotransform"] is not None
    assert "tfw.tfw" in files["tfw"] and reference[gids["tfw"]]["crs"]
    assert "aux.tif.aux.xml" in files["aux"] and reference[gids["aux"]]["crs"]
    assert "cube.hdr" in files["envi"]
    assert reference[gids["signed"]]["dtype"] == "int8"
    assert not reference[gids["msk"]]["mask"].all() and not reference[gids["alpha"]]["mask"].all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_case_reads_as_gdal_reads_it(sources, backend, tmp_path):
    dset, gids, reference, _ = sources
    sampler = ndpatch.CocoSampler(dset, workdir=str(tmp_path / "cache"), backend=backend)
    for case, gid in gids.items():
        ref = reference[gid]
        height, width = ref["pixels"].shape[:2]
        sample = sampler.load_sample({"gid": gid, "space_slice": (slice(0, height), slice(0, width))},
                                     with_annots=False)
        assert sample["im"].dtype == ref["pixels"].dtype, case
        np.testing.assert_array_equal(sample["im"], ref["pixels"], err_msg=case)
        assert sample["params"]["geotransform"] == (None if ref["geotransform"] is None
                                                   else tuple(ref["geotransform"])), case
        assert sample["params"]["crs"] == ref["crs"], case
        entry = sampler.entry(gid)
        assert entry.geotransform == (None if ref["geotransform"] is None else tuple(ref["geotransform"]))
        assert (entry.crs_wkt, entry.dtype) == (ref["crs"], ref["pixels"].dtype), case
        if entry.mask in MASK_BAND_KINDS:  # .msk and alpha: GDAL's mask values, kept by every cache
            mask = np.empty((height, width), np.uint8)
            sampler.backend.read_mask_into(entry, slice(0, height), slice(0, width), mask)
            np.testing.assert_array_equal(mask, ref["mask"], err_msg=case)
        if entry.path == sampler.index.source(gid).path:  # the source itself: its overviews too
            band = sampler.backend.gdal_dataset(entry).GetRasterBand(1)
            assert band.GetOverviewCount() == ref["overviews"], case
            assert band.GetMaskFlags() == ref["mask_flags"], case


@pytest.mark.parametrize("backend", [None, "cog", "auto"])
def test_scaled_reads_use_the_external_overviews(sources, backend, tmp_path):
    dset, gids, reference, _ = sources
    sampler = ndpatch.CocoSampler(dset, workdir=str(tmp_path / "cache"), backend=backend)
    gid = gids["ovr"]
    assert sampler.entry(gid).path == sampler.index.source(gid).path  # read in place
    for interpolation in ("linear", "nearest"):
        sample = sampler.load_sample({"gid": gid, "space_slice": (slice(0, 64), slice(0, 64)), "scale": 0.5,
                                      "interpolation": interpolation}, with_annots=False)
        np.testing.assert_array_equal(sample["im"][..., 0], reference[gid]["overview"])


def test_a_users_own_gdal_open_sees_the_same_after_import_ndpatch(sources, tmp_path):
    dset, gids, reference, root = sources
    paths = [os.path.join(dset.bundle_dpath, dset.imgs[gid]["file_name"]) for gid in gids.values()]
    after = gdal_reference(paths, tmp_path / "after", with_ndpatch=True, dset_path=dset.fpath,
                           workdir=str(tmp_path / "cache"))
    for gid, path in zip(gids.values(), paths):
        before = reference[gid]
        assert sorted(after[path]) == sorted(before)
        for key, value in before.items():
            np.testing.assert_equal(after[path][key], value, err_msg=f"{path} {key}")


def test_ndpatch_leaves_no_gdal_setting_behind(sources, tmp_path):
    dset, gids, _, _ = sources
    for backend in BACKENDS:
        sampler = ndpatch.CocoSampler(dset, workdir=str(tmp_path / "cache"), backend=backend)
        for gid in gids.values():
            sampler.load_sample({"gid": gid, "space_slice": (slice(0, 4), slice(0, 4))}, with_annots=False)
    for key in ("GDAL_DISABLE_READDIR_ON_OPEN", "GDAL_PAM_ENABLED"):
        assert gdal.GetConfigOption(key) is None, key
    assert not [name for name in os.listdir(dset.bundle_dpath) if name.endswith(".aux.xml")
                and name not in ("tfw.tif.aux.xml", "aux.tif.aux.xml")]


def test_caches_keep_the_georeferencing_of_world_files_and_aux_xml(sources, tmp_path):
    dset, gids, reference, _ = sources
    for backend in ("npy", "cog"):
        sampler = ndpatch.CocoSampler(dset, workdir=str(tmp_path / backend), backend=backend)
        for case in ("wld", "tfw", "aux", "envi"):
            entry = sampler.entry(gids[case])
            assert entry.path != sampler.index.source(gids[case]).path  # converted
            sidecar = entry.meta["sidecar"]
            assert sidecar["geotransform"] == reference[gids[case]]["geotransform"], case
            assert sidecar["crs_wkt"] == reference[gids[case]]["crs"], case
            if backend == "cog":  # and the COG itself carries them, for GDAL
                ds = gdal.Open(entry.path)
                assert list(ds.GetGeoTransform()) == reference[gids[case]]["geotransform"], case
                assert osr.SpatialReference(ds.GetProjectionRef()).IsSame(
                    osr.SpatialReference(reference[gids[case]]["crs"])), case


@pytest.mark.parametrize("case", ["tfw", "aux"])
def test_import_vectors_on_rasters_georeferenced_by_sidecars(sources, case, tmp_path, capsys):
    dset, gids, reference, _ = sources
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    name = dset.imgs[gids[case]]["file_name"]
    for other in os.listdir(dset.bundle_dpath):
        if other.startswith(name.split(".")[0] + "."):
            os.symlink(os.path.join(dset.bundle_dpath, other), bundle / other)
    single = kwcoco.CocoDataset()
    single.add_image(file_name=name, width=40, height=32)
    single.fpath = str(bundle / "one.kwcoco.json")
    single.dump(single.fpath)
    x0, y0 = ORIGIN
    ring = [[x0 + 10 * c, y0 - 10 * r] for c, r in [(5, 4), (25, 4), (25, 20), (5, 20), (5, 4)]]
    vectors = tmp_path / "fields.geojson"
    vectors.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": f"EPSG:{UTM}"}},
        "features": [{"type": "Feature", "properties": {"crop": "wheat"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    assert main(["import-vectors", single.fpath, str(vectors), "--category-field", "crop"]) == 0
    assert "annotations=1" in capsys.readouterr().out
    out = kwcoco.CocoDataset(single.fpath)
    (ann,) = out.anns.values()
    assert ann["bbox"] == [5.0, 4.0, 20.0, 16.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_signed_bytes_are_int8_on_every_backend(sources, backend, tmp_path):
    dset, gids, reference, _ = sources
    gid = gids["signed"]
    sampler = ndpatch.CocoSampler(dset, workdir=str(tmp_path / "cache"), backend=backend)
    im = sampler.load_sample({"gid": gid, "space_slice": (slice(-2, 18), slice(-3, 20))},
                             with_annots=False)["im"]
    expected = np.zeros((20, 23, 1), np.int8)
    expected[2:18, 3:23] = reference[gid]["pixels"]
    assert im.dtype == np.int8 and (im < 0).any()
    np.testing.assert_array_equal(im, expected)
    entry = sampler.entry(gid)
    if entry.kind == "npy":
        assert np.load(entry.path, mmap_mode="r").dtype == np.int8
    elif entry.path != sampler.index.source(gid).path:  # a converted COG keeps the signedness
        np.testing.assert_array_equal(gdal.Open(entry.path).ReadAsArray(), reference[gid]["pixels"][..., 0])


def test_int8_samples_written_as_geotiff_stay_signed(tmp_path):
    pixels = np.arange(-64, 64, dtype=np.int8).reshape(8, 16)
    path = write_raster(tmp_path / "s.tif", pixels)
    assert gdal.Open(path).ReadAsArray().dtype == np.int8
    np.testing.assert_array_equal(gdal.Open(path).ReadAsArray(), pixels)


# -- hostile sources -----------------------------------------------------------------

def _vrt(source, width=8, height=8, relative=True, raw=False):
    if raw:
        band = (f'<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">'
                f'<SourceFilename relativeToVRT="{int(relative)}">{source}</SourceFilename>'
                f'<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{width}</LineOffset>'
                f'</VRTRasterBand>')
    else:
        band = (f'<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
                f'<SourceFilename relativeToVRT="{int(relative)}">{source}</SourceFilename>'
                f'<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>')
    return f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{band}</VRTDataset>'


@pytest.fixture
def hostile(tmp_path):
    """A bundle whose ``.png`` files are VRTs: inside.png reads a file in the bundle, outside.png one outside."""
    bundle = tmp_path / "bundle"
    (bundle / "sub").mkdir(parents=True)
    secret = write_raster(tmp_path / "secret.tif", _random((8, 8), seed=11))
    inside = write_raster(bundle / "sub" / "inside.tif", _random((8, 8), seed=12))
    (bundle / "inside.png").write_text(_vrt("sub/inside.tif"))
    (bundle / "outside.png").write_text(_vrt(secret, relative=False))
    (bundle / "dotdot.png").write_text(_vrt("../secret.tif"))
    (bundle / "nested.png").write_text(_vrt("outside.png"))
    (bundle / "raw.png").write_text(_vrt(str(tmp_path / "secret.tif"), relative=False, raw=True))
    (bundle / "memory.png").write_text(_vrt("MEM:::DATAPOINTER=0,PIXELS=8,LINES=8", relative=False))
    dset = kwcoco.CocoDataset()
    for name in ("inside.png", "outside.png", "dotdot.png", "nested.png", "raw.png", "memory.png"):
        dset.add_image(file_name=name, width=8, height=8)
    dset.fpath = str(bundle / "data.kwcoco.json")
    dset.dump(dset.fpath)
    return kwcoco.CocoDataset(dset.fpath), gdal.Open(inside).ReadAsArray(), gdal.Open(secret).ReadAsArray()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_png_that_is_a_vrt_is_refused(hostile, backend, tmp_path):
    dset, _, _ = hostile
    sampler = ndpatch.CocoSampler(dset, workdir=str(tmp_path / "cache"), backend=backend)
    for gid, img in dset.imgs.items():
        path = os.path.join(dset.bundle_dpath, img["file_name"])
        with pytest.raises(NdpatchError, match=rf"image {gid} \({path}\).*VRT"):
            sampler.load_sample({"gid": gid, "space_slice": (slice(0, 8), slice(0, 8))})
    assert not os.path.exists(tmp_path / "cache" / "entries") or not [
        p for p in os.listdir(tmp_path / "cache" / "entries") if not p.startswith(".")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_allow_vrt_reads_vrts_inside_the_bundle_only(hostile, backend, tmp_path):
    dset, inside, secret = hostile
    options = {} if backend is None else {"workdir": str(tmp_path / "cache")}
    reader = make_backend(backend, allow_vrt=True, **options)
    sources = {img["file_name"]: ImageSource(gid, os.path.join(dset.bundle_dpath, img["file_name"]),
                                             bundle_dpath=dset.bundle_dpath)
               for gid, img in dset.imgs.items()}
    entry = reader.ensure(sources["inside.png"])
    np.testing.assert_array_equal(read_window(reader, entry, slice(0, 8), slice(0, 8), None, None)[..., 0], inside)
    for name, why in [("outside.png", "outside the dataset's folder"), ("dotdot.png", "outside"),
                      ("nested.png", "outside"), ("raw.png", "outside"), ("memory.png", "outside")]:
        with pytest.raises(SourceReadError, match=rf"image {sources[name].gid} .*{why}"):
            reader.ensure(sources[name])
    no_bundle = ImageSource(1, sources["inside.png"].path)
    with pytest.raises(SourceReadError, match="folder is not known"):
        make_backend(None, allow_vrt=True).ensure(no_bundle)


def test_vrt_entries_are_never_served_to_backends_that_refuse_vrts(hostile, tmp_path):
    dset, inside, _ = hostile
    gid = next(g for g, img in dset.imgs.items() if img["file_name"] == "inside.png")
    allowing = ndpatch.CocoSampler(dset, workdir=str(tmp_path), backend=make_backend(
        "npy", workdir=str(tmp_path), allow_vrt=True))
    assert allowing.entry(gid).meta["converted"]
    refusing = ndpatch.CocoSampler(dset, workdir=str(tmp_path), backend="npy")
    with pytest.raises(SourceReadError, match="VRT"):
        refusing.entry(gid)


def test_a_sidecar_vrt_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(64)))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    path = write_raster(bundle / "a.png", np.full((16, 16), 5, np.uint8), driver="PNG")
    (bundle / "a.png.ovr").write_text(_vrt(str(secret), relative=False, raw=True))
    for backend, why in [(make_backend(None), "a.png.ovr as a VRT raster"),
                         (make_backend(None, allow_vrt=True), "secret.bin")]:
        with pytest.raises(SourceReadError, match=rf"image 1 .*{why}"):
            backend.ensure(ImageSource(1, path, bundle_dpath=str(bundle)))
    (bundle / "a.png.ovr").write_text(_vrt("inside.bin", raw=True))  # a VRT, even one inside the bundle
    (bundle / "inside.bin").write_bytes(bytes(64))
    with pytest.raises(SourceReadError, match=r"image 1 .*a.png.ovr as a VRT raster"):
        make_backend(None).ensure(ImageSource(1, path, bundle_dpath=str(bundle)))
    make_backend(None, allow_vrt=True).ensure(ImageSource(1, path, bundle_dpath=str(bundle)))


def test_other_drivers_and_non_regular_files_are_refused(tmp_path):
    ers = tmp_path / "a.ers"
    write_raster(tmp_path / "raw.ers", np.zeros((4, 4), np.uint8), driver="ERS")  # a header naming its data file
    os.replace(tmp_path / "raw.ers", ers)
    with pytest.raises(SourceReadError, match=r"image 1 .*is a ERS raster.*gdal_translate"):
        make_backend(None).ensure(ImageSource(1, str(ers)))
    fifo = tmp_path / "fifo.tif"
    os.mkfifo(fifo)
    for name in BACKENDS:
        options = {} if name is None else {"workdir": str(tmp_path / "cache")}
        with pytest.raises(NdpatchError, match=rf"image 2 \({fifo}\).*not a regular file"):
            make_backend(name, **options).ensure(ImageSource(2, str(fifo)))
    with pytest.raises(SourceReadError, match="not a regular file"):
        make_backend(None).ensure(ImageSource(3, str(tmp_path)))


def test_a_raw_format_header_must_sit_beside_its_real_data_file(tmp_path):
    secret = tmp_path / "elsewhere" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(bytes(range(16)))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    write_raster(bundle / "ok.img", np.zeros((4, 4), np.uint8), driver="ENVI")
    os.symlink(secret, bundle / "cube.img")
    (bundle / "cube.hdr").write_text((bundle / "ok.hdr").read_text())
    with pytest.raises(SourceReadError, match=r"image 1 .*cube.hdr"):
        make_backend(None).ensure(ImageSource(1, str(bundle / "cube.img"), bundle_dpath=str(bundle)))
    make_backend(None).ensure(ImageSource(2, str(bundle / "ok.img"), bundle_dpath=str(bundle)))


# -- corrupt data -------------------------------------------------------------------------

@pytest.fixture
def truncated_jpeg(tmp_path):
    path = write_raster(tmp_path / "full.jpg", _random((64, 64, 3), seed=13), driver="JPEG")
    data = open(path, "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    dset = kwcoco.CocoDataset()
    dset.add_image(file_name=str(tmp_path / "cut.jpg"), width=64, height=64)
    return dset, str(tmp_path / "cut.jpg")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_truncated_jpeg_raises_on_every_backend(truncated_jpeg, backend, tmp_path):
    dset, path = truncated_jpeg
    assert gdal.Open(path).ReadAsArray().shape == (3, 64, 64)  # GDAL alone: a warning, and pixels
    sampler = ndpatch.CocoSampler(dset, workdir=str(tmp_path / "cache"), backend=backend)
    for _ in range(2):  # the second read too (GDAL's block cache would not warn again)
        with pytest.raises(NdpatchError, match=rf"image 1 \({path}\).*corrupt or truncated data.*JPEG"):
            sampler.load_sample({"gid": 1, "space_slice": (slice(40, 64), slice(0, 64))})
    assert not os.path.exists(tmp_path / "cache" / "entries") or not [
        p for p in os.listdir(tmp_path / "cache" / "entries") if p.endswith((".npy", ".tif", ".json"))]


def test_corrupt_data_check_is_per_thread_and_passes_other_warnings_on():
    seen = []
    gdal.PushErrorHandler(lambda cls, no, msg: seen.append(msg))
    try:
        with gdalio.corrupt_data_errors("image 1"):
            gdal.Error(gdal.CE_Warning, 1, "TIFFReadDirectory: Unknown field with tag 50000")
    finally:
        gdal.PopErrorHandler()
    assert seen == ["TIFFReadDirectory: Unknown field with tag 50000"]
    import threading
    errors = []

    def other_thread():
        try:
            gdal.PushErrorHandler("CPLQuietErrorHandler")
            gdal.Error(gdal.CE_Warning, 1, "libjpeg: Corrupt JPEG data: bad Huffman code")
            gdal.PopErrorHandler()
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    with gdalio.corrupt_data_errors("image 2"):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert errors == []


SIDECAR_FIFOS = ["a.tif.aux.xml", "a.tif.ovr", "a.tif.msk", "a.tfw", "a.wld", "a.aux", "A.TFW"]


def test_a_pipe_where_gdal_looks_for_a_sidecar_is_refused_not_hung(tmp_path):
    # Run in a child: on a regression GDAL's open blocks forever reading the pipe.
    script = """
import os, sys
from ndpatch.cache import ImageSource, make_backend
from ndpatch.demo import write_raster
import numpy as np
folder, names = sys.argv[1], sys.argv[2:]
for i, name in enumerate(names):
    sub = os.path.join(folder, str(i))
    os.makedirs(sub)
    write_raster(os.path.join(sub, "a.tif"), np.zeros((4, 4), np.uint8))
    os.mkfifo(os.path.join(sub, name))
    for backend in (None, "npy", "cog"):
        options = {} if backend is None else {"workdir": os.path.join(folder, "cache")}
        try:
            make_backend(backend, **options).ensure(ImageSource(i, os.path.join(sub, "a.tif")))
        except Exception as err:
            print(type(err).__name__, err)
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), *SIDECAR_FIFOS],
                          capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert len(lines) == 3 * len(SIDECAR_FIFOS)
    for i, name in enumerate(SIDECAR_FIFOS):
        for line in lines[3 * i:3 * i + 3]:
            assert line.startswith("SourceReadError") and f"/{i}/{name}, a file GDAL reads beside" in line
            assert "pipe or device" in line


@pytest.mark.parametrize("backend", ["npy", "cog"])
def test_a_cached_vrt_is_converted_again_when_a_file_it_references_changes(hostile, backend, tmp_path):
    dset, inside, _ = hostile
    referenced = os.path.join(dset.bundle_dpath, "sub", "inside.tif")
    source = ImageSource(1, os.path.join(dset.bundle_dpath, "inside.png"), bundle_dpath=dset.bundle_dpath)
    options = {"workdir": str(tmp_path / "cache"), "allow_vrt": True}
    before = make_backend(backend, **options).ensure(source)
    stat = os.stat(referenced)
    fresh = write_raster(tmp_path / "fresh.tif", _random((8, 8), seed=99))
    assert os.path.getsize(fresh) == stat.st_size
    with open(referenced, "r+b") as handle:   # same inode, same size, mtime put back: as cp -p leaves it
        handle.write(open(fresh, "rb").read())
    os.utime(referenced, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    reader = make_backend(backend, **options)
    after = reader.ensure(source)
    assert after.path != before.path
    np.testing.assert_array_equal(read_window(reader, after, slice(0, 8), slice(0, 8), None, None)[..., 0],
                                  gdal.Open(str(fresh)).ReadAsArray())


@pytest.mark.parametrize("sidecar", ["a.tfw", "a.tif.aux.xml", "a.tif.ovr"])
def test_a_sidecar_added_beside_a_cached_source_gives_a_new_entry(tmp_path, sidecar):
    path = write_raster(tmp_path / "a.tif", _random((8, 8), seed=3))
    before = make_backend("npy", workdir=str(tmp_path / "cache")).ensure(ImageSource(1, str(path)))
    if sidecar == "a.tfw":
        (tmp_path / sidecar).write_text("2\n0\n0\n-2\n100\n200\n")
    elif sidecar.endswith(".ovr"):
        gdal.Open(str(path)).BuildOverviews("NEAREST", [2])
    else:
        (tmp_path / sidecar).write_text("<PAMDataset><Metadata><MDI key='a'>b</MDI></Metadata></PAMDataset>")
    after = make_backend("npy", workdir=str(tmp_path / "cache")).ensure(ImageSource(1, str(path)))
    assert after.path != before.path
    if sidecar == "a.tfw":
        assert after.geotransform == (99.0, 2.0, 0.0, 201.0, 0.0, -2.0)
