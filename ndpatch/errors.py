"""The exceptions ndpatch raises.

Every error derives from :class:`NdpatchError` and also from the builtin it
resembles, so ``except KeyError`` or ``except OSError`` keeps working in code
written for other samplers.

Example:
    >>> from ndpatch.errors import UnknownImageError, NdpatchError
    >>> err = UnknownImageError("unknown image id 99")
    >>> isinstance(err, KeyError) and isinstance(err, NdpatchError)
    True
    >>> str(err)
    'unknown image id 99'
"""


#: Functions every ndpatch error message passes through when printed (ndpatch.remote adds one
#: that blanks credential values, so no secret GDAL used ever shows in an error's text).
MESSAGE_FILTERS: list = []


class NdpatchError(Exception):
    """Root of every ndpatch error."""

    def __str__(self) -> str:
        text = super().__str__()
        for message_filter in MESSAGE_FILTERS:
            text = message_filter(text)
        return text


class _PlainKeyError(KeyError):
    """A KeyError whose message prints as written (KeyError quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownImageError(NdpatchError, _PlainKeyError):
    """An image id (gid) that the dataset does not have."""


class UnknownAnnotationError(NdpatchError, _PlainKeyError):
    """An annotation id (aid) that the dataset does not have."""


class UnknownVideoError(NdpatchError, _PlainKeyError):
    """A video id (vidid) that the dataset does not have."""


class DatasetError(NdpatchError, ValueError):
    """A dataset that cannot be loaded: missing, malformed json, bad records."""


class TargetError(NdpatchError, ValueError):
    """A target that asks for something impossible (bad size, bad keys)."""


class ChannelError(TargetError):
    """A requested channel (name or band index) that the image does not have."""


class SourceReadError(NdpatchError, OSError):
    """A source raster that is missing, unreadable or corrupt."""


class CorruptCacheError(NdpatchError, OSError):
    """A cache entry that fails validation (truncated file, bad sidecar)."""


class CacheConversionError(NdpatchError, OSError):
    """Converting a source into its cache form failed."""


class DiskFullError(NdpatchError, OSError):
    """Not enough free space to write a file; the message gives the bytes needed and available."""


class SamplingError(NdpatchError, LookupError):
    """A sampling strategy with nothing to draw (no room for a negative, no preselected pool)."""


class MissingNegativePool(SamplingError, AssertionError):
    """A negative asked for by index when no negatives were preselected (ndsampler's name; an AssertionError)."""


class ExportError(NdpatchError, ValueError):
    """An export, split or import that cannot be done as asked (unknown format, bad fractions)."""


class OutputExistsError(NdpatchError, FileExistsError):
    """An output that already exists and was not meant to be resumed or overwritten."""


class ExportInProgressError(OutputExistsError):
    """An export folder that another running export holds (its lock names the process)."""



class NdpatchWarning(UserWarning):
    """Root of every warning ndpatch gives (``warnings.filterwarnings`` can select them all)."""


class DatasetWarning(NdpatchWarning):
    """A dataset record ndpatch reads differently from what it says (named in the message)."""
