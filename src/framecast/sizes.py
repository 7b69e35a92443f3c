"""Video sizes: the resolution buckets of the official HunyuanVideo-I2V code.

The official I2V inference (``hyvideo/inference.py`` with ``hyvideo/utils/data_utils.py``)
does not scale 16:9 to 1280x720. Each resolution names a base size (720p: 960, 540p: 720,
360p: 480); the buckets are every grid-aligned size of about base² pixels, and the bucket whose
aspect is nearest the input's is the size the model runs at. 16:9 at 720p is 1248x704: a size
the model was trained at, and ~5% fewer tokens than 1280x720.

Every engine uses these sizes, so a result's size never depends on which engine made it.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache

BUCKET_BASE: dict[str, int] = {"720p": 960, "540p": 720, "360p": 480}
"""The official ``bucket_hw_base_size`` of each ``i2v_resolution``."""

BUCKET_GRID = 32
"""The official I2V code builds its buckets on a 32-pixel grid (``generate_crop_size_list(base, 32)``)."""

MAX_BUCKET_RATIO = 4.0


@cache
def buckets(base: int, grid: int = BUCKET_GRID) -> tuple[tuple[int, int], ...]:
    """The official crop-size list for ``base``, as (height, width) pairs, in its order.

    Walks the grid one cell at a time, from a strip of base² cells towards the other strip,
    growing the second side while the area stays within base² and otherwise shrinking the
    first, and keeps every size whose sides differ by at most 4x. The order matters: ties in
    :func:`closest_bucket` go to the earlier bucket, as officially.
    """
    cells = round((base / grid) ** 2)
    sizes: list[tuple[int, int]] = []
    first, second = cells, 1
    while first > 0:
        if max(first, second) / min(first, second) <= MAX_BUCKET_RATIO:
            # The official code reads the first coordinate as the height.
            sizes.append((first * grid, second * grid))
        if (second + 1) * first <= cells:
            second += 1
        else:
            first -= 1
    return tuple(sizes)


def closest_bucket(
    base: int,
    width: float,
    height: float,
    *,
    grid: int = BUCKET_GRID,
    landscape_exact: bool = False,
) -> tuple[int, int]:
    """The bucket the official code picks for an input of ``width`` x ``height``, as (width, height).

    Officially the ratio compared is height/width, each bucket's rounded to 5 decimals; a
    landscape input takes the nearest bucket that is taller than it, a square or portrait one
    the nearest that is no taller, so the crop never needs more than the image. HunyuanVideo
    1.5 (``landscape_exact``) also lets a landscape input take a bucket of exactly its ratio.
    """
    aspect = height / width
    candidates = []
    for index, (h, w) in enumerate(buckets(base, grid)):
        diff = round(h / w, 5) - aspect
        taller = diff >= 0 if landscape_exact else diff > 0
        if (diff <= 0) if aspect >= 1 else taller:
            candidates.append((abs(diff), index))
    _, best = min(candidates)
    h, w = buckets(base, grid)[best]
    return w, h


def aspect(aspect_ratio: str) -> tuple[int, int]:
    """``"16:9"`` -> (16, 9)."""
    ratio = Fraction(*(int(part) for part in aspect_ratio.split(":")))
    return ratio.numerator, ratio.denominator


def video_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) of a ``resolution`` ("720p") at ``aspect_ratio`` ("16:9")."""
    if resolution not in BUCKET_BASE:
        raise ValueError(f"resolution must be one of {', '.join(BUCKET_BASE)}, got {resolution!r}")
    return closest_bucket(BUCKET_BASE[resolution], *aspect(aspect_ratio))
