"""HunyuanVideo 1.5 video sizes, frame counts and frame rate, as the official code has them.

The official 1.5 code (``hyvideo/pipelines/hunyuan_video_pipeline.py``, whose bucket functions
diffusers' ``HunyuanVideo15ImageProcessor`` copies) names a base size per resolution (480p: 640,
720p: 960). The buckets are the sizes on a 16-pixel grid of about base² pixels, and a video takes
the bucket whose height/width is nearest its input's: the reference image's for image-to-video,
the ``aspect_ratio`` option's for text-to-video. 16:9 at 480p is 848x480.

Two things differ from HunyuanVideo-I2V's rule (:mod:`framecast.sizes`): the grid is 16 pixels,
not 32, and a landscape input may take a bucket of exactly its own ratio (``>= 0`` where the I2V
code has ``> 0``), so 16:9 at 720p is 1280x720 here.

The rule is not idempotent: four of the ten sizes below, cropped out of an image and fed back
through it, come out one grid step smaller (a 480x848 image gives 480x832). So an engine must
pin the size it was asked for rather than let the pipeline recompute it from a cropped image.

No torch here: model declarations and the preview engine read these without it.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

from framecast import sizes as _i2v_sizes

BUCKET_BASE: Final[dict[str, int]] = {"480p": 640, "720p": 960}
"""The official ``bucket_hw_base_size`` of each resolution the 1.5 checkpoints are trained at."""

RESOLUTION_OF_TARGET_SIZE: Final[dict[int, str]] = {v: k for k, v in BUCKET_BASE.items()}
"""diffusers stores the base as the transformer's ``target_size``: which resolution it is."""

BUCKET_GRID: Final = 16
"""Official ``bucket_hw_bucket_stride``; also the VAE's spatial compression."""

ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1", "4:3", "3:4")

FRAME_STEP: Final = 4
"""num_frames is 4n+1: the VAE compresses time 4x after the first frame."""

DEFAULT_FRAMES: Final = 121
"""The official default (``--video_length 121``, "the optimal value for best quality")."""

MIN_FRAMES: Final = 5

MAX_FRAMES: Final = 241
"""10 s at 24 fps, the longest video the official README speaks of ("10-second 720p video
synthesis"); the official code itself sets no limit, it only warns away from 121."""

FPS: Final = 24
"""The official code writes its videos at 24 fps (``generate.py``; diffusers' example too)."""


def buckets(base: int) -> tuple[tuple[int, int], ...]:
    """The official crop-size list for ``base`` on the 1.5 grid, as (height, width) pairs."""
    return _i2v_sizes.buckets(base, BUCKET_GRID)


def closest_bucket(base: int, width: float, height: float) -> tuple[int, int]:
    """The bucket the official 1.5 code picks for an input of ``width`` x ``height``, as
    (width, height): I2V's rule, with a landscape input allowed a bucket of its exact ratio."""
    return _i2v_sizes.closest_bucket(base, width, height, grid=BUCKET_GRID, landscape_exact=True)


def video_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) of a video at ``resolution`` ("480p", "720p") and ``aspect_ratio`` ("16:9").

    What the official code makes of an input of that aspect ratio.
    """
    if resolution not in BUCKET_BASE:
        raise ValueError(f"resolution must be one of {', '.join(BUCKET_BASE)}, got {resolution!r}")
    try:
        ratio = Fraction(*(int(part) for part in aspect_ratio.split(":")))
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"aspect_ratio must be W:H (e.g. 16:9), got {aspect_ratio!r}") from None
    return closest_bucket(BUCKET_BASE[resolution], ratio.numerator, ratio.denominator)


def image_video_size(resolution: str, width: int, height: int) -> tuple[int, int]:
    """(width, height) the official image-to-video code gives a ``width`` x ``height`` image:
    the bucket nearest the image's own aspect (it has no aspect-ratio option)."""
    if resolution not in BUCKET_BASE:
        raise ValueError(f"resolution must be one of {', '.join(BUCKET_BASE)}, got {resolution!r}")
    return closest_bucket(BUCKET_BASE[resolution], width, height)


def resolution_of(width: int, height: int) -> str | None:
    """The resolution whose buckets include ``width`` x ``height``, or None."""
    for resolution, base in BUCKET_BASE.items():
        if (height, width) in buckets(base):
            return resolution
    return None


def check_num_frames(num_frames: int) -> None:
    """Raise ValueError unless ``num_frames`` is 4n+1 within [MIN_FRAMES, MAX_FRAMES]."""
    if (num_frames - 1) % FRAME_STEP or not MIN_FRAMES <= num_frames <= MAX_FRAMES:
        raise ValueError(
            f"num_frames must be 4n+1 from {MIN_FRAMES} to {MAX_FRAMES}, got {num_frames}"
        )
