"""Block manifests: what each finished block was made from and what it wrote, so that a resume is exact.

A block's part file (``.ndpatch-export/parts/000012.json``) is its manifest::

    {"ndpatch_export_part": 2, "block": 12,
     "settings": "<digest of the export settings and the label dtype>",
     "windows": [[gid, row_start, col_start], ...],          # its rows of the plan
     "images": {"<gid>": {"record": "<digest of the image record and the annotations used>",
                          "files": [["/abs/b04.tif", [dev, inode, size, mtime_ns, ctime_ns]], ...]}},
     "files": [{"name": "images/chip_000192.tif", "size": 5120, "mtime_ns": ..., "sha256": "..."}, ...],
     "records": [<one provenance record per chip, as chips.csv lists them>]}

The file identities (:func:`ndpatch.gdalio.file_identity`) are taken before the
block reads its pixels, and change whenever a source is rewritten or replaced,
even with its size and mtime kept (``cp -p``). On resume a block is kept only
when :func:`block_problem` finds nothing: same settings, same windows in the
plan of the current inputs, same image records, annotations and source files,
and every file it wrote still there with its size and (when its mtime moved)
its checksum.

Example:
    >>> digest({"a": 1}) == digest({"a": 1}), digest({"a": 1}) == digest({"a": 2})
    (True, False)
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from ndpatch.errors import SourceReadError
from ndpatch.gdalio import file_identity
from ndpatch.index import resolve_path

#: Version of the part-file layout above (1: the bare list of records of ndpatch <= 0.1).
PART_FORMAT = 2


def digest(value: Any) -> str:
    """A sha256 of a JSON-able value (keys sorted), 32 hex digits."""
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def image_files(dset, gid: int) -> list[str]:
    """Every file image ``gid``'s record names (``file_name`` and each asset), resolved as ndpatch reads them."""
    image = dset.imgs[gid]
    names = [image["file_name"]] if image.get("file_name") else []
    names += [asset["file_name"] for asset in (image.get("assets") or image.get("auxiliary") or ())
              if asset.get("file_name")]
    return [resolve_path(str(dset.bundle_dpath), name) for name in dict.fromkeys(names)]


def image_inputs(dset, gid: int) -> dict:
    """What a block's chips of image ``gid`` are made from: its record and annotations, and its files' identities."""
    annotations = [dset.anns[aid] for aid in sorted(dset.index.gid_to_aids.get(gid, ()))]
    files = []
    for path in image_files(dset, gid):
        try:
            identity = list(file_identity(path))
        except SourceReadError:
            identity = None  # missing: the block is redone, and its read reports the file
        files.append([path, identity])
    return {"record": digest({"image": dset.imgs[gid], "annotations": annotations}), "files": files}


def file_entry(root: Path, name: str) -> dict:
    """What a block wrote as ``name``: size, mtime and sha256 of its bytes."""
    path = root / name
    stat = os.stat(path)
    return {"name": name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _file_problem(root: Path, entry: dict) -> str | None:
    path = root / entry["name"]
    try:
        stat = os.stat(path)
    except OSError:
        return f"{entry['name']} is missing"
    if stat.st_size != entry["size"]:
        return f"{entry['name']} has {stat.st_size} bytes, the block wrote {entry['size']}"
    if stat.st_mtime_ns != entry["mtime_ns"] and _sha256(path) != entry["sha256"]:
        return f"{entry['name']} was changed after the block wrote it"
    return None


def block_problem(part: dict | None, expected: dict, inputs: Callable[[int], dict], root: Path) -> str | None:
    """Why a finished block cannot be kept as it is (None: it can).

    ``expected`` has this run's ``settings`` digest, the block's ``windows``
    and the ``files`` names the writer gives them; ``inputs(gid)`` is
    :func:`image_inputs` of an image now.
    """
    if part is None or part.get("ndpatch_export_part") != PART_FORMAT:
        return "its part file is unreadable or from an older ndpatch"
    try:
        return _part_problem(part, expected, inputs, root)
    except (TypeError, ValueError, KeyError, AttributeError):
        return "its part file is malformed"


def _part_problem(part: dict, expected: dict, inputs: Callable[[int], dict], root: Path) -> str | None:
    if part["settings"] != expected["settings"]:
        return "it was written with other settings or another label dtype"
    if part["windows"] != expected["windows"]:
        return "its windows differ in the plan of the current inputs"
    images = part["images"]
    if sorted(images) != sorted(str(gid) for gid in {row[0] for row in expected["windows"]}):
        return "its manifest lists other images"
    for gid, recorded in sorted(images.items()):
        now = inputs(int(gid))
        if recorded["record"] != now["record"]:
            return f"the record or annotations of image {gid} changed"
        before = {path: identity for path, identity in recorded["files"]}
        changed = [path for path, identity in now["files"] if identity is None or before.get(path) != identity]
        if changed or len(before) != len(now["files"]):
            return f"image {gid}: {', '.join(changed) or 'its files'} changed or went missing"
    if [entry["name"] for entry in part["files"]] != expected["files"]:
        return "its manifest lists other files than the block writes"
    for entry in part["files"]:
        problem = _file_problem(root, entry)
        if problem is not None:
            return problem
    return None
