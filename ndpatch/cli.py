"""The ``ndpatch`` command line.

Each subcommand is one ``add_<name>(subparsers)`` function that declares its
arguments and points ``func`` at the code that runs it. ndpatch errors are
printed as one line (``ndpatch: error: ...``) with exit status 2.

Example:
    >>> parser = build_parser()
    >>> parser.parse_args(["demo", "--out", "/tmp/x"]).out
    '/tmp/x'
"""
from __future__ import annotations

import argparse
import sys

from ndpatch.errors import NdpatchError


def add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="sample a toy dataset and write a mosaic of the windows",
        description="Build kwcoco's 'shapes8' toy dataset, sample positive, negative and "
                    "arbitrary windows, and write them as one PNG mosaic with annotations drawn.")
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--backend", default=None, help="pixel backend (default: read sources directly)")
    parser.add_argument("--workdir", default=None, help="cache folder for cache backends")
    parser.add_argument("--seed", type=int, default=0)

    def run(args) -> int:
        from ndpatch.showcase import run_demo
        summary = run_demo(args.out, backend=args.backend, workdir=args.workdir, seed=args.seed)
        print(summary)
        return 0

    parser.set_defaults(func=run)


def add_import_vectors(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-vectors", help="add polygons from a vector file to a kwcoco dataset",
        description="Read a GeoJSON, GeoPackage or Shapefile through OGR, reproject each polygon to "
                    "each georeferenced image's CRS and add it as an annotation; the dataset is "
                    "written atomically (in place unless --out is given).")
    parser.add_argument("dataset", help="kwcoco json to add annotations to")
    parser.add_argument("vectors", help="vector file (GeoJSON, GeoPackage, Shapefile, ...)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--category-field", help="attribute holding each polygon's category name")
    group.add_argument("--category", help="one category for every polygon")
    parser.add_argument("--layer", default=None, help="layer to read (default: all)")
    parser.add_argument("--out", default=None, help="output kwcoco json (default: overwrite DATASET)")

    def run(args) -> int:
        from ndpatch.geo import import_vectors
        counts = import_vectors(args.dataset, args.vectors, category_field=args.category_field,
                                category=args.category, layer=args.layer, out=args.out or args.dataset)
        print(" ".join(f"{key}={value}" for key, value in sorted(counts.items())))
        return 0

    parser.set_defaults(func=run)


def add_show(subparsers) -> None:
    parser = subparsers.add_parser(
        "show", help="write one sampled window as a GeoTIFF",
        description="Sample one window of an image (optionally scaled or at a ground sample "
                    "distance, with chosen channels) and write it as a GeoTIFF that lines up "
                    "with the source in GDAL.")
    parser.add_argument("dataset", help="kwcoco / MS-COCO json")
    parser.add_argument("--gid", type=int, required=True, help="image id")
    parser.add_argument("--cx", type=float, help="window centre x (image pixels; default: whole image)")
    parser.add_argument("--cy", type=float, help="window centre y")
    parser.add_argument("--width", type=float, default=256)
    parser.add_argument("--height", type=float, default=256)
    parser.add_argument("--channels", default=None, help="e.g. 'red|green|nir'")
    parser.add_argument("--scale", type=float, default=None, help="output pixels per image pixel")
    parser.add_argument("--gsd", type=float, default=None, help="output ground sample distance (CRS units)")
    parser.add_argument("--interpolation", default="linear")
    parser.add_argument("--backend", default=None, help="pixel backend (default: read sources directly)")
    parser.add_argument("--workdir", default=None, help="cache folder for cache backends")
    parser.add_argument("--out", required=True, help="output GeoTIFF path")

    def run(args) -> int:
        from ndpatch.geo import write_sample
        from ndpatch.sampler import CocoSampler
        sampler = CocoSampler(args.dataset, workdir=args.workdir, backend=args.backend)
        target = {"gid": args.gid, "channels": args.channels, "scale": args.scale, "gsd": args.gsd,
                  "interpolation": args.interpolation}
        if args.cx is not None or args.cy is not None:
            target.update(cx=args.cx, cy=args.cy, width=args.width, height=args.height)
        sample = write_sample(sampler, target, args.out)
        print(f"wrote {args.out}: {'x'.join(map(str, sample['im'].shape))} {sample['im'].dtype}")
        return 0

    parser.set_defaults(func=run)


