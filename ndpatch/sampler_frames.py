"""Whole images through a sampler: ndsampler 0.8.1's ``Frames`` API (``sampler.frames``).

:class:`SamplerFrames` answers ``load_image`` (an indexable reader whose
windows come through the sampler's backend, or the whole array),
``load_region`` (a NumPy-style region: negative indices count from the end)
and ``prepare`` (convert every image into the cache ahead of time).
:class:`ImageReader` reads only the window it is indexed with.

Example:
    >>> import ndpatch
    >>> frames = ndpatch.CocoSampler.demo("shapes8").frames
    >>> image = frames.load_image(1)
    >>> image.shape, image[:-20, :-10].shape, frames.load_region(1, (slice(-20), slice(-10))).shape
    ((600, 600, 3), (580, 590, 3), (580, 590, 3))
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def _channels(channels: Any) -> Any:
    """ndsampler's ``channels`` default (``ub.NoParam``) and ``'<all>'`` mean every channel."""
    return None if channels is None or type(channels).__name__ == "NoParamType" or channels == "<all>" else channels


class ImageReader:
    """One image as an indexable array: ``reader[rows, cols]`` reads that window only.

    Indices follow NumPy (negative ones count from the end, out-of-range ones
    are clipped); ``np.asarray(reader)`` reads the whole image.
    """

    def __init__(self, sampler, gid: int, channels: Any = None):
        self.sampler = sampler
        self.gid = gid
        self.channels = channels
        probe = sampler.load_sample({"gid": gid, "space_slice": (slice(0, 1), slice(0, 1)), "channels": channels},
                                    with_annots=False)
        self.shape = (*sampler._image_dims(gid), probe["im"].shape[2])
        self.dtype = probe["im"].dtype
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        if len(index) > 3:
            raise IndexError(f"image {self.gid}: too many indices ({len(index)}) for a 3-D image")
        spatial = []
        for axis, part in enumerate((index + (slice(None),) * 2)[:2]):
            length = self.shape[axis]
            if isinstance(part, (int, np.integer)):
                start = int(part) + length if part < 0 else int(part)
                if not 0 <= start < length:
                    raise IndexError(f"image {self.gid}: index {part} is out of bounds for axis {axis} of {length}")
                spatial.append(slice(start, start + 1))
            elif isinstance(part, slice) and part.step in (None, 1):
                start, stop, _ = part.indices(length)
                spatial.append(slice(start, max(stop, start)))
            else:
                raise IndexError(f"image {self.gid}: only integers and step-1 slices index an image, got {part!r}")
        if any(s.stop == s.start for s in spatial):
            im = np.empty((spatial[0].stop - spatial[0].start, spatial[1].stop - spatial[1].start, self.shape[2]),
                          self.dtype)
        else:
            im = self.sampler.load_sample({"gid": self.gid, "space_slice": tuple(spatial), "channels": self.channels},
                                          with_annots=False)["im"]
        squeeze = tuple(axis for axis, part in enumerate(index[:2]) if isinstance(part, (int, np.integer)))
        im = im[(slice(None), slice(None)) + index[2:]]
        return im.squeeze(squeeze) if squeeze else im

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        im = self[:, :]
        return im if dtype is None else im.astype(dtype)

    def __repr__(self) -> str:
        return f"ImageReader(gid={self.gid}, shape={self.shape}, dtype={self.dtype})"


class SamplerFrames:
    """ndsampler's ``Frames`` API over a :class:`~ndpatch.sampler.CocoSampler` (see the module doc)."""

    def __init__(self, sampler):
        self.sampler = sampler

    @property
    def image_ids(self) -> np.ndarray:
        return np.array(list(self.sampler.dset.imgs))

    @property
    def workdir(self):
        return self.sampler.workdir

    @property
    def _backend(self) -> dict:
        return self.sampler._backend

    @property
    def hashid(self) -> str:
        return self.sampler._depends()["frames_hashid"]

    @property
    def cache_dpath(self) -> str | None:
        """The folder of the backend's cache entries (None for direct reads)."""
        store = getattr(self.sampler.backend, "store", None)
        return None if store is None else str(store.entries_dir)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int):
        return self.load_image(int(self.image_ids[index]))

    def load_image(self, image_id: int, channels: Any = None, cache: bool = True, noreturn: bool = False):
        """Image ``image_id``: an :class:`ImageReader` (``cache=True``) or the whole array."""
        channels = _channels(channels)
        if noreturn:
            self._prepare_one(image_id)
            return None
        reader = ImageReader(self.sampler, image_id, channels)
        return reader if cache else np.asarray(reader)

    def load_region(self, image_id: int, region=None, channels: Any = None) -> np.ndarray:
        """A NumPy-style region (``(slice(-20), slice(-10))``: all but the last 20 rows and 10 columns)."""
        reader = ImageReader(self.sampler, image_id, _channels(channels))
        return reader[(slice(None), slice(None)) if region is None else tuple(region)]

    def _prepare_one(self, gid: int) -> None:
        record = self.sampler.records.get(gid)
        for asset in record.files or record.frame_files:
            record.entry_of(asset.source)

    def prepare(self, gids=None, workers: int = 0, use_stamp: bool = True) -> None:
        """Convert every image (or ``gids``) into the backend's cache, on ``workers`` threads.

        Nothing to do for direct reads. ``use_stamp`` is accepted for ndsampler's
        signature: ndpatch checks each entry against its source instead of a stamp.
        """
        if self.cache_dpath is None:
            return
        gids = list(self.image_ids if gids is None else gids)
        if workers and workers > 1:
            with ThreadPoolExecutor(int(workers)) as pool:
                list(pool.map(self._prepare_one, gids))
        else:
            for gid in gids:
                self._prepare_one(gid)

    def _build_pathinfo(self, image_id: int) -> dict:
        """What ndsampler's frames know of an image's files: per channel spec, its path and cache entry."""
        record = self.sampler.records.get(image_id)
        channels = {}
        for asset in record.files or record.frame_files:
            source = asset.source
            key = "|".join(source.channels) if source.channels else None
            entry = record.entry_of(source)
            channels[key] = {"path": source.path, "channels": key, "cache_type": self._backend["type"],
                             "cache": None if self.cache_dpath is None else entry.path}
        img = self.sampler.index.image(image_id)
        return {"id": image_id, "channels": channels, "default": img.get("channels"),
                "width": img.get("width"), "height": img.get("height")}

    _lookup_pathinfo = _build_pathinfo

    def __repr__(self) -> str:
        return f"SamplerFrames({len(self)} images, backend={self._backend['type']!r})"

