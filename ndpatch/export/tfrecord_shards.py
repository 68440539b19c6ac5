"""``--format tfrecord``: sharded TFRecord files written without TensorFlow (the ``tfrecord`` package).

Feature schema of one record (one chip):

=============  ======  ==================================================
feature        type    value
=============  ======  ==================================================
chip           byte    chip name
image          byte    raw pixels, C order, H×W×C
image_shape    int     [H, W, C]
image_dtype    byte    numpy dtype name (``uint8``, ``float32`` ...)
label          byte    raw class map, C order, H×W
label_dtype    byte    numpy dtype name of the class map
boxes          float   N×4 flattened ``x, y, w, h`` in chip pixels
class_ids      int     N category ids
aids           int     N source annotation ids
image_id       int     source image id
file_name      byte    source image file name
window         int     [row_start, row_stop, col_start, col_stop] in the source
=============  ======  ==================================================

:data:`FEATURES` is the description to pass to ``tfrecord.reader.tfrecord_loader``.

Example:
    >>> TfrecordWriter().name, sorted(FEATURES)[:3]
    ('tfrecord', ['aids', 'boxes', 'chip'])
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ndpatch.export.base import Chip, NamingRule, publish

#: ``shard-000012.tfrecord``: one shard per block.
TFRECORD_SHARDS = NamingRule("", "shard-", ".tfrecord")

#: Feature name → tfrecord type, for reading shards back.
FEATURES = {"chip": "byte", "image": "byte", "image_shape": "int", "image_dtype": "byte",
            "label": "byte", "label_dtype": "byte", "boxes": "float", "class_ids": "int",
            "aids": "int", "image_id": "int", "file_name": "byte", "window": "int"}


def chip_features(chip: Chip) -> dict:
    """One chip as a ``{name: (value, type)}`` datum for ``TFRecordWriter.write``."""
    boxes = np.asarray(chip.annots["rel_boxes"].to_xywh().data, dtype=np.float32).reshape(-1)
    values = {
        "chip": chip.name.encode(), "image": np.ascontiguousarray(chip.im).tobytes(),
        "image_shape": list(chip.im.shape), "image_dtype": chip.im.dtype.name.encode(),
        "label": np.ascontiguousarray(chip.label).tobytes(), "label_dtype": chip.label.dtype.name.encode(),
        "boxes": boxes.tolist(), "class_ids": [int(c) for c in chip.annots["cids"]],
        "aids": [int(a) for a in chip.annots["aids"]], "image_id": int(chip.gid),
        "file_name": chip.file_name.encode(),
        "window": [chip.rows.start, chip.rows.stop, chip.cols.start, chip.cols.stop],
    }
    return {name: (value, FEATURES[name]) for name, value in values.items()}


class TfrecordWriter:
    """One TFRecord shard per block."""

    name = "tfrecord"
    sharded = True
    rules = (TFRECORD_SHARDS,)
    needs = ("tfrecord",)

    def write_block(self, out_dir: Path, block: int, chips: list[Chip]) -> list[dict]:
        from tfrecord.writer import TFRecordWriter

        shard = TFRECORD_SHARDS.name(block)

        def write(tmp: str) -> None:
            writer = TFRecordWriter(tmp)
            for chip in chips:
                writer.write(chip_features(chip))
            writer.close()

        size = publish(out_dir / shard, write)
        return [{**chip.record(), "files": [shard], "bytes": size if i == 0 else 0}
                for i, chip in enumerate(chips)]

    def finish(self, out_dir: Path, records, context: dict) -> None:
        """Nothing beyond the files every format writes (chips.csv, classes.json, summary.json)."""
