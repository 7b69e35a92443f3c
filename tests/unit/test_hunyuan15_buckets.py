"""HunyuanVideo 1.5's sizes are the official ones: the rule of ``Tencent-Hunyuan/HunyuanVideo-1.5``,
written out here from the official code's semantics and compared with framecast's.

Official: ``hyvideo/utils/data_utils.py`` ``generate_crop_size_list`` makes the buckets and
``get_closest_ratio`` picks one; ``hyvideo/pipelines/hunyuan_video_pipeline.py``
``get_closest_resolution_given_original_size`` calls them with ``bucket_hw_base_size`` 640
(480p) or 960 (720p) and stride 16, for the reference image's size (image-to-video) or the
``aspect_ratio`` "W:H" read as a W x H size (text-to-video).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from framecast.models import hunyuan15_i2v as model

STRIDE = 16
"""Official ``bucket_hw_bucket_stride``."""
BASES = {"480p": 640, "720p": 960}
"""Official ``target_size_config``: resolution -> ``bucket_hw_base_size``."""


def official_buckets(base: int) -> list[tuple[int, int]]:
    """``generate_crop_size_list(base, 16)``: (height, width) pairs, in the official order.

    Start from a 1-patch-wide strip of all (base/16)² patches; at each step add a patch to the
    second side if the area still fits, else take one off the first; keep each size whose
    sides are within 4x of each other.
    """
    patches = round((base / STRIDE) ** 2)
    first, second = patches, 1
    out = []
    while first > 0:
        if max(first, second) <= 4.0 * min(first, second):
            out.append((first * STRIDE, second * STRIDE))
        if first * (second + 1) <= patches:
            second += 1
        else:
            first -= 1
    return out


def official_size(base: int, width: int, height: int) -> tuple[int, int]:
    """``get_closest_ratio`` as the official pipeline calls it, as (width, height): each
    bucket's height/width rounded to 5 decimals, the input's not; the nearest in absolute
    difference on either side; ``argmin``, so the first bucket of a tie."""
    sizes = official_buckets(base)
    ratios = np.array([round(float(h) / float(w), 5) for h, w in sizes])
    best = int(np.abs(ratios - float(height) / float(width)).argmin())
    h, w = sizes[best]
    return w, h


def test_9_16_at_720p_is_720_wide_and_1280_high() -> None:
    assert official_size(960, 9, 16) == (720, 1280)  # the transcription, on the named case
    assert model.video_size("720p", "9:16") == (720, 1280)
    assert model.SIZES[("9:16", "720p")] == (720, 1280)
    assert model.image_video_size("720p", 1080, 1920) == (720, 1280)
    assert model.resolution_of(720, 1280) == "720p"


@pytest.mark.parametrize("resolution", model.RESOLUTIONS)
def test_the_buckets_are_the_official_ones(resolution: str) -> None:
    assert model.BUCKET_BASE[resolution] == BASES[resolution]
    assert list(model.buckets(BASES[resolution])) == official_buckets(BASES[resolution])


@pytest.mark.parametrize("resolution", model.RESOLUTIONS)
@pytest.mark.parametrize("aspect_ratio", model.ASPECT_RATIOS)
def test_each_aspect_ratio_option_gets_the_official_size(
    resolution: str, aspect_ratio: str
) -> None:
    width, height = (int(side) for side in aspect_ratio.split(":"))
    expected = official_size(BASES[resolution], width, height)
    assert model.video_size(resolution, aspect_ratio) == expected
    assert model.SIZES[(aspect_ratio, resolution)] == expected
    assert model.image_video_size(resolution, width, height) == expected
    assert model.resolution_of(*expected) == resolution


SIDES = [*range(100, 4001, 39), 720, 1080, 1280, 1920, 3840]


@pytest.mark.parametrize("resolution", model.RESOLUTIONS)
def test_any_image_gets_the_official_size(resolution: str) -> None:
    base = BASES[resolution]
    sizes = official_buckets(base)
    ratios = np.array([round(float(h) / float(w), 5) for h, w in sizes])
    images = list(itertools.product(SIDES, SIDES))
    aspects = np.array([float(h) / float(w) for w, h in images])
    # official_size for every image at once: the same float64 differences, argmin per image.
    nearest = np.abs(ratios[None, :] - aspects[:, None]).argmin(axis=1)
    expected = {image: sizes[i][::-1] for image, i in zip(images, nearest.tolist(), strict=True)}
    assert expected[(1080, 1920)] == official_size(base, 1080, 1920)
    got = {(w, h): model.image_video_size(resolution, w, h) for w, h in images}
    wrong = {
        image: (got[image], expected[image]) for image in images if got[image] != expected[image]
    }
    assert wrong == {}


@pytest.mark.parametrize("resolution", model.RESOLUTIONS)
def test_every_bucket_as_an_image_gets_itself(resolution: str) -> None:
    # The official rule is idempotent: an image cropped to a size keeps it.
    base = BASES[resolution]
    for h, w in official_buckets(base):
        assert official_size(base, w, h) == (w, h)
        assert model.image_video_size(resolution, w, h) == (w, h)
