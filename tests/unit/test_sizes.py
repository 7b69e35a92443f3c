"""The official HunyuanVideo-I2V size buckets (sizes.py) and their use by every engine."""

from __future__ import annotations

import pytest
from PIL import Image

from framecast.models.hunyuan_i2v import (
    BUCKET_BASE,
    SIZES,
    ImageToVideoInput,
    buckets,
    closest_bucket,
    video_size,
)


@pytest.mark.parametrize(
    ("resolution", "landscape"),
    # What the official code picks for a 16:9 image (engine-facts.md, read off hyvideo/).
    [("720p", (1248, 704)), ("540p", (928, 544)), ("360p", (608, 352))],
)
def test_16_9_and_9_16_are_the_official_buckets(
    resolution: str, landscape: tuple[int, int]
) -> None:
    assert video_size(resolution, "16:9") == landscape
    assert video_size(resolution, "9:16") == landscape[::-1]
    assert SIZES[("16:9", resolution)] == landscape


@pytest.mark.parametrize("base", sorted(BUCKET_BASE.values()))
def test_buckets_stay_on_the_grid_within_the_base_area(base: int) -> None:
    sizes = buckets(base)
    assert any(h == w for h, w in sizes)
    for h, w in sizes:
        assert h % 32 == 0 and w % 32 == 0  # hence whole transformer patches (16 px)
        assert h * w <= base * base
        assert max(h, w) / min(h, w) <= 4


def test_a_landscape_input_gets_a_slightly_taller_bucket_and_a_portrait_one_a_wider() -> None:
    # The official rule: the crop never needs more of the image than there is on the long side.
    w, h = closest_bucket(960, 1920, 1080)
    assert h / w > 1080 / 1920
    w, h = closest_bucket(960, 1080, 1920)
    assert h / w <= 1920 / 1080
    assert closest_bucket(960, 500, 500) == (960, 960)


def test_an_input_gets_the_size_of_its_aspect_ratio_and_resolution() -> None:
    inp = ImageToVideoInput(prompt="p", image_url="data:,", aspect_ratio="9:16", resolution="540p")
    request = inp.generation_request(Image.new("RGB", (10, 10)))
    assert (request.width, request.height) == (544, 928)


def test_unknown_resolution_is_refused() -> None:
    with pytest.raises(ValueError, match="720p"):
        video_size("1080p", "16:9")
