"""The ``ndpatch`` command line.

Conventions (docs/cli.md): exit status 0 on success, 1 when the work fails
(an ndpatch or OS error, printed as one line ``ndpatch: error: ...``), 2 for a
usage error (argparse's message), 130 on Ctrl-C. Every subcommand takes
``--config FILE`` (YAML or JSON; its keys are the subcommand's option names and
the command line overrides them) and ``-v`` / ``-q`` (the ``ndpatch`` logger's
level; ``-q`` also hides progress bars). ``--help`` shows every option's default
and choices, and option values are checked before any work starts.

Each subcommand is one ``add_<name>(subparsers)`` function that declares its
options and sets ``run`` (the code that runs it), optionally ``check`` (checks
across options, a usage error when they fail) and ``interrupted`` (what Ctrl-C
prints).

Example:
    >>> parser = build_parser()
    >>> parser.parse_args(["demo", "--out", "/tmp/x"]).out
    '/tmp/x'
    >>> parser.parse_args(["cache", "verify", "--delete"]).delete
    True
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ndpatch.errors import NdpatchError

log = logging.getLogger(__name__)

#: What Ctrl-C prints, unless a subcommand says more (export: how to continue).
INTERRUPTED = "interrupted"
#: Exit statuses (argparse itself exits with 2 on a usage error).
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 128 + signal.SIGINT


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: ...)`` to an option's help unless the help already names its default.

    Choices are shown by argparse itself, as ``{a,b,c}``. Options whose default
    is ``None`` say in their help what that means (``(default: all bands)``).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default in (None, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


@dataclass(frozen=True)
class Number:
    """An argparse ``type``: a number of ``kind``, within the bounds given (``gt``: greater than, ...).

    Example:
        >>> Number(float, ge=0, lt=1)("0.25"), Number(float, ge=0, lt=1).describe()
        (0.25, 'a number >= 0 and < 1')
    """

    kind: type = int
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        bounds = [f"{op} {bound:g}" for op, bound in ((">=", self.ge), (">", self.gt), ("<", self.lt))
                  if bound is not None]
        return ("an integer" if self.kind is int else "a number") + (" " + " and ".join(bounds) if bounds else "")

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                or (self.lt is not None and value >= self.lt)):
            raise argparse.ArgumentTypeError(f"{text} is not {self.describe()}")
        return value


POSITIVE_INT = Number(int, ge=1)
POSITIVE = Number(float, gt=0)


def cog_codecs() -> list[str]:
    """The ``COMPRESS`` values this GDAL's COG driver lists (what ``--compress`` accepts).

    Example:
        >>> {"DEFLATE", "LZW", "NONE"} <= set(cog_codecs())
        True
    """
    import xml.etree.ElementTree as ET

    from osgeo import gdal
    options = ET.fromstring(gdal.GetDriverByName("COG").GetMetadataItem("DMD_CREATIONOPTIONLIST"))
    return [value.text for option in options.iter("Option") if option.get("name") == "COMPRESS"
            for value in option.iter("Value")]


def cog_blocksize(text: str) -> int:
    """``--blocksize``: a multiple of 16, at least 128 (what the COG backend accepts)."""
    value = POSITIVE_INT(text)
    if value < 128 or value % 16:
        raise argparse.ArgumentTypeError(f"{text} is not a multiple of 16 >= 128")
    return value


def window_size(text: str) -> str:
    """``--window``: ``256`` or ``HxW``, checked by the export planner's own parser."""
    from ndpatch.export import parse_window
    try:
        parse_window(text)
    except NdpatchError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def per_axis(number: Number):
    """An argparse ``type``: ``N`` or ``HxW``, each value a ``number``.

    One value is returned as it is (a default-looking setting stays a scalar), two as a tuple.

    Example:
        >>> per_axis(Number(float, ge=0, lt=1))("0.25x0.5"), per_axis(POSITIVE_INT)("64")
        ((0.25, 0.5), 64)
    """
    def parse(text: str):
        parts = text.lower().split("x")
        if len(parts) > 2:
            raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW ({number.describe()} each)")
        values = tuple(number(part) for part in parts)
        return values[0] if len(values) == 1 else values
    return parse


def add_allow_vrt(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-vrt", action=argparse.BooleanOptionalAction, default=False,
                        help="also read GDAL VRT images, when every file they reference is inside the "
                             "dataset's folder (docs/geo.md)")


def cache_size(text: str) -> int:
    """``--max-size``: bytes, or a number with K, M, G or T (``50G``)."""
    from ndpatch.cache.budget import parse_size
    try:
        return parse_size(text)
    except NdpatchError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def dask_address(text: str) -> str:
    """``--dask``: ``local:N`` (N worker processes here) or a Dask scheduler's address."""
    from ndpatch.distributed import parse_local
    try:
        parse_local(text)
    except NdpatchError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_dask(parser, what: str) -> None:
    parser.add_argument("--dask", metavar="ADDRESS", type=dask_address, default=None,
                        help=f"run the {what} on a Dask cluster: a scheduler address (tcp://host:8786) or "
                             "local:N for N worker processes here; the cache (and output) folder must be one "
                             "every worker sees (default: local worker processes, --workers)")


