"""Video size arithmetic: the resolution buckets of the official HunyuanVideo code.

The official inference code does not scale 16:9 to 1280x720. Each resolution names a base
size; the buckets are every grid-aligned size of about base² pixels, and the bucket whose
aspect is nearest the input's is the size the model runs at. Which bases, which grid and
whether the nearest may lie on either side of the input's aspect are each model's own
(:class:`Buckets`, declared in the model's module); this module holds only the arithmetic, so
a result's size never depends on which engine made it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

MAX_BUCKET_RATIO = 4.0
"""The official crop-size lists keep only sizes whose sides differ by at most this factor."""


@cache
def buckets(base: int, grid: int) -> tuple[tuple[int, int], ...]:
    """The official crop-size list for ``base`` on ``grid``, as (height, width) pairs, in its order.

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
    grid: int,
    nearest: bool = False,
) -> tuple[int, int]:
    """The bucket the official code picks for an input of ``width`` x ``height``, as (width, height).

    Officially the ratio compared is height/width, the input's as it is and each bucket's
    rounded to 5 decimals, and a tie goes to the earlier bucket. Which buckets may be picked is
    the model's: HunyuanVideo-I2V takes, for a landscape input, the nearest bucket that is
    taller than it, for a square or portrait one the nearest that is no taller, so the crop
    never needs more than the image; HunyuanVideo 1.5 (``nearest``) takes the nearest on
    either side.
    """
    aspect = float(height) / float(width)
    candidates = []
    for index, (h, w) in enumerate(buckets(base, grid)):
        diff = round(h / w, 5) - aspect
        if nearest or ((diff <= 0) if aspect >= 1 else (diff > 0)):
            candidates.append((abs(diff), index))
    _, best = min(candidates)
    h, w = buckets(base, grid)[best]
    return w, h


def aspect(aspect_ratio: str) -> tuple[int, int]:
    """``"16:9"`` -> (16, 9)."""
    try:
        ratio = Fraction(*(int(part) for part in aspect_ratio.split(":")))
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"aspect_ratio must be W:H (e.g. 16:9), got {aspect_ratio!r}") from None
    return ratio.numerator, ratio.denominator


@dataclass(frozen=True)
class Buckets:
    """One model's size rule: the official base size of each resolution, the grid, and
    whether the nearest bucket on either side of the input's ratio is taken (1.5) or only one
    on the side that keeps the crop within the image (I2V)."""

    base: Mapping[str, int]
    """resolution ("720p") -> the official ``bucket_hw_base_size``."""
    grid: int
    nearest: bool = False

    def buckets(self, base: int) -> tuple[tuple[int, int], ...]:
        """The official crop-size list for ``base`` on this grid, as (height, width) pairs."""
        return buckets(base, self.grid)

    def closest_bucket(self, base: int, width: float, height: float) -> tuple[int, int]:
        """The bucket this model's official code picks for ``width`` x ``height``, as
        (width, height)."""
        return closest_bucket(base, width, height, grid=self.grid, nearest=self.nearest)

    def base_of(self, resolution: str) -> int:
        if resolution not in self.base:
            raise ValueError(
                f"resolution must be one of {', '.join(self.base)}, got {resolution!r}"
            )
        return self.base[resolution]

    def video_size(self, resolution: str, aspect_ratio: str) -> tuple[int, int]:
        """(width, height) of a video at ``resolution`` ("720p") and ``aspect_ratio`` ("16:9"):
        what the official code makes of an input of that aspect ratio."""
        base = self.base_of(resolution)
        return self.closest_bucket(base, *aspect(aspect_ratio))

    def image_video_size(self, resolution: str, width: int, height: int) -> tuple[int, int]:
        """(width, height) the official code gives a ``width`` x ``height`` image: the bucket
        nearest the image's own aspect."""
        return self.closest_bucket(self.base_of(resolution), width, height)

    def resolution_of(self, width: int, height: int) -> str | None:
        """The resolution whose buckets include ``width`` x ``height``, or None."""
        for resolution, base in self.base.items():
            if (height, width) in self.buckets(base):
                return resolution
        return None

    def table(self, aspect_ratios: Iterable[str]) -> dict[tuple[str, str], tuple[int, int]]:
        """(aspect_ratio, resolution) -> (width, height) for every pair, aspect ratios first."""
        return {(a, r): self.video_size(r, a) for a in aspect_ratios for r in self.base}
