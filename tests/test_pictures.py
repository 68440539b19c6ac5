"""Pictures: `ndpatch preview` mosaics, `ndpatch show` PNG/JPEG/GeoTIFF, the renderer's rules (ndpatch.render)."""
import kwcoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from osgeo import gdal

import ndpatch
from ndpatch import render
from ndpatch.cli import main
from ndpatch.demo import make_dataset, write_raster
from ndpatch.preview import preview_targets

GRAY = 100
BOX = [16, 8, 24, 32]   # x, y, w, h in image pixels


def flat_dataset(folder, pixels: np.ndarray, boxes=(BOX,), nodata=None) -> str:
    """One image of the given pixels with a 'thing' box per entry of ``boxes``; returns the json path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_raster(folder / "img.tif", pixels, nodata=nodata)
    dset = kwcoco.CocoDataset()
    dset.fpath = str(folder / "data.kwcoco.json")
    cid = dset.add_category("thing")
    gid = dset.add_image(file_name="img.tif", width=pixels.shape[1], height=pixels.shape[0])
    for box in boxes:
        dset.add_annotation(gid, category_id=cid, bbox=list(box))
    dset.dump(dset.fpath)
    return dset.fpath


def read_png(path) -> np.ndarray:
    """An RGB picture read back through GDAL (independent of the OpenCV that wrote it)."""
    ds = gdal.Open(str(path))
    assert ds.GetDriver().ShortName == "PNG"
    return ds.ReadAsArray().transpose(1, 2, 0)


def tile_origin(tile: int, picture: int) -> int:
    """Where a tile's square picture starts inside its cell (centred)."""
    return (tile - picture) // 2


def test_preview_tiles_show_box_outlines_not_fills(tmp_path, capsys):
    path = flat_dataset(tmp_path / "d", np.full((64, 64, 3), GRAY, np.uint8))
    out = tmp_path / "preview.png"
    # One grid window covers the 64x64 image; a 194-pixel tile shows it at 3x (192 pixels, 1 pixel of frame).
    assert main(["preview", path, "--out", str(out), "--kind", "grid", "--window", "64", "--n", "1",
                 "--tile", "194"]) == 0
    assert f"wrote {out}: 1 grid windows from 1 images, 1 annotations drawn" in capsys.readouterr().out
    mosaic = read_png(out)
    at = tile_origin(194, 192)
    picture = mosaic[at:at + 192, at:at + 192]
    color = render.class_color(1)
    thickness = render.line_thickness(192, 192)
    x0, y0, x1, y1 = (3 * v for v in (BOX[0], BOX[1], BOX[0] + BOX[2], BOX[1] + BOX[3]))
    # the box's border pixels (left and right columns, the bottom rows) are the class colour ...
    assert (picture[y0:y1, x0:x0 + thickness] == color).all()
    assert (picture[y0:y1, x1 - thickness:x1] == color).all()
    assert (picture[y1 - thickness:y1, x0:x1] == color).all()
    # ... and the pixels just outside it, inside it and elsewhere are the window's own pixels
    assert (picture[y0:y1, x0 - 1] == GRAY).all() and (picture[y0:y1, x1] == GRAY).all()
    assert (picture[y0 + thickness:y1 - thickness, x0 + thickness:x1 - thickness] == GRAY).all()
    assert (picture[150:, :] == GRAY).all()
    # the class name is on a label of the class colour, inside the tile
    assert (picture[:y0, x0:x1] == color).all(axis=-1).sum() > 50


def test_preview_marks_padding_distinctly_from_black_pixels(tmp_path):
    path = flat_dataset(tmp_path / "d", np.zeros((64, 64, 3), np.uint8), boxes=())
    out = tmp_path / "preview.png"
    # A 96-pixel random window on a 64-pixel image is centred on it: 16 pixels of padding each side; 2x in the tile.
    assert main(["preview", path, "--out", str(out), "--kind", "random", "--window", "96", "--n", "1",
                 "--tile", "194"]) == 0
    at = tile_origin(194, 192)
    picture = read_png(out)[at:at + 192, at:at + 192]
    padding = np.ones((192, 192), bool)
    padding[32:160, 32:160] = False
    hatched = (picture == render.HATCH_BACK).all(axis=-1) | (picture == render.HATCH_LINE).all(axis=-1)
    assert hatched[padding].all() and not hatched[~padding].any()
    assert (picture[~padding] == 0).all()                    # the image's own black pixels stay black
    assert (picture[padding] == render.HATCH_LINE).all(axis=-1).mean() > 0.2   # stripes, not a flat tint