def workers_help(more: str = "") -> str:
    from ndpatch.workers import default_workers
    return f"worker processes{more} (default: one per CPU, {default_workers()} here)"


# --------------------------------------------------------------------------- subcommands

def add_backend_options(parser: argparse.ArgumentParser) -> None:
    from ndpatch.cache import CACHE_BACKENDS
    parser.add_argument("--backend", default="direct", choices=["direct", *CACHE_BACKENDS],
                        help="pixel backend: direct reads the sources through GDAL, the others "
                             "read a cache made on first touch (docs/cache.md)")
    add_workdir(parser)


def add_workdir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", metavar="DIR", default=None,
                        help="cache folder (default: $NDPATCH_CACHE, else the per-user cache dir)")


def add_demo(subparsers) -> None:
    parser = command(subparsers, "demo", help="sample a toy dataset and write a mosaic of the windows",
                     description="Build kwcoco's 'shapes8' toy dataset, sample positive, negative and "
                                 "arbitrary windows, and write them as one PNG mosaic with annotations drawn.")
    parser.add_argument("--out", metavar="DIR", default="demo_output", help="output folder")
    add_backend_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampled windows")

    def run(args) -> int:
        from ndpatch.showcase import run_demo
        print(run_demo(args.out, backend=args.backend, workdir=args.workdir, seed=args.seed))
        return EXIT_OK

    parser.set_defaults(run=run)


def add_import_vectors(subparsers) -> None:
    parser = command(subparsers, "import-vectors", help="add polygons from a vector file to a kwcoco dataset",
                     description="Read a GeoJSON, GeoPackage or Shapefile through OGR, reproject each polygon "
                                 "to each georeferenced image's CRS and add it as an annotation; the dataset "
                                 "is written atomically (in place unless --out is given).")
    parser.add_argument("dataset", help="kwcoco json to add annotations to")
    parser.add_argument("vectors", help="vector file (GeoJSON, GeoPackage, Shapefile, ...)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--category-field", metavar="FIELD",
                       help="attribute holding each polygon's category name (default: none; "
                            "this or --category is required)")
    group.add_argument("--category", metavar="NAME",
                       help="one category for every polygon (default: none; this or --category-field "
                            "is required)")
    parser.add_argument("--layer", default=None, help="layer to read (default: all layers)")
    parser.add_argument("--out", metavar="JSON", default=None, help="output kwcoco json (default: overwrite DATASET)")
    add_allow_vrt(parser)

    def run(args) -> int:
        from ndpatch.geo import import_vectors
        counts = import_vectors(args.dataset, args.vectors, category_field=args.category_field,
                                category=args.category, layer=args.layer, out=args.out or args.dataset,
                                allow_vrt=args.allow_vrt, progress=args.verbosity >= 0)
        print(" ".join(f"{key}={value}" for key, value in sorted(counts.items())))
        return EXIT_OK

    parser.set_defaults(run=run)


def add_stretch(parser: argparse.ArgumentParser) -> None:
    from ndpatch.render import STRETCHES
    parser.add_argument("--stretch", default="auto", choices=list(STRETCHES),
                        help="display of pixel values: auto shows uint8 as it is and stretches other dtypes "
                             "per band between the 2nd and 98th percentiles; percentile always stretches; "
                             "none shows values as they are, clipped to 0..255")


#: ``show --out`` names that get a GeoTIFF of pixels; picture names (annotations drawn) are
#: ``ndpatch.render.PICTURE_SUFFIXES``.
SHOW_RASTERS = (".tif", ".tiff")


