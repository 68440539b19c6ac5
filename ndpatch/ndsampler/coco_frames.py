"""ndsampler's ``coco_frames`` module: ``CocoFrames``, the whole images of a kwcoco dataset.

Example:
    >>> from ndpatch.demo import kwcoco_demo
    >>> frames = CocoFrames(kwcoco_demo("shapes2"), backend=None)
    >>> frames.load_image(1)[:-20, :-10].shape
    (580, 590, 3)
"""
from __future__ import annotations

from ndpatch.sampler import CocoSampler
from ndpatch.sampler_frames import SamplerFrames


class CocoFrames(SamplerFrames):
    """``sampler.frames`` of a sampler over ``dset`` (``hashid_mode`` and ``verbose`` are ndsampler's, unused)."""

    def __init__(self, dset, hashid_mode: str = "PATH", workdir=None, verbose: int = 0, backend="auto"):
        super().__init__(CocoSampler(dset, workdir=workdir, backend=backend))
        self.dset = dset


__all__ = ["CocoFrames"]
