"""Training sets out: export a dataset's windows as chips, kwcoco, webdataset or TFRecord shards.

Example:
    >>> sorted(WRITERS)
    ['chips', 'kwcoco', 'tfrecord', 'webdataset']
"""
from ndpatch.export.base import Chip, Writer
from ndpatch.export.plan import Plan, make_plan, parse_window
from ndpatch.export.job import WRITERS
from ndpatch.export.runner import export, format_summary
from ndpatch.export.tfrecord_shards import FEATURES as TFRECORD_FEATURES

__all__ = ["export", "format_summary", "WRITERS", "Chip", "Writer", "Plan", "make_plan", "parse_window",
           "TFRECORD_FEATURES"]