def add_show(subparsers) -> None:
    from ndpatch.warp import INTERPOLATIONS
    parser = command(subparsers, "show", help="write one sampled window as a picture (PNG, JPEG) or a GeoTIFF",
                     description="Sample one window of an image (optionally scaled or at a ground sample "
                                 "distance, with chosen channels) and write it as a PNG or JPEG picture with "
                                 "its annotations outlined, padding hatched and a caption (small windows "
                                 "enlarged), or, for a .tif name or with --raw, as a GeoTIFF of its pixels "
                                 "that lines up with the source in GDAL.")
    parser.add_argument("dataset", help="kwcoco / MS-COCO json")
    parser.add_argument("--gid", type=int, required=True, help="image id (required)")
    parser.add_argument("--cx", type=float, help="window centre x in image pixels, with --cy "
                                                 "(default: the whole image)")
    parser.add_argument("--cy", type=float, help="window centre y in image pixels, with --cx "
                                                 "(default: the whole image)")
    parser.add_argument("--width", type=POSITIVE, default=256, help="window width in image pixels (with --cx)")
    parser.add_argument("--height", type=POSITIVE, default=256, help="window height in image pixels (with --cy)")
    parser.add_argument("--channels", default=None, help="channels, e.g. 'red|green|nir' or '0|2' "
                                                         "(default: all bands; a picture shows the first three)")
    resolution = parser.add_mutually_exclusive_group()
    resolution.add_argument("--scale", type=POSITIVE, default=None,
                            help="output pixels per image pixel (default: 1, the image's resolution)")
    resolution.add_argument("--gsd", type=POSITIVE, default=None,
                            help="output ground sample distance in CRS units (default: the image's)")
    parser.add_argument("--interpolation", default="linear", choices=sorted(INTERPOLATIONS),
                        help="resampling of scaled windows")
    add_stretch(parser)
    add_backend_options(parser)
    add_allow_vrt(parser)
    parser.add_argument("--raw", action=argparse.BooleanOptionalAction, default=False,
                        help="write the window's pixels as a GeoTIFF (.tif, .tiff), no drawing")
    parser.add_argument("--out", metavar="FILE", required=True,
                        help="output file: .png, .jpg or .jpeg for a picture, .tif or .tiff for a GeoTIFF (required)")

    def check(args) -> str | None:
        if (args.cx is None) != (args.cy is None):
            return "--cx and --cy go together"
        from ndpatch.render import PICTURE_SUFFIXES
        suffix = Path(args.out).suffix.lower()
        if suffix not in (*PICTURE_SUFFIXES, *SHOW_RASTERS):
            return (f"argument --out: {args.out!r} has an unknown extension; name a picture "
                    f"{', '.join(PICTURE_SUFFIXES)} or a GeoTIFF {', '.join(SHOW_RASTERS)}")
        if args.raw and suffix not in SHOW_RASTERS:
            return f"--raw writes a GeoTIFF: name it .tif or .tiff, not {args.out!r}"
        return None

    def run(args) -> int:
        from ndpatch.geo import write_sample
        from ndpatch.preview import show
        from ndpatch.sampler import CocoSampler
        sampler = CocoSampler(args.dataset, workdir=args.workdir, backend=args.backend, allow_vrt=args.allow_vrt)
        target = {"gid": args.gid, "channels": args.channels, "scale": args.scale, "gsd": args.gsd,
                  "interpolation": args.interpolation}
        if args.cx is not None:
            target.update(cx=args.cx, cy=args.cy, width=args.width, height=args.height)
        if Path(args.out).suffix.lower() in SHOW_RASTERS:
            sample = write_sample(sampler, target, args.out)
            what = "GeoTIFF"
        else:
            sample = show(sampler, target, args.out, stretch=args.stretch)
            what = f"picture, {len(sample['annots']['aids'])} annotations drawn"
        print(f"wrote {args.out}: {'x'.join(map(str, sample['im'].shape))} {sample['im'].dtype} ({what})")
        return EXIT_OK

    parser.set_defaults(run=run, check=check)


def add_preview(subparsers) -> None:
    from ndpatch.preview import KINDS
    parser = command(subparsers, "preview", help="write a mosaic picture of a dataset's own sampled windows",
                     description="Draw N windows of one kind (positives around distinct annotations, negatives "
                                 "touching none, grid windows, or random windows) and write them as one PNG or "
                                 "JPEG mosaic: annotation outlines and class names, padding and nodata hatched, "
                                 "a caption per tile (image id, window), a legend of the classes.")
    parser.add_argument("dataset", help="kwcoco / MS-COCO json")
    parser.add_argument("--out", metavar="FILE", default="preview.png", help="output picture, .png, .jpg or .jpeg")
    parser.add_argument("--n", type=POSITIVE_INT, default=16, help="number of windows")
    parser.add_argument("--kind", default="positive", choices=list(KINDS), help="which windows")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the drawn windows")
    parser.add_argument("--window", type=window_size, default=None,
                        help="window size N or HxW (default: positives fitted to their annotation, negatives "
                             "the median positive's size, grid and random 256)")
    parser.add_argument("--channels", default=None, help="channels to show, e.g. 'nir|red|green' "
                                                         "(default: the first three bands, or the first as gray)")
    parser.add_argument("--tile", type=Number(int, ge=64), default=192, help="side of each tile in pixels")
    add_stretch(parser)
    add_backend_options(parser)

    def check(args) -> str | None:
        from ndpatch.render import PICTURE_SUFFIXES
        if Path(args.out).suffix.lower() not in PICTURE_SUFFIXES:
            return f"argument --out: {args.out!r} is not a .png, .jpg or .jpeg name"
        return None

    def run(args) -> int:
        from ndpatch.export import parse_window
        from ndpatch.preview import preview
        print(preview(args.dataset, args.out, n=args.n, kind=args.kind, seed=args.seed,
                      window_dims=parse_window(args.window) if args.window else None, channels=args.channels,
                      tile=args.tile, stretch=args.stretch, backend=args.backend, workdir=args.workdir))
        return EXIT_OK

    parser.set_defaults(run=run, check=check)


def add_stats(subparsers) -> None:
    parser = command(subparsers, "stats", help="tables of a dataset's images, annotations and cache state",
                     description="Images (count, sizes, bands, dtypes, nodata), annotations per class, box-size "
                                 "percentiles, and how many images each cache backend has cached; reads image "
                                 "headers only, converts nothing. Exit status 1 if an image cannot be read.")
    parser.add_argument("dataset", help="kwcoco / MS-COCO json")
    parser.add_argument("--json", action=argparse.BooleanOptionalAction, default=False,
                        help="print one JSON object instead of tables")
    add_workdir(parser)

    def run(args) -> int:
        from ndpatch.stats import dataset_stats, format_stats
        stats = dataset_stats(args.dataset, workdir=args.workdir)
        print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
        return EXIT_FAILED if stats["images"]["unreadable"] else EXIT_OK

    parser.set_defaults(run=run)


