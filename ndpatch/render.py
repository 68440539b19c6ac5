"""Pictures of samples: display pixels, annotation outlines, marked padding, captions, mosaics.

One renderer for ``ndpatch preview``, ``ndpatch show`` and ``ndpatch demo``:

* pixels: the first three bands as RGB (one or two bands: the first as gray;
  choose others with the target's ``channels``); uint8 as it is, other dtypes
  stretched per band between percentiles of the valid pixels (:class:`Stretch`,
  fitted once over the tiles of a mosaic that share a dtype and band count, so they compare);
* padding (window pixels outside the image) and nodata pixels are hatched in
  grey stripes, never shown as black pixels;
* annotations as outlines, never fills: polygons where the annotation has one,
  else its box (drawn on the box's own border pixels), keypoints as dots; one
  colour per category (:data:`PALETTE`) and the category's name on a label
  inside the picture, placed so labels do not overlap (a label with no free
  place is left out);
* one caption per tile (image id, window), below the picture, and a legend
  under a mosaic.

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> sample = sampler.load_sample({"gid": 1, "cx": 10, "cy": 10, "width": 64, "height": 64})
    >>> picture = draw_sample(sample, scale=2)
    >>> picture.shape, picture.dtype
    ((128, 128, 3), dtype('uint8'))
    >>> bool((picture[:40, :40] == HATCH_BACK).all(axis=-1).any())   # the padded top-left corner
    True
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import kwimage
import numpy as np

from ndpatch.errors import NdpatchError

RGB = tuple[int, int, int]
#: Category colours (by category id, modulo its length): saturated, distinct, readable on dark and light pixels.
PALETTE: tuple[RGB, ...] = (
    (255, 64, 64), (64, 160, 255), (255, 200, 0), (0, 220, 120), (255, 100, 220), (0, 230, 230),
    (255, 140, 0), (170, 110, 255), (160, 255, 60), (255, 160, 160), (30, 110, 255), (200, 160, 90),
)
#: Hatching of padding and nodata: light stripes on a dark grey.
HATCH_BACK: RGB = (56, 56, 64)
HATCH_LINE: RGB = (150, 150, 160)
HATCH_SPACING = 6
#: The mosaic's background (gaps, letterbox) and the frame around each tile's picture.
BACKGROUND: RGB = (24, 24, 28)
FRAME: RGB = (110, 110, 120)
TEXT: RGB = (235, 235, 235)
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: File suffixes a picture is written as (anything else is refused).
PICTURE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
#: How display pixels are made from the data (``Stretch.fit``'s ``mode``).
STRETCHES = ("auto", "percentile", "none")


def class_color(cid: int) -> RGB:
    """The outline colour of category ``cid`` (annotations without a category: white).

    >>> class_color(1), class_color(1 + len(PALETTE)) == class_color(1), class_color(-1)
    ((64, 160, 255), True, (255, 255, 255))
    """
    return (255, 255, 255) if cid < 0 else PALETTE[cid % len(PALETTE)]


def display_bands(n_bands: int) -> list[int]:
    """The bands shown: the first three as RGB, else the first as gray.

    >>> display_bands(4), display_bands(2)
    ([0, 1, 2], [0])
    """
    return [0, 1, 2] if n_bands >= 3 else [0]


@dataclass(frozen=True)
class Stretch:
    """A per-band linear map of data values to 0..255: ``low`` → 0, ``high`` → 255, clipped.

    >>> im = np.arange(100, dtype=np.uint16).reshape(10, 10, 1)
    >>> stretch = Stretch.fit([im], percentiles=(0, 100))
    >>> stretch.low.tolist(), stretch.high.tolist(), stretch.apply(im)[9, 9].tolist()
    ([0.0], [99.0], [255, 255, 255])
    """

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, ims: Sequence[np.ndarray], valid: Sequence[np.ndarray | None] | None = None,
            mode: str = "auto", percentiles: tuple[float, float] = (2, 98)) -> "Stretch":
        """The stretch of the displayed bands of ``ims`` (H×W×C), from their ``valid`` pixels (H×W bool).

        ``mode``: ``'auto'`` (uint8 as it is, other dtypes between the band's
        ``percentiles``), ``'percentile'`` (always) or ``'none'`` (values as they are, clipped).
        """
        if mode not in STRETCHES:
            raise NdpatchError(f"unknown stretch {mode!r}; expected one of {', '.join(STRETCHES)}")
        bands = display_bands(min(im.shape[-1] for im in ims)) if ims else [0]
        identity = cls(np.zeros(len(bands)), np.full(len(bands), 255.0))
        if mode == "none" or (mode == "auto" and all(im.dtype == np.uint8 for im in ims)):
            return identity
        valid = list(valid) if valid is not None else [None] * len(ims)
        values = [im[..., bands][mask] if mask is not None else im[..., bands].reshape(-1, len(bands))
                  for im, mask in zip(ims, valid)]
        values = np.concatenate(values).astype(np.float64) if values else np.zeros((0, len(bands)))
        low, high = np.zeros(len(bands)), np.ones(len(bands))
        for band in range(len(bands)):
            finite = values[:, band][np.isfinite(values[:, band])]
            if len(finite):
                low[band], high[band] = np.percentile(finite, percentiles)
                high[band] = max(high[band], low[band] + 1e-9 * max(1.0, abs(low[band])))
        return cls(low, high)

    def apply(self, im: np.ndarray) -> np.ndarray:
        """H×W×3 uint8 display pixels of ``im`` (H×W×C); NaN shows as 0."""
        bands = display_bands(im.shape[-1])
        scaled = (im[..., bands].astype(np.float64) - self.low) * (255.0 / (self.high - self.low))
        pixels = np.nan_to_num(np.clip(scaled, 0, 255), nan=0.0).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels)


def outside_mask(sample: dict) -> np.ndarray:
    """H×W bool: the sample's pixels whose centre lies outside its image (the padding).

    Uses ``params['tf_rel_to_abs']`` (sample → image pixels, scale included) and ``data_dims``.
    """
    height, width = sample["im"].shape[:2]
    m = np.asarray(sample["params"]["tf_rel_to_abs"].matrix)
    image_h, image_w = sample["params"]["data_dims"]
    cy = m[1, 1] * (np.arange(height) + 0.5) + m[1, 2]
    cx = m[0, 0] * (np.arange(width) + 0.5) + m[0, 2]
    return ~(((cy > 0) & (cy < image_h))[:, None] & ((cx > 0) & (cx < image_w))[None, :])


def nodata_mask(im: np.ndarray, nodata: float | None) -> np.ndarray:
    """H×W bool: pixels whose every band is ``nodata`` (or NaN)."""
    missing = np.isnan(im).all(axis=-1) if im.dtype.kind == "f" else np.zeros(im.shape[:2], bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        missing |= (im == nodata).all(axis=-1)
    return missing


def hidden_mask(sample: dict, nodata: float | None = None) -> np.ndarray:
    """H×W bool: padding and nodata pixels, the ones a picture hatches."""
    return outside_mask(sample) | nodata_mask(sample["im"], nodata)


def hatch(canvas: np.ndarray, mask: np.ndarray) -> None:
    """Paint ``mask``'s pixels of ``canvas`` (H×W×3 uint8) with diagonal stripes, in place."""
    rows, cols = np.nonzero(mask)
    stripe = (rows + cols) % HATCH_SPACING < 2
    canvas[rows, cols] = np.where(stripe[:, None], HATCH_LINE, HATCH_BACK)


