"""Space-time samples: frames of a video (or a list of images) warped into one pixel grid.

A target that names frames (``vidid``, ``vidid`` + ``time_slice``, or ``gids``)
reads a T×H×W×C window in video pixels (:mod:`~ndpatch.video.targets`); each
frame's files are mapped to video pixels and read exactly, by GDAL resampling or
by an affine warp (:mod:`~ndpatch.video.warping`); each frame's annotations come
in the window's frame (:mod:`~ndpatch.video.detections`); samples and batches
are put together in :mod:`~ndpatch.video.samples`. Space-time *sampling*
(:class:`VideoRegions`: grids, track-centred positives, negatives) lives in
:mod:`ndpatch.sampling.video` and is re-exported here.

Example:
    >>> import ndpatch
    >>> from ndpatch.demo import kwcoco_demo
    >>> sampler = ndpatch.CocoSampler(kwcoco_demo("vidshapes1-frames3", image_size=(64, 64)))
    >>> sample = sampler.load_sample({"vidid": 1, "time_slice": slice(1, 3),
    ...                               "space_slice": (slice(8, 40), slice(-4, 20))})
    >>> sample["im"].shape
    (2, 32, 24, 3)
    >>> sample["params"]["gids"], len(sample["annots"]["frame_dets"])
    ([2, 3], 2)
"""
from ndpatch.sampling.video import VideoRegions
from ndpatch.sampling.video_table import VideoInfo, VideoTable, build_video_table
from ndpatch.video.detections import frame_detections
from ndpatch.video.frames import Frame, FrameAsset, VideoFrames, video_frames
from ndpatch.video.samples import (VideoLayout, load_video_batch, load_video_sample, read_video_pixels,
                                   video_layout)
from ndpatch.video.targets import INTERPOLATIONS, VideoTarget, is_video_target, parse_video_target
from ndpatch.video.warping import warped_window

__all__ = ["INTERPOLATIONS", "Frame", "FrameAsset", "VideoFrames", "VideoInfo", "VideoLayout", "VideoRegions",
           "VideoTable", "VideoTarget", "build_video_table", "frame_detections", "is_video_target",
           "load_video_batch", "load_video_sample", "parse_video_target", "read_video_pixels", "video_frames",
           "video_layout", "warped_window"]