def add_export(subparsers) -> None:
    from ndpatch.export import WRITERS
    from ndpatch.export.plan import TARGET_KINDS
    from ndpatch.sampling.geometry import EDGES, PAD_DIRECTIONS
    parser = command(subparsers, "export",
                     help="export windows as a fixed training set (chips, kwcoco, webdataset, tfrecord)",
                     description="Cut the dataset's images into windows (a grid covering every pixel, or "
                                 "positives/negatives) and write them with label maps and provenance, in "
                                 "parallel, resumably, each file published atomically (docs/export.md).")
    parser.add_argument("dataset", help="kwcoco / MS-COCO json")
    parser.add_argument("out_dir", help="output folder (must be empty unless --resume or --overwrite)")
    parser.add_argument("--format", default="chips", choices=list(WRITERS), help="what to write")
    parser.add_argument("--window", type=window_size, default="256", help="window size: N, or HxW such as 256x512")
    parser.add_argument("--targets", default="grid", choices=list(TARGET_KINDS), help="which windows")
    grid = parser.add_argument_group("grid windows (--targets grid; docs/sampling.md)")
    grid.add_argument("--overlap", type=per_axis(Number(float, ge=0, lt=1)), default=0.0,
                      help="overlap of neighbouring grid windows, a fraction in [0, 1), or HxW per axis")
    grid.add_argument("--stride", type=per_axis(POSITIVE_INT), default=None,
                      help="pixels between grid windows, N or HxW, instead of --overlap; larger than the "
                           "window gives a sparse grid (default: from --overlap)")
    grid.add_argument("--edge", default="shift", choices=list(EDGES),
                      help="at the image edge: shift the last window inside, pad (keep the stride, "
                           "torchgeo's), overshoot by --padding (Raster Vision's) or drop partial windows")
    grid.add_argument("--pad-direction", default="end", choices=list(PAD_DIRECTIONS),
                      help="where windows may run past the image (pad, overshoot): end (bottom, right), "
                           "start (top, left) or both")
    grid.add_argument("--padding", type=per_axis(Number(int, ge=0)), default=None,
                      help="how far windows may run past the image, N or HxW (--edge overshoot; "
                           "default: half a window)")
    parser.add_argument("--count", type=POSITIVE_INT, default=None, help="number of chips (default: all targets)")
    parser.add_argument("--channels", default=None, help="channels to export, e.g. 'r|g|b' (default: all bands)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=POSITIVE_INT, default=None, help=workers_help())
    add_dask(where, "blocks")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampled windows")
    parser.add_argument("--shard-size", type=POSITIVE_INT, default=256, help="samples per webdataset/tfrecord shard")
    parser.add_argument("--strict", action=argparse.BooleanOptionalAction, default=False,
                        help="refuse a dataset with bad annotations up front (default: skip them, counted "
                             "in the summary)")
    add_backend_options(parser)
    add_allow_vrt(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                      help="continue an interrupted export in OUT_DIR")
    mode.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                      help="replace the export in OUT_DIR")

    def check(args) -> str | None:
        if args.stride is not None and args.overlap != 0:
            return "--stride and --overlap exclude each other"
        grid_options = [option for option, value, default in (
            ("--stride", args.stride, None), ("--overlap", args.overlap, 0.0), ("--edge", args.edge, "shift"),
            ("--pad-direction", args.pad_direction, "end"), ("--padding", args.padding, None)) if value != default]
        if args.targets != "grid" and grid_options:
            return f"{', '.join(grid_options)} place grid windows: they need --targets grid"
        return None

    def run(args) -> int:
        from ndpatch.cache import make_backend
        from ndpatch.export import export, format_summary
        from ndpatch.workers import default_workers
        summary = export(args.dataset, args.out_dir, format=args.format, window=args.window,
                         overlap=args.overlap, targets=args.targets, count=args.count,
                         channels=args.channels, workers=args.workers or default_workers(), seed=args.seed,
                         resume=args.resume, overwrite=args.overwrite, shard_size=args.shard_size,
                         backend=make_backend(args.backend, workdir=args.workdir, allow_vrt=args.allow_vrt),
                         workdir=args.workdir, strict=args.strict, progress=args.verbosity >= 0,
                         stride=args.stride, edge=args.edge, pad_direction=args.pad_direction, padding=args.padding,
                         client=args.dask)
        print(format_summary(summary))
        return EXIT_OK

    parser.set_defaults(run=run, check=check, interrupted="interrupted; rerun with --resume to continue")


