"""``ndpatch stats``: what a dataset holds, and how much of it a cache already has.

:func:`dataset_stats` reads every image's header (through GDAL, as a sampler
with ``backend=None`` does: nothing is converted) and the annotations, and asks
each cache backend which images it has a sound entry for. :func:`format_stats`
prints the result as tables; the dict itself is what ``--json`` prints.

Example:
    >>> import tempfile
    >>> from ndpatch.demo import make_dataset
    >>> tmp = tempfile.mkdtemp()
    >>> dset = make_dataset(tmp, [{"shape": (40, 50, 3), "dtype": "uint8"}, {"shape": (30, 20), "dtype": "uint16"}])
    >>> stats = dataset_stats(dset, workdir=f"{tmp}/cache")
    >>> stats["images"]["count"], stats["images"]["bands"], stats["images"]["dtypes"]
    (2, {'1': 1, '3': 1}, {'uint16': 1, 'uint8': 1})
    >>> stats["annotations"]["per_class"]["box"]
    {'id': 1, 'annotations': 2, 'images': 2}
    >>> stats["cache"]["backends"]["npy"]
    {'cached': 0, 'images': 2}
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ndpatch.annots import annotation_xywh
from ndpatch.cache import CACHE_BACKENDS, make_backend
from ndpatch.cache.store import cache_root
from ndpatch.errors import NdpatchError
from ndpatch.sampler import CocoSampler

#: The box-size percentiles reported.
PERCENTILES = (0, 5, 25, 50, 75, 95, 100)


def dataset_stats(dataset: Any, workdir: str | None = None) -> dict:
    """Images (sizes, bands, dtypes, nodata), annotations (per class, box sizes), videos, cache state.

    ``dataset`` is a ``kwcoco.CocoDataset`` or the path of a kwcoco / MS-COCO
    json; ``workdir`` the cache folder whose state is reported. Images whose
    files cannot be read are listed under ``images['unreadable']`` (id →
    error) instead of stopping the count.
    """
    sampler = CocoSampler(dataset, backend=None)
    dset, index = sampler.dset, sampler.index
    gids = sorted(dset.imgs)
    sizes, bands, dtypes, unreadable, with_nodata = [], Counter(), Counter(), {}, 0
    for gid in gids:
        try:
            record = sampler.records.get(gid)
            entries = [record.entry_of(asset.source) for asset in record.files]
            sizes.append(record.dims)
        except (NdpatchError, OSError) as err:
            unreadable[str(gid)] = str(err)
            continue
        bands[str(sum(entry.bands for entry in entries))] += 1
        dtypes["+".join(sorted({str(np.dtype(entry.dtype)) for entry in entries}))] += 1
        with_nodata += any(entry.nodata is not None for entry in entries)
    annotated = {ann["image_id"] for ann in dset.anns.values()}
    return {
        "dataset": dset.fpath,
        "images": {
            "count": len(gids),
            "height": summary([h for h, _ in sizes]),
            "width": summary([w for _, w in sizes]),
            "bands": dict(sorted(bands.items())),
            "dtypes": dict(sorted(dtypes.items())),
            "with_nodata": with_nodata,
            "without_annotations": sum(gid not in annotated for gid in gids),
            "unreadable": unreadable,
        },
        "videos": len(dset.dataset.get("videos", [])),
        "annotations": annotation_stats(dset),
        "cache": cache_state(index, gids, workdir),
    }


def summary(values: Sequence[float]) -> dict:
    """``min``, ``median`` and ``max`` of ``values`` (None when there are none)."""
    if not len(values):
        return {"min": None, "median": None, "max": None}
    return {"min": number(np.min(values)), "median": number(np.median(values)), "max": number(np.max(values))}


def number(value) -> int | float:
    """A numpy scalar as a JSON number: an int when it is whole."""
    value = float(value)
    return int(value) if value.is_integer() else round(value, 2)


def annotation_stats(dset) -> dict:
    """Counts per class (annotations and images), polygons, keypoints, and box-size percentiles."""
    anns = list(dset.anns.values())
    names = {cat["id"]: cat["name"] for cat in dset.dataset.get("categories", [])}
    per_class = {name: {"id": cid, "annotations": 0, "images": set()} for cid, name in sorted(names.items())}
    for ann in anns:
        cid = ann.get("category_id")
        name = names.get(cid, "(no category)" if cid is None else f"(unknown category {cid})")
        row = per_class.setdefault(name, {"id": cid, "annotations": 0, "images": set()})
        row["annotations"] += 1
        row["images"].add(ann["image_id"])
    boxes = np.array([annotation_xywh(ann) for ann in anns], dtype=np.float64).reshape(-1, 4)
    return {
        "count": len(anns),
        "with_polygon": sum(bool(ann.get("segmentation")) for ann in anns),
        "with_keypoints": sum(bool(ann.get("keypoints")) for ann in anns),
        "per_class": {name: {**row, "images": len(row["images"])} for name, row in per_class.items()},
        "box_width": percentiles(boxes[:, 2]),
        "box_height": percentiles(boxes[:, 3]),
    }


def percentiles(values: np.ndarray) -> dict:
    """``{'p0': ..., 'p50': ..., 'p100': ...}`` of :data:`PERCENTILES` (empty for no values)."""
    if not len(values):
        return {}
    return {f"p{p}": number(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}


def cache_state(index, gids: Sequence[int], workdir: str | None) -> dict:
    """Per cache backend, how many images have a sound entry for every file (nothing is converted)."""
    state = {"root": str(cache_root(workdir)), "backends": {}}
    for name in CACHE_BACKENDS:
        backend = make_backend(name, workdir=workdir, progress=False)
        cached = 0
        for gid in gids:
            try:
                cached += all(backend.cached(source) for source in index.sources(gid))
            except (NdpatchError, OSError):
                pass  # unreadable: reported under images
        state["backends"][name] = {"cached": cached, "images": len(gids)}
    return state


def format_table(header: Sequence[str] | None, rows: Sequence[Sequence[Any]], indent: str = "  ") -> list[str]:
    """Left-aligned text columns, under a header row unless ``header`` is None.

    >>> print("\\n".join(format_table(["a", "bb"], [[1, 22], [333, 4]])))
      a    bb
      1    22
      333  4
    """
    cells = ([] if header is None else [[str(c) for c in header]]) + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def format_stats(stats: dict) -> str:
    """The stats as the tables ``ndpatch stats`` prints."""
    images, annots, cache = stats["images"], stats["annotations"], stats["cache"]

    def counted(counts: dict) -> str:
        return ", ".join(f"{key}: {value}" for key, value in counts.items()) or "-"

    def spread(key: str) -> list:
        return [key] + [images[key][part] if images[key][part] is not None else "-" for part in ("min", "median", "max")]

    lines = [f"dataset {stats['dataset']}: {images['count']} images, {stats['videos']} videos, "
             f"{annots['count']} annotations, {len(annots['per_class'])} classes", "images"]
    lines += format_table(["", "min", "median", "max"], [spread("height"), spread("width")])
    lines += format_table(None, [["bands", counted(images["bands"])], ["dtypes", counted(images["dtypes"])],
                                     ["with nodata", images["with_nodata"]],
                                     ["without annotations", images["without_annotations"]],
                                     ["unreadable", len(images["unreadable"])]])
    lines += [f"  unreadable image {gid}: {reason}" for gid, reason in images["unreadable"].items()]
    lines.append(f"annotations ({annots['with_polygon']} with a polygon, {annots['with_keypoints']} with keypoints)")
    lines += format_table(["class", "id", "annotations", "images"],
                          [[name, row["id"], row["annotations"], row["images"]]
                           for name, row in annots["per_class"].items()])
    if annots["count"]:
        lines.append("box size (pixels)")
        lines += format_table([""] + [f"p{p}" for p in PERCENTILES],
                              [[key.split("_")[1], *annots[key].values()] for key in ("box_width", "box_height")])
    lines.append(f"cache {cache['root']}")
    lines += format_table(["backend", "images cached"],
                          [[name, f"{row['cached']} of {row['images']}"] for name, row in cache["backends"].items()])
    return "\n".join(lines)