def resized(pixels: np.ndarray, scale: float) -> np.ndarray:
    """``pixels`` scaled by ``scale``: nearest neighbour when enlarging (pixels stay square), area when shrinking."""
    if scale == 1:
        return pixels
    height, width = pixels.shape[:2]
    dsize = (max(1, round(width * scale)), max(1, round(height * scale)))
    return kwimage.imresize(pixels, dsize=dsize, interpolation="nearest" if scale > 1 else "area")


def class_names(sample: dict) -> dict[int, str]:
    """Category id → name from the sample's ``classes`` (a kwcoco category tree)."""
    classes = sample.get("classes")
    return dict(getattr(classes, "id_to_node", {}) or {})


# --------------------------------------------------------------------------- annotations

def outline_box(canvas: np.ndarray, xyxy: Sequence[float], color: RGB, thickness: int) -> None:
    """Outline a box (canvas pixels, corners ``x0, y0, x1, y1``) on its own border pixels, clipped."""
    height, width = canvas.shape[:2]
    x0, y0, x1, y1 = xyxy
    left, top = math.floor(x0), math.floor(y0)
    right, bottom = max(math.ceil(x1) - 1, left), max(math.ceil(y1) - 1, top)
    cols = slice(min(max(left, 0), width), min(max(right + 1, 0), width))
    rows = slice(min(max(top, 0), height), min(max(bottom + 1, 0), height))

    def clamp(start: int, stop: int, size: int) -> slice:
        return slice(min(max(start, 0), size), min(max(stop, 0), size))

    canvas[clamp(top, min(top + thickness, bottom + 1), height), cols] = color
    canvas[clamp(max(bottom + 1 - thickness, top), bottom + 1, height), cols] = color
    canvas[rows, clamp(left, min(left + thickness, right + 1), width)] = color
    canvas[rows, clamp(max(right + 1 - thickness, left), right + 1, width)] = color