def add_split(subparsers) -> None:
    from ndpatch.splits import SPLIT_BY
    parser = command(subparsers, "split", help="write train/val/test kwcoco files split by image, video or spatial block",
                     description="Assign every image (or video, or square block of each image) to exactly one "
                                 "split and write OUT_DIR/{train,val,test}.kwcoco.json; prints per-split "
                                 "class counts.")
    parser.add_argument("dataset", help="kwcoco / MS-COCO json")
    parser.add_argument("out_dir", help="output folder")
    fraction = Number(float, ge=0)
    parser.add_argument("--train", type=fraction, default=0.8, help="fraction of the data in train")
    parser.add_argument("--val", type=fraction, default=0.1, help="fraction of the data in val")
    parser.add_argument("--test", type=fraction, default=0.1, help="fraction of the data in test")
    parser.add_argument("--by", default="image", choices=list(SPLIT_BY), help="what is assigned to a split")
    parser.add_argument("--block-size", type=POSITIVE_INT, default=1024, help="block side in pixels (--by block)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the assignment")
    parser.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                        help="replace existing split files")

    def run(args) -> int:
        from ndpatch.splits import split_dataset
        report = split_dataset(args.dataset, args.out_dir, {"train": args.train, "val": args.val, "test": args.test},
                               by=args.by, block_size=args.block_size, seed=args.seed, overwrite=args.overwrite)
        for name, info in report.items():
            classes = ", ".join(f"{k}={v}" for k, v in sorted(info["classes"].items()))
            print(f"{name}: {info['images']} images, {info['annotations']} annotations ({classes})")
        return EXIT_OK

    parser.set_defaults(run=run)


def add_import_pairs(subparsers) -> None:
    parser = command(subparsers, "import-pairs", help="make a kwcoco dataset from folders of images and label rasters",
                     description="Pair each image in IMAGES_DIR with the label raster of the same name in "
                                 "LABELS_DIR; the label raster becomes a 'class_id' asset of the image "
                                 "(--polygons also vectorises it into polygon annotations).")
    parser.add_argument("images_dir", help="folder of images")
    parser.add_argument("labels_dir", help="folder of label rasters, named as the images")
    parser.add_argument("out", help="output kwcoco json")
    parser.add_argument("--polygons", action=argparse.BooleanOptionalAction, default=False,
                        help="also add polygon annotations (gdal.Polygonize)")
    parser.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                        help="replace an existing OUT")

    def run(args) -> int:
        from ndpatch.pairs import import_pairs
        dset = import_pairs(args.images_dir, args.labels_dir, args.out, polygons=args.polygons,
                            overwrite=args.overwrite)
        print(f"wrote {args.out}: {dset.n_images} images, {dset.n_cats} categories, {dset.n_annots} annotations")
        return EXIT_OK

    parser.set_defaults(run=run)


def add_warmup(subparsers) -> None:
    from ndpatch.cache import CACHE_BACKENDS
    parser = command(subparsers, "warmup", help="convert every image of a dataset into the cache, in parallel",
                     description="Convert every image of DATASET not yet cached, in worker processes, with a "
                                 "progress bar and a summary; exit status 1 if an image failed. A second run "
                                 "converts nothing.")
    parser.add_argument("dataset", help="kwcoco or MS-COCO json")
    parser.add_argument("--backend", default="auto", choices=list(CACHE_BACKENDS), help="cache backend")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=Number(int, ge=0), default=None,
                       help=workers_help("; 0 converts in this process"))
    add_dask(where, "conversions")
    add_workdir(parser)
    parser.add_argument("--max-size", metavar="SIZE", type=cache_size, default=None,
                        help="keep the cache under SIZE (50G, 500M, bytes), evicting the least recently used "
                             "entries (default: $NDPATCH_CACHE_MAX, else no limit)")
    parser.add_argument("--blocksize", type=cog_blocksize, default=None,
                        help="COG tile size, a multiple of 16 >= 128 (cog, auto; default: 128)")
    parser.add_argument("--compress", type=str.upper, default=None, choices=cog_codecs(),
                        help="COG codec, as this GDAL's COG driver lists them (cog, auto; default: ZSTD "
                             "when GDAL has it, else DEFLATE)")
    add_allow_vrt(parser)

    def check(args) -> str | None:
        if args.backend == "npy" and (args.blocksize is not None or args.compress is not None):
            return "--blocksize and --compress apply to the cog and auto backends, not npy"
        return None

    def run(args) -> int:
        from ndpatch.warmup import warmup
        options = {key: value for key, value in (("blocksize", args.blocksize), ("compress", args.compress),
                                                 ("cache_max_bytes", args.max_size)) if value is not None}
        summary = warmup(args.dataset, backend=args.backend, workers=args.workers, workdir=args.workdir,
                         progress=args.verbosity >= 0, allow_vrt=args.allow_vrt, client=args.dask,
                         **options)
        print(summary)
        return EXIT_FAILED if summary.failed else EXIT_OK

    parser.set_defaults(run=run, check=check)