def add_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export windows as a fixed training set (chips, kwcoco, webdataset, tfrecord)",
        description="Cut the dataset's images into windows (a grid covering every pixel, or "
                    "positives/negatives) and write them with label maps and provenance, in parallel, "
                    "resumably, each file published atomically (docs/export.md).")
    parser.add_argument("dataset", help="kwcoco / MS-COCO json")
    parser.add_argument("out_dir", help="output folder (must be empty unless --resume or --overwrite)")
    parser.add_argument("--format", default="chips", help="chips | kwcoco | webdataset | tfrecord (default: chips)")
    parser.add_argument("--window", default="256", help="window size: 256, or HxW such as 256x512")
    parser.add_argument("--overlap", type=float, default=0.0, help="grid overlap fraction in [0, 1)")
    parser.add_argument("--targets", default="grid", help="grid | positives | negatives | mixed (default: grid)")
    parser.add_argument("--count", type=int, default=None, help="number of chips (default: all targets)")
    parser.add_argument("--channels", default=None, help="channels to export, e.g. 'r|g|b'")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-size", type=int, default=256, help="samples per webdataset/tfrecord shard")
    parser.add_argument("--backend", default=None, help="pixel backend (default: read sources directly)")
    parser.add_argument("--workdir", default=None, help="cache folder for cache backends")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted export in OUT_DIR")
    mode.add_argument("--overwrite", action="store_true", help="replace the export in OUT_DIR")

    def run(args) -> int:
        from ndpatch.export import export, format_summary
        summary = export(args.dataset, args.out_dir, format=args.format, window=args.window,
                         overlap=args.overlap, targets=args.targets, count=args.count,
                         channels=args.channels, workers=args.workers, seed=args.seed,
                         resume=args.resume, overwrite=args.overwrite, shard_size=args.shard_size,
                         backend=args.backend, workdir=args.workdir)
        print(format_summary(summary))
        return 0

    parser.set_defaults(func=run)


def add_split(subparsers) -> None:
    parser = subparsers.add_parser(
        "split", help="write train/val/test kwcoco files split by image, video or spatial block",
        description="Assign every image (or video, or square block of each image) to exactly one "
                    "split and write OUT_DIR/{train,val,test}.kwcoco.json; prints per-split class counts.")
    parser.add_argument("dataset", help="kwcoco / MS-COCO json")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--train", type=float, default=0.8)
    parser.add_argument("--val", type=float, default=0.1)
    parser.add_argument("--test", type=float, default=0.1)
    parser.add_argument("--by", default="image", help="image | video | block (default: image)")
    parser.add_argument("--block-size", type=int, default=1024, help="block side in pixels (--by block)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing split files")

    def run(args) -> int:
        from ndpatch.splits import split_dataset
        report = split_dataset(args.dataset, args.out_dir, {"train": args.train, "val": args.val, "test": args.test},
                               by=args.by, block_size=args.block_size, seed=args.seed, overwrite=args.overwrite)
        for name, info in report.items():
            classes = ", ".join(f"{k}={v}" for k, v in sorted(info["classes"].items()))
            print(f"{name}: {info['images']} images, {info['annotations']} annotations ({classes})")
        return 0

    parser.set_defaults(func=run)


