"""``--format chips``: ``images/<chip>.tif`` and ``labels/<chip>.tif`` with identical names.

Image chips keep the source dtype and bands; label chips are single-band
class maps (see :mod:`ndpatch.masks`). Both are DEFLATE-compressed GeoTIFFs
carrying the window's geotransform and CRS when the source has them: the
"Classified Tiles" layout that GIS and segmentation tools read.

Example:
    >>> ChipsWriter().name, ChipsWriter().sharded
    ('chips', False)
"""
from __future__ import annotations

from pathlib import Path

from ndpatch.export.base import Chip, NamingRule, write_geotiff

#: ``images/chip_000012.tif``: the image chips of the chips and kwcoco formats.
IMAGE_CHIPS = NamingRule("images", "chip_", ".tif")
#: ``labels/chip_000012.tif``: the label chips of the chips format.
LABEL_CHIPS = NamingRule("labels", "chip_", ".tif")


class ChipsWriter:
    """Image and label GeoTIFF pairs, one of each per chip."""

    name = "chips"
    sharded = False
    rules = (IMAGE_CHIPS, LABEL_CHIPS)
    needs = ()

    def write_block(self, out_dir: Path, block: int, chips: list[Chip]) -> list[dict]:
        records = []
        for chip in chips:
            image_file, label_file = IMAGE_CHIPS.name(chip.index), LABEL_CHIPS.name(chip.index)
            size = write_geotiff(out_dir / image_file, chip.im, chip.geotransform, chip.crs_wkt)
            size += write_geotiff(out_dir / label_file, chip.label, chip.geotransform, chip.crs_wkt)
            records.append({**chip.record(), "files": [image_file, label_file], "bytes": size})
        return records

    def finish(self, out_dir: Path, records, context: dict) -> None:
        """Nothing beyond the files every format writes (chips.csv, classes.json, summary.json)."""