def outline_polygon(canvas: np.ndarray, rings: Sequence[np.ndarray], color: RGB, thickness: int) -> None:
    """Outline polygon rings (N×2 canvas ``x, y`` in pixel-corner coordinates), sub-pixel exact."""
    shift = 4
    curves = [np.round((ring - 0.5) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2) for ring in rings
              if len(ring) >= 2]
    if curves:
        cv2.polylines(canvas, curves, True, color, thickness, cv2.LINE_AA, shift)


def polygon_rings(sseg) -> list[np.ndarray]:
    """The exterior and interior rings of a kwimage polygon / multipolygon / segmentation."""
    rings = []
    for poly in sseg.to_multi_polygon().data:
        rings.append(np.asarray(poly.data["exterior"].data, dtype=np.float64))
        rings.extend(np.asarray(ring.data, dtype=np.float64) for ring in poly.data["interiors"])
    return rings


def draw_annotations(canvas: np.ndarray, annots: Mapping, scale: float, names: Mapping[int, str],
                     thickness: int) -> None:
    """Outline the window's annotations on ``canvas`` (the window scaled by ``scale``) and label them."""
    cids = [int(c) for c in annots["cids"]]
    if not cids:
        return
    boxes = np.asarray(annots["rel_boxes"].to_ltrb().data, dtype=np.float64) * scale
    ssegs = annots["rel_ssegs"]
    kpts = annots["rel_kpts"]
    for i, cid in enumerate(cids):
        color = class_color(cid)
        sseg = ssegs[i] if ssegs is not None else None
        if sseg is not None:
            outline_polygon(canvas, [ring * scale for ring in polygon_rings(sseg)], color, thickness)
        else:
            outline_box(canvas, boxes[i], color, thickness)
        points = kpts[i] if kpts is not None else None
        if points is not None:
            for x, y in np.asarray(points.data["xy"].data, dtype=np.float64) * scale:
                center = (int(round(x - 0.5)), int(round(y - 0.5)))
                cv2.circle(canvas, center, thickness + 2, (0, 0, 0), -1, cv2.LINE_AA)
                cv2.circle(canvas, center, thickness + 1, color, -1, cv2.LINE_AA)
    placed: list[tuple[int, int, int, int]] = []
    for i in np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable"):
        cid = cids[i]
        name = names.get(cid, "(no class)" if cid < 0 else f"class {cid}")
        place_label(canvas, name, boxes[i], class_color(cid), placed)


LABEL_SCALE, LABEL_MARGIN = 0.35, 2


def text_size(text: str, font_scale: float) -> tuple[int, int]:
    """(width, height) in pixels of one line of ``text``, descenders included."""
    (width, height), baseline = cv2.getTextSize(text, FONT, font_scale, 1)
    return width, height + baseline


def place_label(canvas: np.ndarray, text: str, ltrb: np.ndarray, color: RGB,
                placed: list[tuple[int, int, int, int]]) -> bool:
    """Draw ``text`` on a ``color`` label by the box ``ltrb``, inside the canvas, overlapping no ``placed`` label.

    Tries above the box's top-left corner, inside it, then below it; returns
    whether a free place was found (the label is drawn only then).
    """
    height, width = canvas.shape[:2]
    text_w, text_h = text_size(text, LABEL_SCALE)
    label_w, label_h = text_w + 2 * LABEL_MARGIN, text_h + 2 * LABEL_MARGIN
    if label_w > width or label_h > height:
        return False
    x0, y0, _, y1 = ltrb
    for top in (y0 - label_h, y0, y1):
        x = int(min(max(round(x0), 0), width - label_w))
        y = int(min(max(round(top), 0), height - label_h))
        rect = (x, y, x + label_w, y + label_h)
        if all(rect[2] <= r[0] or r[2] <= rect[0] or rect[3] <= r[1] or r[3] <= rect[1] for r in placed):
            placed.append(rect)
            cv2.rectangle(canvas, rect[:2], (rect[2] - 1, rect[3] - 1), color, -1)
            ink = (0, 0, 0) if sum(color) > 400 else (255, 255, 255)
            kwimage.draw_text_on_image(canvas, text, org=(x + LABEL_MARGIN, y + LABEL_MARGIN), valign="top",
                                       color=ink, fontScale=LABEL_SCALE, thickness=1)
            return True
    return False