def test_preview_kinds_give_what_they_name(tmp_path):
    dset = make_dataset(tmp_path / "d", [{"shape": (120, 160, 3), "dtype": "uint8"}] * 2)
    sampler = ndpatch.CocoSampler(dset)
    positives = preview_targets(sampler, "positive", n=100, seed=0)
    assert sorted(t["aid"] for t in positives) == sorted(dset.anns)       # distinct annotations, all of them
    negatives = preview_targets(sampler, "negative", n=3, window_dims=(20, 20), seed=0)
    assert all(not sampler.regions.hits(t["gid"], *sampler.regions.window(t)) for t in negatives)
    grid = preview_targets(sampler, "grid", n=4, window_dims=(40, 40), seed=0)
    assert len(grid) == 4 and all(t["space_slice"][0].start % 40 == 0 for t in grid)
    randoms = preview_targets(sampler, "random", n=5, window_dims=(30, 50), seed=1)
    for t in randoms:
        rows, cols = t["space_slice"]
        assert 0 <= rows.start and rows.stop <= 120 and 0 <= cols.start and cols.stop <= 160
    assert randoms == preview_targets(sampler, "random", n=5, window_dims=(30, 50), seed=1)


def test_preview_shows_the_chosen_channels_and_stretches_other_dtypes(tmp_path, capsys):
    bands = np.stack([np.full((32, 32), v, np.uint8) for v in (10, 20, 30, 40)], axis=-1)
    path = flat_dataset(tmp_path / "d", bands, boxes=())
    out = tmp_path / "bands.png"
    assert main(["preview", path, "--out", str(out), "--kind", "grid", "--window", "32", "--n", "1",
                 "--tile", "66"]) == 0
    assert (read_png(out)[20, 20] == (10, 20, 30)).all()              # the first three bands as RGB
    assert main(["preview", path, "--out", str(out), "--kind", "grid", "--window", "32", "--n", "1",
                 "--tile", "66", "--channels", "a|b|g"]) == 0
    assert (read_png(out)[20, 20] == (40, 30, 20)).all()
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 10 + 5000)
    path = flat_dataset(tmp_path / "u16", ramp, boxes=())
    assert main(["preview", path, "--out", str(out), "--kind", "grid", "--window", "64", "--n", "1",
                 "--tile", "130"]) == 0
    gray = read_png(out)[1:129, 1:129, 0].astype(int)
    low, high = np.percentile(ramp, (2, 98))
    expected = np.clip((ramp.astype(float) - low) * 255 / (high - low), 0, 255).round()
    assert (gray[::2, ::2] == expected).all()                         # 2nd..98th percentile → 0..255
    capsys.readouterr()


def test_stretch_is_fitted_on_valid_pixels_only():
    im = np.array([[[0.0], [np.nan], [10.0], [20.0]]])
    stretch = render.Stretch.fit([im], [np.array([[False, True, True, True]])], percentiles=(0, 100))
    assert (stretch.low, stretch.high) == ([10.0], [20.0])
    assert render.Stretch.apply(stretch, im)[0, :, 0].tolist() == [0, 0, 0, 255]
    assert render.Stretch.fit([np.zeros((2, 2, 3), np.uint8)]).high.tolist() == [255, 255, 255]
    with pytest.raises(ndpatch.NdpatchError, match="unknown stretch 'log'"):
        render.Stretch.fit([im], mode="log")


def test_nodata_pixels_are_hatched_like_padding(tmp_path):
    pixels = np.full((32, 32), 50, np.uint16)
    pixels[:, :8] = 0
    path = flat_dataset(tmp_path / "d", pixels, boxes=(), nodata=0)
    sampler = ndpatch.CocoSampler(path)
    sample = sampler.load_sample({"gid": 1})
    picture = render.draw_sample(sample, nodata=0)
    hatched = (picture == render.HATCH_BACK).all(axis=-1) | (picture == render.HATCH_LINE).all(axis=-1)
    assert hatched[:, :8].all() and not hatched[:, 8:].any()


@settings(max_examples=60, deadline=None)
@given(st.floats(-20, 60), st.floats(-20, 60), st.floats(0, 50), st.floats(0, 50), st.integers(1, 3))
def test_a_box_outline_is_exactly_its_clipped_border(x0, y0, w, h, thickness):
    canvas = np.zeros((40, 40, 3), np.uint8)
    render.outline_box(canvas, (x0, y0, x0 + w, y0 + h), (255, 0, 0), thickness)
    left, top = np.floor(x0), np.floor(y0)
    right, bottom = max(np.ceil(x0 + w) - 1, left), max(np.ceil(y0 + h) - 1, top)
    r, c = np.mgrid[:40, :40]
    inside = (c >= left) & (c <= right) & (r >= top) & (r <= bottom)
    border = inside & ((c < left + thickness) | (c > right - thickness) | (r < top + thickness)
                       | (r > bottom - thickness))
    assert ((canvas[..., 0] == 255) == border).all()