def add_cache(subparsers) -> None:
    parser = subparsers.add_parser("cache", help="show, verify, prune or clear the cache", formatter_class=HelpFormatter,
                                   description="Subcommands: info (entries and bytes per backend, budget), verify "
                                               "(re-validate every entry), prune (evict down to a size), clear "
                                               "(remove every entry).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="{info,prune,verify,clear}")

    def cache_command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        sub = command(actions, name, help=help, description=description)
        add_workdir(sub)
        return sub

    def store(args):
        from ndpatch.cache import CacheStore, cache_root
        return CacheStore(cache_root(args.workdir))

    def budget_of(args) -> int | None:
        from ndpatch.cache.budget import max_bytes
        return max_bytes(args.max_size)

    def info(args) -> int:
        from datetime import datetime

        from ndpatch.cache.budget import human_bytes
        stats = store(args).info()
        limit = budget_of(args)
        used = f" of its {human_bytes(limit)} budget ({100 * stats['bytes'] / limit:.0f}%)" if limit else " (no budget)"
        print(f"cache {stats['root']}: {stats['entries']} entries, {human_bytes(stats['bytes'])}{used}")
        for kind, kind_stats in sorted(stats["by_kind"].items()):
            print(f"  {kind}: {kind_stats['entries']} entries ({kind_stats['in_place']} read in place), "
                  f"{kind_stats['bytes'] / 2**20:.1f} MB")
        if stats["orphans"] or stats["temp_files"]:
            print(f"  {stats['orphans']} orphaned files, {stats['temp_files']} temp files "
                  "(removed by the next writer or `ndpatch cache clear`)")
        if stats["least_recently_used"]:
            print("  least recently used (evicted first):")
        for entry in stats["least_recently_used"]:
            when = datetime.fromtimestamp(entry["last_used"]).isoformat(sep=" ", timespec="seconds")
            print(f"    {when}  {human_bytes(entry['bytes']):>9}  {entry['key']}  {entry['source']}")
        return EXIT_OK

    def prune(args) -> int:
        from ndpatch.cache.budget import human_bytes
        limit = budget_of(args)
        if limit is None:
            raise NdpatchError("cache prune needs a budget: --max-size SIZE, or $NDPATCH_CACHE_MAX")
        cache = store(args)
        result = cache.prune(limit)
        print(f"cache {cache.root}: evicted {len(result.removed)} entries ({human_bytes(result.freed)}), "
              f"{human_bytes(result.total)} left of its {human_bytes(limit)} budget"
              + (f"; {len(result.busy)} entries being written were left alone" if result.busy else ""))
        return EXIT_OK

    def verify(args) -> int:
        from ndpatch.cache import validate_entry
        cache = store(args)
        results = cache.verify(validate_entry, delete=args.delete, quick=args.quick)
        bad = [r for r in results if r.status != "ok"]
        for result in bad:
            print(f"  {result.status}: {result.key} ({result.source}): {result.reason}"
                  + (" [deleted]" if args.delete else ""))
        print(f"cache {cache.root}: {len(results) - len(bad)} of {len(results)} entries ok")
        return EXIT_FAILED if bad else EXIT_OK

    def clear(args) -> int:
        cache = store(args)
        print(f"cache {cache.root}: removed {cache.clear()} entries")
        return EXIT_OK

    def add_max_size(sub: argparse.ArgumentParser, help: str) -> argparse.ArgumentParser:
        sub.add_argument("--max-size", metavar="SIZE", type=cache_size, default=None, help=help)
        return sub

    add_max_size(cache_command("info", "entries, bytes, budget and least recently used entries",
                               "Entries and bytes per backend, entries read in place, orphaned and temp files, "
                               "the budget, and the least recently used entries (evicted first)."),
                 "the budget to show (default: $NDPATCH_CACHE_MAX, else none)").set_defaults(run=info)
    add_max_size(cache_command("prune", "evict least recently used entries down to a size",
                               "Evict the least recently used entries until the cache holds at most SIZE; "
                               "entries being written are left alone, processes reading an evicted entry keep "
                               "reading it, and its next use converts it again."),
                 "the size to prune to: 50G, 500M, bytes (default: $NDPATCH_CACHE_MAX; one is required)"
                 ).set_defaults(run=prune)
    verifier = cache_command("verify", "re-validate every entry (exit status 1 if one is bad)",
                             "Re-validate every entry (sizes, headers, sidecar and data checksums) and report "
                             "corrupt and stale (source edited or gone) ones; exit status 1 if any.")
    verifier.add_argument("--delete", action=argparse.BooleanOptionalAction, default=False,
                          help="also delete the bad entries")
    verifier.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False,
                          help="check sizes, headers and sidecars only, not the data checksums (reads no pixels)")
    verifier.set_defaults(run=verify)
    cache_command("clear", "remove every entry and temp file",
                  "Remove every entry and temp file of the cache.").set_defaults(run=clear)


#: Every subcommand, in the order ``ndpatch --help`` lists them.
SUBCOMMANDS = [add_demo, add_import_vectors, add_show, add_preview, add_stats, add_export, add_split, add_import_pairs, add_warmup, add_cache]


# --------------------------------------------------------------------------- parser

def add_verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more log output: -v info, -vv debug (default: warnings and errors)")
    parser.add_argument("-q", "--quiet", action="count", default=default,
                        help="less output: no progress bars or warnings "
                             "(default: progress bars and warnings shown)")