# --------------------------------------------------------------------------- pictures

def line_thickness(height: int, width: int) -> int:
    """Outline width for a picture of this size: 1 px up to ~190 px, then 1 px more per 128."""
    return max(1, round(min(height, width) / 128))


def draw_sample(sample: dict, scale: float = 1.0, stretch: Stretch | str = "auto",
                nodata: float | None = None, names: Mapping[int, str] | None = None) -> np.ndarray:
    """The sample as an H'×W'×3 uint8 picture (the window scaled by ``scale``), annotations drawn.

    ``stretch`` is a :class:`Stretch`, or a mode of :meth:`Stretch.fit` fitted on this sample alone;
    ``nodata`` marks the source's nodata pixels as padding is marked;
    ``names`` are category names (default: the sample's ``classes``).
    """
    im = sample["im"]
    if im.ndim != 3:
        raise NdpatchError(f"can draw image windows (H, W, C), not an array of shape {im.shape} "
                           "(a video sample: draw one frame at a time)")
    hidden = hidden_mask(sample, nodata)
    stretch = Stretch.fit([im], [~hidden], mode=stretch) if isinstance(stretch, str) else stretch
    canvas = resized(stretch.apply(im), scale)
    hidden = resized(hidden.astype(np.uint8), scale).astype(bool) if scale != 1 else hidden
    hatch(canvas, hidden)
    if sample.get("annots") is not None:
        draw_annotations(canvas, sample["annots"], canvas.shape[1] / im.shape[1],
                         class_names(sample) if names is None else names, line_thickness(*canvas.shape[:2]))
    return canvas


def caption_lines(sample: dict) -> list[str]:
    """The caption of a sample: its image id (and annotation id), and its window in image pixels.

    >>> caption_lines({"target": {"gid": 3, "aid": 7, "space_slice": (slice(0, 64), slice(10, 74))}})
    ['img 3 aid 7', 'y 0:64 x 10:74']
    """
    target = sample["target"]
    rows, cols = target["space_slice"]
    head = f"img {target['gid']}" + (f" aid {target['aid']}" if target.get("aid") is not None else "")
    return [head, f"y {rows.start}:{rows.stop} x {cols.start}:{cols.stop}"]


CAPTION_SCALE = 0.38


def draw_caption(width: int, lines: Sequence[str]) -> np.ndarray:
    """A ``width``-wide strip with ``lines`` of text, each shrunk (down to a limit, then cut) to fit."""
    line_h = text_size("Ay", CAPTION_SCALE)[1] + 2
    strip = np.empty((line_h * len(lines) + 4, width, 3), np.uint8)
    strip[...] = BACKGROUND
    for i, line in enumerate(lines):
        font_scale = CAPTION_SCALE
        while text_size(line, font_scale)[0] > width - 4 and font_scale > 0.28:
            font_scale -= 0.02
        while text_size(line, font_scale)[0] > width - 4 and len(line) > 3:
            line = line[:-3] + ".."
        kwimage.draw_text_on_image(strip, line, org=(2, 2 + i * line_h), valign="top", color=TEXT,
                                   fontScale=font_scale, thickness=1)
    return strip


def draw_tile(sample: dict, size: int, stretch: Stretch | str = "auto", nodata: float | None = None,
              names: Mapping[int, str] | None = None) -> np.ndarray:
    """The sample fitted into a ``size``×``size`` framed cell on the background, its caption below."""
    height, width = sample["im"].shape[:2]
    scale = min((size - 2) / height, (size - 2) / width)
    picture = draw_sample(sample, scale, stretch, nodata, names)
    cell = np.empty((size, size, 3), np.uint8)
    cell[...] = BACKGROUND
    ph, pw = picture.shape[:2]
    top, left = (size - ph) // 2, (size - pw) // 2
    cell[max(top - 1, 0):top + ph + 1, max(left - 1, 0):left + pw + 1] = FRAME
    cell[top:top + ph, left:left + pw] = picture
    return np.concatenate([cell, draw_caption(size, caption_lines(sample))], axis=0)


