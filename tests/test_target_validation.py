"""Bad targets get a clear TargetError naming the image (issue 14 §5), before anything is read or allocated."""
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ndpatch
import ndpatch.target
from ndpatch.demo import kwcoco_demo
from ndpatch.errors import NdpatchError, TargetError


@pytest.fixture(scope="module")
def sampler():
    return ndpatch.CocoSampler(kwcoco_demo("shapes2"))


@pytest.fixture(scope="module")
def video_sampler():
    return ndpatch.CocoSampler(kwcoco_demo("vidshapes1", num_frames=3, image_size=(32, 32)))


WINDOW = {"gid": 1, "cx": 5, "cy": 5, "width": 4, "height": 4}

BAD = [
    ({"cx": math.nan}, "cx must be a finite number, got nan"),
    ({"cy": math.inf}, "cy must be a finite number, got inf"),
    ({"width": -math.inf}, "width must be a finite number, got -inf"),
    ({"cx": "5"}, "cx must be a number, got '5'"),
    ({"height": True}, "height must be a number, got True"),
    ({"space_slice": (slice(0, math.nan), slice(0, 4))}, "space_slice rows stop must be a finite number, got nan"),
    ({"space_slice": (slice("a", 4), slice(0, 4))}, "space_slice rows start must be a number, got 'a'"),
    ({"space_slice": (slice(0, 4),) * 3}, "space_slice must be (row slice, col slice)"),
    ({"space_slice": "0:4, 0:4"}, "space_slice must be (row slice, col slice), got '0:4, 0:4'"),
    ({"space_slice": (slice(4, 4), slice(0, 4))}, "space_slice rows is empty"),
    ({"dtype": "foo"}, "dtype 'foo' is not a numpy dtype"),
    ({"dtype": object}, "dtype object is not served"),
    ({"dtype": "U4"}, "dtype <U4 is not served"),
    ({"dtype": "float16"}, "dtype float16 is not served"),
    ({"dtype": "uint8", "fill": 300}, "fill 300 is not a uint8 value"),
    ({"dtype": "int16", "fill": -40000}, "fill -40000 is not a int16 value"),
    ({"dtype": "uint16", "fill": 1.5}, "fill 1.5 is not a uint16 value"),
    ({"dtype": "float32", "fill": 1e300}, "fill 1e+300 is not a float32 value"),
    ({"fill": "zero"}, "nodata must be a number, 'float', 'auto' or 'nan', got 'zero'"),
    ({"fill": [0]}, "fill must be a number"),
    ({"pad": "3"}, "pad must be a number, got '3'"),
    ({"pad": -1}, "pad must be non-negative"),
    ({"scale": math.nan}, "scale must be a finite number, got nan"),
    ({"scale": 0}, "scale must be positive, got 0"),
    ({"channels": []}, "channels [] names no channel"),
    ({"channels": ""}, "channels '' names no channel"),
    ({"channels": " | "}, "names no channel"),
    ({"channels": [True]}, "channels must be names or band indices, got True in [True]"),
    ({"channels": [-1]}, "band index -1 is negative"),
    ({"channels": [1.5]}, "channels must be names or band indices, got 1.5"),
    ({"interpolation": 3}, "interpolation must be a name"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[repr(c) for c, _ in BAD])
def test_bad_target_names_the_image(sampler, change, message):
    path = sampler.dset.get_image_fpath(1)
    with pytest.raises(TargetError) as info:
        sampler.load_sample({**WINDOW, **change})
    text = str(info.value)
    assert text.startswith(f"image 1 ({path}")
    assert message in text


@pytest.mark.parametrize("target", [None, [1, 2], "gid=1", 3])
def test_a_target_must_be_a_dict(sampler, target):
    with pytest.raises(TargetError, match=f"a target must be a dict, got {type(target).__name__}"):
        sampler.load_sample(target)


@pytest.mark.parametrize("change", [{"width": 1e6, "height": 1e6}, {"pad": 10**6}, {"scale": 1e5},
                                    {"space_slice": (slice(0, 2**20), slice(0, 2**20))}])
def test_huge_windows_are_refused_before_allocating(sampler, change):
    with pytest.raises(TargetError, match=r"pixels is larger than the 1073741824 allowed \(NDPATCH_MAX_WINDOW_PIXELS\)"):
        sampler.load_sample({**WINDOW, **change})


def test_window_cap_is_configurable(sampler, monkeypatch):
    monkeypatch.setattr(ndpatch.target, "MAX_WINDOW_PIXELS", 100)
    assert sampler.load_sample({**WINDOW, "width": 10, "height": 10})["im"].shape == (10, 10, 3)
    with pytest.raises(TargetError, match=re.escape("a window of 10 x 11 pixels is larger than the 100 allowed")):
        sampler.load_sample({**WINDOW, "width": 11, "height": 10})


def test_the_cap_counts_video_frames(video_sampler, monkeypatch):
    monkeypatch.setattr(ndpatch.target, "MAX_WINDOW_PIXELS", 3 * 16 * 16 - 1)
    with pytest.raises(TargetError, match="video 1 .*a window of 3 x 16 x 16 pixels is larger"):
        video_sampler.load_sample({"vidid": 1, "space_slice": (slice(0, 16), slice(0, 16))})


@pytest.mark.parametrize("change,message", [({"cx": math.nan}, "cx must be a finite number"),
                                            ({"channels": []}, "channels [] names no channel"),
                                            ({"dtype": "float16"}, "dtype float16 is not served"),
                                            ({"dtype": "uint8", "fill": 256}, "fill 256 is not a uint8 value")])
def test_bad_video_targets_name_the_video(video_sampler, change, message):
    path = video_sampler.dset.get_image_fpath(1)
    with pytest.raises(TargetError) as info:
        video_sampler.load_sample({"vidid": 1, "cx": 8, "cy": 8, "width": 8, "height": 8, **change})
    assert str(info.value).startswith(f"video 1 (image 1 ({path}")
    assert message in str(info.value)


def test_load_batch_names_the_bad_target(sampler, video_sampler):
    with pytest.raises(TargetError, match=r"^target 2 of the batch \(.*\): image 1 \(.*\): cx must be a finite number"):
        sampler.load_batch([WINDOW, WINDOW, {**WINDOW, "cx": math.nan}])
    with pytest.raises(TargetError, match=r"^target 1 of the batch \(None\): a target must be a dict"):
        sampler.load_batch([WINDOW, None])
    good = {"vidid": 1, "cx": 8, "cy": 8, "width": 8, "height": 8}
    with pytest.raises(TargetError, match=r"^target 1 of the batch \(.*\): video 1 .*dtype float16 is not served"):
        video_sampler.load_batch([good, {**good, "dtype": "float16"}])


def test_unknown_ids_keep_their_error_type(sampler):
    with pytest.raises(KeyError) as info:
        sampler.load_batch([WINDOW, {**WINDOW, "gid": 99}])
    assert isinstance(info.value, NdpatchError) and "target 1 of the batch" in str(info.value)


def test_good_values_of_every_form_still_parse(sampler):
    target = {**WINDOW, "cx": np.float32(5), "width": np.int64(4), "pad": (np.int32(1), 2),
              "dtype": np.dtype("float32"), "fill": np.nan, "channels": [0, np.int64(2)]}
    assert sampler.load_sample(target)["im"].shape == (6, 8, 2)


ODD_BOUNDS = st.one_of(st.none(), st.integers(-5, 5).map(np.int32), st.booleans(), st.sampled_from([2.0, 2.5, math.nan, "2"]))


@st.composite
def window_forms(draw):
    """Half plain-int windows without a step (empty and reversed ones too), half with odd bounds or steps mixed in."""
    bounds = draw(st.lists(st.integers(-5, 5), min_size=4, max_size=4))
    steps = [None, None]
    if draw(st.booleans()):
        bounds = [draw(st.one_of(st.just(b), ODD_BOUNDS)) for b in bounds]
        steps = draw(st.lists(st.sampled_from([None, 1, 2]), min_size=2, max_size=2))
    return slice(bounds[0], bounds[1], steps[0]), slice(bounds[2], bounds[3], steps[1])


@given(window=window_forms())
def test_plain_int_windows_take_the_same_rule_as_every_other_form(window):
    """A tuple of int slices is accepted without the per-bound parse; it must agree with that parse (a list)."""
    def parsed(value):
        try:
            return ndpatch.target.window_slices(value, lambda: (7, 9))
        except ndpatch.target.InvalidTarget as err:
            return str(err)
    assert parsed(window) == parsed(list(window))