def test_show_writes_a_png_with_the_boxes_drawn(tmp_path, capsys):
    path = flat_dataset(tmp_path / "d", np.full((64, 64, 3), GRAY, np.uint8))
    out = tmp_path / "window.png"
    # a 64x64 window is enlarged 4x (whole factor, to at least 256 pixels), its caption below
    assert main(["show", path, "--gid", "1", "--cx", "32", "--cy", "32", "--width", "64", "--height", "64",
                 "--out", str(out)]) == 0
    assert f"wrote {out}: 64x64x3 uint8 (picture, 1 annotations drawn)" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    picture = read_png(out)
    assert picture.shape[1] == 256 and picture.shape[0] > 256
    x0, y0, x1, y1 = (4 * v for v in (BOX[0], BOX[1], BOX[0] + BOX[2], BOX[1] + BOX[3]))
    t = render.line_thickness(256, 256)
    assert (picture[y0:y1, x0:x0 + t] == render.class_color(1)).all()
    assert (picture[y1 - t:y1, x0:x1] == render.class_color(1)).all()
    assert (picture[y0 + t:y1 - t, x0 + t:x1 - t] == GRAY).all()
    jpeg = tmp_path / "window.jpg"
    assert main(["show", path, "--gid", "1", "--out", str(jpeg)]) == 0
    assert gdal.Open(str(jpeg)).GetDriver().ShortName == "JPEG"


def test_show_raw_and_tif_names_write_the_pixels_as_a_geotiff(tmp_path, capsys):
    pixels = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    path = flat_dataset(tmp_path / "d", pixels)
    for name, flags in (("raw.tif", ["--raw"]), ("plain.tiff", [])):
        out = tmp_path / name
        assert main(["show", path, "--gid", "1", "--cx", "20", "--cy", "10", "--width", "16", "--height", "8",
                     "--out", str(out), *flags]) == 0
        ds = gdal.Open(str(out))
        assert ds.GetDriver().ShortName == "GTiff"
        assert (ds.ReadAsArray().transpose(1, 2, 0) == pixels[6:14, 12:28]).all()
    assert "(GeoTIFF)" in capsys.readouterr().out


@pytest.mark.parametrize("name,flags,message", [
    ("x.bmp", [], "x.bmp' has an unknown extension"),
    ("x", [], "has an unknown extension"),
    ("x.png", ["--raw"], "--raw writes a GeoTIFF: name it .tif or .tiff"),
])
def test_show_refuses_names_it_cannot_honour_before_any_work(tmp_path, capsys, name, flags, message):
    out = tmp_path / name
    with pytest.raises(SystemExit) as exit_:
        main(["show", str(tmp_path / "missing.json"), "--gid", "1", "--out", str(out), *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_preview_refuses_a_non_picture_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["preview", "d.json", "--out", str(tmp_path / "x.tif")])
    assert exit_.value.code == 2 and "is not a .png, .jpg or .jpeg name" in capsys.readouterr().err


def test_demo_mosaic_uses_the_renderer(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--workdir", str(tmp_path / "cache")]) == 0
    assert "12 windows" in capsys.readouterr().out
    mosaic = read_png(tmp_path / "mosaic.png")
    assert (mosaic == render.BACKGROUND).all(axis=-1).any()
    # no polygon is filled: each class colour covers a thin share of the mosaic
    for color in render.PALETTE:
        assert (mosaic == color).all(axis=-1).mean() < 0.05, color


def test_a_mosaic_stretches_each_kind_of_data_on_its_own(tmp_path):
    bright = flat_dataset(tmp_path / "u16", (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) + 60000), boxes=())
    dim = flat_dataset(tmp_path / "f32", np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32), boxes=())
    samples = [ndpatch.CocoSampler(path).load_sample({"gid": 1}) for path in (bright, dim)]
    mosaic = render.draw_mosaic(samples, tile=66, columns=2)
    for column in (0, 1):   # each tile spans black to white: not the float tile crushed by the uint16 range
        picture = mosaic[1:65, 1 + column * 72:65 + column * 72, 0]
        assert picture.min() == 0 and picture.max() == 255
