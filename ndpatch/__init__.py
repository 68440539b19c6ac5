"""ndpatch: fast random-access training patches from large images, indexed by kwcoco.

Example:
    >>> import ndpatch
    >>> sampler = ndpatch.CocoSampler.demo("shapes8")
    >>> sampler.load_sample({"gid": 1, "space_slice": (slice(0, 64), slice(0, 32))})["im"].shape
    (64, 32, 3)
"""
import logging

#: What ``import ndpatch`` says when GDAL's Python bindings are missing or were built without numpy.
GDAL_MISSING = (
    "ndpatch needs GDAL's Python bindings (osgeo.gdal and osgeo.gdal_array), built against the "
    "system GDAL after numpy. GDAL is a system prerequisite, not installed by pip install ndpatch: "
    "on Debian/Ubuntu run `apt-get install libgdal-dev gdal-bin`, then, in this environment, "
    "`pip install numpy` and "
    '`pip install --no-build-isolation "GDAL==$(gdal-config --version)"` (README, "pip install").')

try:
    from osgeo import gdal_array  # noqa: F401
except ImportError as err:
    raise ImportError(f"{GDAL_MISSING} ({err})") from err

logging.getLogger(__name__).addHandler(logging.NullHandler())  # silent unless the application configures logging

from ndpatch import gdalio  # noqa: E402,F401  (applies GDAL settings first)
from ndpatch.errors import (CacheConversionError, ChannelError, CorruptCacheError, DatasetError,
                            NdpatchError, SourceReadError, TargetError, UnknownAnnotationError,
                            UnknownImageError, UnknownVideoError)
from ndpatch.errors import SamplingError
from ndpatch.errors import ExportError, OutputExistsError
from ndpatch.errors import DatasetWarning, NdpatchWarning
from ndpatch.pairs import import_pairs
from ndpatch.sampling import RandomWindows, Regions, SamplingConfig
from ndpatch.sampler import CocoSampler
from ndpatch.splits import split_dataset
from ndpatch.stitch import Stitcher
from ndpatch.target import Target
from ndpatch.version import __version__


__all__ = [
    "CocoSampler", "Target",
    "NdpatchError", "UnknownImageError", "UnknownAnnotationError", "DatasetError", "TargetError",
    "ChannelError", "SourceReadError", "CorruptCacheError", "CacheConversionError",
    "Regions", "SamplingConfig", "Stitcher", "SamplingError",
    "UnknownVideoError",
    "RandomWindows", "NdpatchWarning", "DatasetWarning",
    "import_pairs", "split_dataset", "ExportError", "OutputExistsError",  # export: ndpatch.export.export
]
