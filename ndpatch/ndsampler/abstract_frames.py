"""ndsampler's ``abstract_frames`` module: ``Frames`` (whole images through a sampler) and ``SimpleFrames``.

``Frames`` is :class:`ndpatch.sampler_frames.SamplerFrames`; ``SimpleFrames``
serves a plain ``{image id: path}`` mapping through a sampler of its own;
``AlignableImageData`` reads one image's files as ``delayed_image`` crops.

Example:
    >>> from ndpatch.demo import kwcoco_demo
    >>> dset = kwcoco_demo("shapes2")
    >>> frames = SimpleFrames({gid: dset.get_image_fpath(gid) for gid in dset.imgs})
    >>> frames.load_image(1).shape, frames.load_region(1, (slice(-20), slice(-10))).shape
    ((600, 600, 3), (580, 590, 3))
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ndpatch.sampler import CocoSampler
from ndpatch.sampler_frames import SamplerFrames as Frames


class SimpleFrames(Frames):
    """Whole images of a ``{image id: path}`` mapping (one file per image), read through ``backend``."""

    def __init__(self, id_to_path: dict, workdir=None, backend=None):
        import kwcoco
        self.id_to_path = dict(id_to_path)
        dset = kwcoco.CocoDataset({"images": [{"id": gid, "file_name": str(path)} for gid, path in
                                              self.id_to_path.items()], "annotations": [], "categories": []})
        super().__init__(CocoSampler(dset, workdir=workdir, backend=backend))

    @classmethod
    def demo(cls, **kwargs) -> "SimpleFrames":
        """The frames of kwcoco's default toy images (three photos)."""
        from ndpatch.demo import kwcoco_demo
        dset = kwcoco_demo("photos")
        return cls({gid: dset.get_image_fpath(gid) for gid in dset.imgs}, **kwargs)


class AlignableImageData:
    """One image's files (a frames ``pathinfo``) as ``delayed_image`` crops on the image's pixel grid."""

    def __init__(self, pathinfo: dict, cache_backend: Any = None):
        self.pathinfo = pathinfo
        self.cache_backend = cache_backend

    def _load_prefused_region(self, img_region, channels: Any = None) -> dict:
        """``{'subregions': [{'im': delayed crop, 'channels': spec}, ...]}``, one per file."""
        import delayed_image
        keys = list(self.pathinfo["channels"]) if channels in (None, "<all>") else [channels]
        subregions = []
        for key in keys:
            im = delayed_image.DelayedLoad(self.pathinfo["channels"][key]["path"]).prepare()
            if img_region is not None:
                im = im.crop(tuple(img_region))
            subregions.append({"im": im.optimize(), "channels": key})
        return {"subregions": subregions}

    def _load_fused_region(self, img_region, channels: Any = None) -> np.ndarray:
        parts = [np.atleast_3d(part["im"].finalize())
                 for part in self._load_prefused_region(img_region, channels)["subregions"]]
        return np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]

    def load_region(self, img_region, channels: Any = None, fused: bool = True):
        """The region of every file, fused into one H×W×C array (or the crops, ``fused=False``)."""
        if fused:
            return self._load_fused_region(img_region, channels)
        return self._load_prefused_region(img_region, channels)

    def __getitem__(self, img_region) -> np.ndarray:
        return self._load_fused_region(img_region)


__all__ = ["AlignableImageData", "Frames", "SimpleFrames"]
