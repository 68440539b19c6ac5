"""ndpatch: fast random-access training patches from large images, indexed by kwcoco.

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> sampler.load_sample({"gid": 1, "space_slice": (slice(0, 64), slice(0, 32))})["im"].shape
    (64, 32, 3)
"""
from ndpatch import gdalio  # noqa: F401  (applies GDAL settings first)
from ndpatch.errors import (CacheConversionError, ChannelError, CorruptCacheError, DatasetError,
                            NdpatchError, SourceReadError, TargetError, UnknownAnnotationError,
                            UnknownImageError, UnknownVideoError)
from ndpatch.errors import SamplingError
from ndpatch.errors import ExportError, OutputExistsError
from ndpatch.pairs import import_pairs
from ndpatch.regions import Regions, SamplingConfig
from ndpatch.sampler import CocoSampler
from ndpatch.splits import split_dataset
from ndpatch.stitch import Stitcher
from ndpatch.target import Target

__version__ = "0.1.0"

__all__ = [
    "CocoSampler", "Target",
    "NdpatchError", "UnknownImageError", "UnknownAnnotationError", "DatasetError", "TargetError",
    "ChannelError", "SourceReadError", "CorruptCacheError", "CacheConversionError",
    "Regions", "SamplingConfig", "Stitcher", "SamplingError",
    "UnknownVideoError",
    "import_pairs", "split_dataset", "ExportError", "OutputExistsError",  # export: ndpatch.export.export
]