def draw_legend(width: int, names: Mapping[int, str]) -> np.ndarray:
    """A ``width``-wide strip: a swatch and name per category, and the hatching's meaning."""
    items = [(class_color(cid), name) for cid, name in sorted(names.items())] + [(None, "padding / nodata")]
    line_h = text_size("Ay", CAPTION_SCALE)[1] + 6
    swatch = line_h - 6
    rows, x, row = [[]], 4, 0
    for color, name in items:
        item_w = swatch + 4 + text_size(name, CAPTION_SCALE)[0] + 12
        if x + item_w > width and rows[row]:
            rows.append([])
            row, x = row + 1, 4
        rows[row].append((x, color, name))
        x += item_w
    strip = np.empty((line_h * len(rows) + 4, width, 3), np.uint8)
    strip[...] = BACKGROUND
    for r, entries in enumerate(rows):
        y = 3 + r * line_h
        for x, color, name in entries:
            box = strip[y:y + swatch, x:x + swatch]
            if color is None:
                hatch(box, np.ones(box.shape[:2], bool))
            else:
                box[...] = color
            kwimage.draw_text_on_image(strip, name, org=(x + swatch + 4, y), valign="top", color=TEXT,
                                       fontScale=CAPTION_SCALE, thickness=1)
    return strip


def draw_mosaic(samples: Sequence[dict], tile: int = 192, columns: int | None = None, stretch: str = "auto",
                nodata: Sequence[float | None] | None = None) -> np.ndarray:
    """The samples as captioned tiles on a grid (``columns``: default about square), a legend below.

    One :class:`Stretch` is fitted over all the samples of one dtype and band
    count (``stretch`` is its mode), so those tiles show the same values in the
    same colours; ``nodata`` gives each sample's nodata value.
    """
    if not samples:
        raise NdpatchError("no samples to draw")
    nodata = list(nodata) if nodata is not None else [None] * len(samples)
    hidden = [hidden_mask(sample, value) for sample, value in zip(samples, nodata)]
    kinds = [(s["im"].dtype, s["im"].shape[-1]) for s in samples]
    fitted = {kind: Stretch.fit([s["im"] for s, k in zip(samples, kinds) if k == kind],
                                [~mask for mask, k in zip(hidden, kinds) if k == kind], mode=stretch)
              for kind in set(kinds)}
    names = class_names(samples[0])
    tiles = [draw_tile(sample, tile, fitted[kind], value, names)
             for sample, kind, value in zip(samples, kinds, nodata)]
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    grid = kwimage.stack_images_grid(tiles, chunksize=columns, pad=6, bg_value=BACKGROUND)
    shown = {int(c) for s in samples if s.get("annots") is not None for c in s["annots"]["cids"]}
    legend = draw_legend(grid.shape[1], {cid: names.get(cid, f"class {cid}") for cid in shown})
    return np.concatenate([grid, legend], axis=0)


def picture_format(path: str | os.PathLike) -> str:
    """``'PNG'`` or ``'JPEG'`` from the file name; any other suffix is an error.

    >>> picture_format("a/preview.PNG"), picture_format("x.jpeg")
    ('PNG', 'JPEG')
    """
    suffix = Path(path).suffix.lower()
    if suffix not in PICTURE_SUFFIXES:
        raise NdpatchError(f"{path}: a picture is written as .png, .jpg or .jpeg, not {suffix or 'no suffix'!r}")
    return PICTURE_SUFFIXES[suffix]


def write_picture(path: str | os.PathLike, picture: np.ndarray) -> str:
    """Write an H×W×3 uint8 RGB picture as PNG or JPEG (by its suffix), atomically; returns the path."""
    from ndpatch.cache.store import atomic_publish
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if picture_format(path) == "JPEG" else []
    ok, encoded = cv2.imencode(Path(path).suffix.lower(), np.ascontiguousarray(picture[..., ::-1]), params)
    if not ok:
        raise NdpatchError(f"{path}: OpenCV could not encode a {picture.shape} picture")
    atomic_publish(path, lambda tmp: Path(tmp).write_bytes(encoded.tobytes()))
    return str(path)