def common_options() -> argparse.ArgumentParser:
    """The options of every subcommand (``-v``/``-q`` also work before the subcommand's name)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", metavar="FILE", default=None,
                        help="YAML or JSON file of option values, keyed by the option names below "
                             "(e.g. 'shard-size: 64'); the command line overrides it (default: none)")
    add_verbosity(parent, argparse.SUPPRESS)  # SUPPRESS: not given here keeps what the top level got
    return parent


def command(subparsers, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand's parser, with the common options, defaults shown, and no abbreviated options."""
    return subparsers.add_parser(name, help=help, description=description, parents=[common_options()],
                                 formatter_class=HelpFormatter, allow_abbrev=False)


def version_text() -> str:
    """``ndpatch 0.1.0 (GDAL 3.6.2, kwcoco 0.9.1, numpy 2.4.6, Python 3.11.7)``."""
    import platform
    from importlib.metadata import version

    from osgeo import gdal

    import ndpatch
    return (f"ndpatch {ndpatch.__version__} (GDAL {gdal.__version__}, kwcoco {version('kwcoco')}, "
            f"numpy {version('numpy')}, Python {platform.python_version()})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ndpatch", formatter_class=HelpFormatter, allow_abbrev=False,
        description="Fast training patches from large images.",
        epilog="Exit status: 0 done, 1 the work failed (one-line error), 2 usage error, 130 interrupted. "
               "`ndpatch COMMAND --help` shows a command's options; docs/cli.md the conventions.")
    parser.add_argument("--version", action="version", version=version_text())
    add_verbosity(parser, 0)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    for leaf in leaf_parsers(parser):
        for action in leaf._actions:
            if not action.option_strings and action.metavar is None:
                action.metavar = action.dest.upper()  # DATASET, as help, descriptions and errors name it
    return parser


def leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers of every runnable subcommand under ``parser``."""
    for child in subcommands(parser).values():
        yield from leaf_parsers(child) if subcommands(child) else [child]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of ``parser``'s subcommands by name (empty for a leaf)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def select_command(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.ArgumentParser, int]:
    """The (sub)parser that ``argv`` names, and the index in ``argv`` just past its name(s).

    Example:
        >>> leaf, at = select_command(build_parser(), ["-v", "cache", "verify", "--delete"])
        >>> leaf.prog, at
        ('ndpatch cache verify', 3)
    """
    at = 0
    while children := subcommands(parser):
        names = [i for i in range(at, len(argv)) if not argv[i].startswith("-")]  # levels above have no valued options
        if not names or argv[names[0]] not in children:
            break
        parser, at = children[argv[names[0]]], names[0] + 1
    return parser, at


# --------------------------------------------------------------------------- --config

def option_value(argv: list[str], option: str) -> str | None:
    """The value of ``option`` (``--opt V`` or ``--opt=V``, the last one wins) before a ``--``."""
    value = None
    for i, token in enumerate(argv):
        if token == "--":
            break
        if token == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith(option + "="):
            value = token[len(option) + 1:]
    return value


def read_config(parser: argparse.ArgumentParser, path: str) -> dict:
    """The mapping in a YAML or JSON config file; a usage error if it cannot be read or is not one."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        parser.error(f"argument --config: cannot read {path}: {err.strerror or err}")
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
    except ValueError as err:  # json.JSONDecodeError
        parser.error(f"argument --config: {path} is not valid JSON: {err}")
    except Exception as err:  # yaml.YAMLError (yaml is imported only for YAML files)
        parser.error(f"argument --config: {path} is not valid YAML: {' '.join(str(err).split())}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        parser.error(f"argument --config: {path} must hold a mapping of option names to values, "
                     f"not a {type(data).__name__}")
    return data


def config_tokens(parser: argparse.ArgumentParser, path: str, given: set[str]) -> list[str]:
    """The options a config file sets, as command-line tokens, checked as the command line is.

    Keys are option names without the dashes (``shard-size`` or ``shard_size``).
    Options of a mutually exclusive group are left out when the command line
    (``given``: the option strings it names) uses another option of that group.

    Example:
        >>> import tempfile
        >>> leaf, _ = select_command(build_parser(), ["export"])
        >>> path = tempfile.mktemp(suffix=".yaml")
        >>> _ = open(path, "w").write("format: webdataset\\nshard_size: 64\\nresume: true\\n")
        >>> config_tokens(leaf, path, given={"--overwrite"})
        ['--format=webdataset', '--shard-size=64']
    """
    options = {action.dest: action for action in parser._actions
               if action.option_strings and action.dest not in ("help", "config")}
    positionals = {action.dest for action in parser._actions if not action.option_strings}
    excluded = {action.dest for group in parser._mutually_exclusive_groups
                if given & {s for a in group._group_actions for s in a.option_strings}
                for action in group._group_actions if not given & set(action.option_strings)}
    tokens = []
    for key, value in read_config(parser, path).items():
        dest = str(key).replace("-", "_")
        if dest in positionals:
            parser.error(f"{path}: {key!r} is a positional argument; give it on the command line")
        if dest not in options:
            names = ", ".join(a.option_strings[-1].lstrip("-") for a in options.values())
            parser.error(f"{path}: unknown key {key!r}; {parser.prog} takes {names}")
        action, option = options[dest], options[dest].option_strings[-1]
        if dest in excluded or value is None:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                parser.error(f"{path}: {key!r} must be true or false, not {value!r}")
            tokens.append(action.option_strings[0 if value else 1])
        elif action.nargs == 0:  # a counted flag (-v, -q)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                parser.error(f"{path}: {key!r} must be a count (0, 1, 2, ...), not {value!r}")
            tokens += [option] * value
        else:
            if isinstance(value, (bool, list, dict)):
                parser.error(f"{path}: {key!r} must be a single value, not {value!r}")
            tokens.append(f"{option}={check_value(parser, action, str(value), f'{path}: {key!r}')}")
    return tokens


