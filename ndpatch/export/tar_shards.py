"""``--format webdataset``: tar shards ``shard-000000.tar``, ... written with ``webdataset.TarWriter``.

Each shard holds at most ``shard_size`` samples (one export block). A sample
is ``<chip>.image.npy`` (H×W×C, source dtype), ``<chip>.label.npy`` (H×W class
map) and ``<chip>.json`` (``target``, ``annotations`` in chip pixels and the
provenance record). Read back as a torch ``IterableDataset`` with
``webdataset.WebDataset(urls).decode()`` (docs/export.md).

Example:
    >>> WebdatasetWriter().name, WebdatasetWriter().sharded
    ('webdataset', True)
"""
from __future__ import annotations

from pathlib import Path

from ndpatch.export.base import Chip, NamingRule, publish

#: ``shard-000012.tar``: one shard per block.
TAR_SHARDS = NamingRule("", "shard-", ".tar")


class WebdatasetWriter:
    """One webdataset tar shard per block."""

    name = "webdataset"
    sharded = True
    rules = (TAR_SHARDS,)
    needs = ("webdataset",)

    def write_block(self, out_dir: Path, block: int, chips: list[Chip]) -> list[dict]:
        import webdataset

        records = [chip.record() for chip in chips]
        shard = TAR_SHARDS.name(block)

        def write(tmp: str) -> None:
            with webdataset.TarWriter(tmp, mtime=0) as sink:
                for chip, record in zip(chips, records):
                    sink.write({"__key__": chip.name, "image.npy": chip.im, "label.npy": chip.label,
                                "json": {"target": {"gid": chip.gid,
                                                    "space_slice": [[chip.rows.start, chip.rows.stop],
                                                                    [chip.cols.start, chip.cols.stop]]},
                                         "annotations": chip.coco_annots, "provenance": record}})

        size = publish(out_dir / shard, write)
        return [{**record, "files": [shard], "bytes": size if i == 0 else 0}
                for i, record in enumerate(records)]

    def finish(self, out_dir: Path, records, context: dict) -> None:
        """Nothing beyond the files every format writes (chips.csv, classes.json, summary.json)."""