def add_import_pairs(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-pairs", help="make a kwcoco dataset from folders of images and label rasters",
        description="Pair each image in IMAGES_DIR with the label raster of the same name in LABELS_DIR; "
                    "the label raster becomes a 'class_id' asset of the image (--polygons also "
                    "vectorises it into polygon annotations).")
    parser.add_argument("images_dir")
    parser.add_argument("labels_dir")
    parser.add_argument("out", help="output kwcoco json")
    parser.add_argument("--polygons", action="store_true", help="also add polygon annotations (gdal.Polygonize)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")

    def run(args) -> int:
        from ndpatch.pairs import import_pairs
        dset = import_pairs(args.images_dir, args.labels_dir, args.out, polygons=args.polygons,
                            overwrite=args.overwrite)
        print(f"wrote {args.out}: {dset.n_images} images, {dset.n_cats} categories, {dset.n_annots} annotations")
        return 0

    parser.set_defaults(func=run)


def add_warmup(subparsers) -> None:
    parser = subparsers.add_parser(
        "warmup", help="convert every image of a dataset into the cache, in parallel",
        description="Convert every image of DATASET not yet cached, in worker processes, with a "
                    "progress bar and a summary. A second run converts nothing.")
    parser.add_argument("dataset", help="kwcoco or MS-COCO json")
    parser.add_argument("--backend", default="auto", choices=["npy", "cog", "auto"])
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    parser.add_argument("--workdir", default=None, help="cache folder (default: $NDPATCH_CACHE, "
                                                        "else the per-user cache dir)")
    parser.add_argument("--blocksize", type=int, default=None, help="COG tile size (cog, auto)")
    parser.add_argument("--compress", default=None, help="COG codec: ZSTD, DEFLATE, LZW or JPEG (cog, auto)")

    def run(args) -> int:
        from ndpatch.warmup import warmup
        options = {key: value for key, value in (("blocksize", args.blocksize),
                                                 ("compress", args.compress)) if value is not None}
        summary = warmup(args.dataset, backend=args.backend, workers=args.workers,
                         workdir=args.workdir, **options)
        print(summary)
        return 1 if summary.failed else 0

    parser.set_defaults(func=run)


def add_cache(subparsers) -> None:
    parser = subparsers.add_parser(
        "cache", help="show, verify or clear the cache",
        description="info: entries and bytes per backend; verify: re-validate every entry "
                    "(exit 1 if any is corrupt or stale); clear: remove every entry.")
    parser.add_argument("action", choices=["info", "verify", "clear"])
    parser.add_argument("--workdir", default=None, help="cache folder (default: $NDPATCH_CACHE, "
                                                        "else the per-user cache dir)")
    parser.add_argument("--delete", action="store_true", help="verify: also delete bad entries")

    def run(args) -> int:
        from ndpatch.cache import CacheStore, cache_root, validate_entry
        store = CacheStore(cache_root(args.workdir))
        if args.action == "info":
            info = store.info()
            print(f"cache {info['root']}: {info['entries']} entries, {info['bytes'] / 2**20:.1f} MB")
            for kind, stats in sorted(info["by_kind"].items()):
                print(f"  {kind}: {stats['entries']} entries ({stats['in_place']} read in place), "
                      f"{stats['bytes'] / 2**20:.1f} MB")
            if info["orphans"] or info["temp_files"]:
                print(f"  {info['orphans']} orphaned files, {info['temp_files']} temp files "
                      "(removed by the next writer or `ndpatch cache clear`)")
            return 0
        if args.action == "verify":
            results = store.verify(validate_entry, delete=args.delete)
            bad = [r for r in results if r.status != "ok"]
            for result in bad:
                print(f"  {result.status}: {result.key} ({result.source}): {result.reason}"
                      + (" [deleted]" if args.delete else ""))
            print(f"cache {store.root}: {len(results) - len(bad)} of {len(results)} entries ok")
            return 1 if bad else 0
        print(f"cache {store.root}: removed {store.clear()} entries")
        return 0

    parser.set_defaults(func=run)


#: Every subcommand, in the order ``ndpatch --help`` lists them.
SUBCOMMANDS = [add_demo, add_import_vectors, add_show, add_export, add_split, add_import_pairs, add_warmup, add_cache]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ndpatch", description="Fast training patches from large images.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NdpatchError as err:
        print(f"ndpatch: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