def check_value(parser: argparse.ArgumentParser, action: argparse.Action, text: str, where: str) -> str:
    """``text`` if ``action`` accepts it (its type and choices), else a usage error naming ``where``."""
    try:
        value = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
        parser.error(f"{where}: {err}")
    if action.choices is not None and value not in action.choices:
        parser.error(f"{where}: invalid choice {text!r} (choose from {', '.join(map(str, action.choices))})")
    return text


def with_config(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with its subcommand's ``--config FILE`` values put before the command line's options.

    argparse keeps the last value of an option, so the command line overrides the file.
    """
    leaf, at = select_command(parser, argv)
    path = option_value(argv[at:], "--config")
    if path is None or subcommands(leaf):
        return argv
    options = argv[at:]
    options = options[:options.index("--")] if "--" in options else options
    given = {token.split("=", 1)[0] for token in options if token.startswith("-")}
    return argv[:at] + config_tokens(leaf, path, given) + argv[at:]


# --------------------------------------------------------------------------- running

@contextlib.contextmanager
def logging_to_stderr(verbosity: int) -> Iterator[None]:
    """The ``ndpatch`` logger (and Python warnings) printed on stderr at the level ``-v``/``-q`` ask for."""
    level = min(max(logging.WARNING - 10 * verbosity, logging.DEBUG), logging.CRITICAL)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    loggers = [logging.getLogger("ndpatch"), logging.getLogger("py.warnings")]
    levels = [logger.level for logger in loggers]
    logging.captureWarnings(True)
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(level)
    try:
        with warnings.catch_warnings():
            # kwimage says so on import when its optional compiled extension is absent; ndpatch never calls NMS
            warnings.filterwarnings("ignore", message="optional cpu_nms is not available", category=UserWarning)
            yield
    finally:
        logging.captureWarnings(False)
        for logger, previous in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(previous)


def stop_child_processes() -> None:
    """Send SIGTERM to this process's worker processes (and theirs).

    Not waited for here: waiting would reap them behind multiprocessing's back,
    whose pool would then wait forever for children it can no longer see.
    """
    import psutil
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()


@contextlib.contextmanager
def interrupts_stop_workers() -> Iterator[None]:
    """While a command runs, Ctrl-C stops its worker processes, then raises KeyboardInterrupt.

    A process pool waits for its running tasks on the way out of its ``with``
    block; with its workers stopped first, Ctrl-C ends the command at once (what
    the workers had half-written is never served: every write is atomic). A
    forked worker inherits this handler and exits quietly; its leader reports.
    After Ctrl-C, what the pools' bookkeeping threads raise about their stopped
    workers is logged at debug level, not printed as tracebacks.
    """
    leader, interrupted = os.getpid(), threading.Event()

    def on_interrupt(signum, frame):
        if os.getpid() != leader:
            os._exit(EXIT_INTERRUPTED)
        interrupted.set()
        stop_child_processes()
        raise KeyboardInterrupt

    def on_thread_error(hook_args) -> None:
        if not interrupted.is_set():
            return previous_hook(hook_args)
        log.debug("after Ctrl-C, thread %s raised %r", hook_args.thread.name, hook_args.exc_value)

    try:
        previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread: Python delivers signals to the main thread only
        yield
        return
    previous_hook, threading.excepthook = threading.excepthook, on_thread_error
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        threading.excepthook = previous_hook


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse exits with 2 on a usage error)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(with_config(parser, argv))
    args.verbosity = getattr(args, "verbose", 0) - getattr(args, "quiet", 0)
    problem = args.check(args) if getattr(args, "check", None) else None
    if problem:
        select_command(parser, argv)[0].error(problem)
    with logging_to_stderr(args.verbosity):
        log.debug("%s", version_text())
        log.info("%s with %s", " ".join(filter(None, [args.command, getattr(args, "action", None)])),
                 ", ".join(f"{key}={value!r}" for key, value in sorted(vars(args).items())
                           if not callable(value) and key not in ("command", "action")))
        try:
            with interrupts_stop_workers():
                return args.run(args)
        except KeyboardInterrupt:
            print(f"ndpatch: {getattr(args, 'interrupted', INTERRUPTED)}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (NdpatchError, OSError) as err:
            log.debug("the error's traceback:", exc_info=True)
            print(f"ndpatch: error: {err}", file=sys.stderr)
            return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
