"""Writing and reading MP4 files with PyAV (libx264 bundled in its wheels; no ffmpeg binary).

Output is H.264 High profile, yuv420p, BT.709 tagged, with the ``moov`` atom first
(``+faststart``) so browsers can start playing before the whole file has arrived.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc
from PIL import Image

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    width: int
    height: int
    fps: int
    size_bytes: int
    duration_s: float


def encode_mp4(
    frames: Iterable[np.ndarray],
    path: Path,
    *,
    width: int,
    height: int,
    fps: int,
    crf: int = 18,
    preset: str = "medium",
    poster_path: Path | None = None,
    poster_quality: int = 90,
) -> VideoInfo:
    """Encode ``frames`` (each ``(height, width, 3)`` uint8 RGB) to an H.264 MP4 at ``path``.

    Every frame given becomes exactly one frame of the video, shown for ``1/fps`` s. The file
    is written under a temporary name in the same directory and renamed into place at the
    end, so ``path`` (and ``poster_path``, a JPEG of the first frame) either holds a complete
    file or is untouched. If ``frames`` raises (e.g. ``Cancelled``), the temporary files are
    removed and that same exception propagates.

    Raises ``ValueError`` for bad dimensions or parameters, a frame of the wrong shape or
    dtype, or no frames at all.
    """
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        # yuv420p stores chroma at half resolution, so x264 refuses odd sizes.
        raise ValueError(f"width and height must be positive and even, got {width}x{height}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be between 0 and 51, got {crf}")
    if preset not in X264_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}, got {preset!r}")
    if not 1 <= poster_quality <= 100:
        raise ValueError(f"poster_quality must be between 1 and 100, got {poster_quality}")

    path = Path(path)
    tmp_video = _temp_sibling(path)
    tmp_poster = _temp_sibling(poster_path) if poster_path is not None else None
    try:
        num_frames = _write_h264(
            frames,
            tmp_video,
            width=width,
            height=height,
            fps=fps,
            crf=crf,
            preset=preset,
            poster=tmp_poster,
            poster_quality=poster_quality,
        )
        if poster_path is not None and tmp_poster is not None:
            os.replace(tmp_poster, poster_path)
        os.replace(tmp_video, path)
    except BaseException:
        for tmp in (tmp_video, tmp_poster):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        raise

    return VideoInfo(
        num_frames=num_frames,
        width=width,
        height=height,
        fps=fps,
        size_bytes=path.stat().st_size,
        duration_s=num_frames / fps,
    )


def probe_mp4(path: Path) -> VideoInfo:
    """Describe the first video stream of ``path``, counting its frames by decoding them all."""
    path = Path(path)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        num_frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        fps = round(float(rate)) if rate else 0
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = num_frames / fps if fps else 0.0
        return VideoInfo(
            num_frames=num_frames,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            size_bytes=path.stat().st_size,
            duration_s=duration_s,
        )


def _write_h264(
    frames: Iterable[np.ndarray],
    out: Path,
    *,
    width: int,
    height: int,
    fps: int,
    crf: int,
    preset: str,
    poster: Path | None,
    poster_quality: int,
) -> int:
    """Encode into ``out`` and return the number of frames written."""
    time_base = Fraction(1, fps)
    # The name ends in .partial, so the muxer cannot guess the format from it.
    container = av.open(str(out), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        stream = container.add_stream(
            "libx264", rate=fps, options={"crf": str(crf), "preset": preset}
        )
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        # Tag what we convert to below: untagged HD video is assumed BT.709 by most players
        # but BT.601 by some, and the tag removes the guesswork.
        stream.codec_context.colorspace = int(Colorspace.ITU709)
        stream.codec_context.color_primaries = int(ColorPrimaries.BT709)
        stream.codec_context.color_trc = int(ColorTrc.BT709)
        stream.codec_context.color_range = int(ColorRange.MPEG)

        count = 0
        for frame in frames:
            _check_frame(frame, count, width, height)
            if count == 0 and poster is not None:
                Image.fromarray(frame).save(poster, format="JPEG", quality=poster_quality)
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame = video_frame.reformat(
                format="yuv420p",
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
            )
            video_frame.pts = count
            video_frame.time_base = time_base
            container.mux(stream.encode(video_frame))
            count += 1
        if count == 0:
            raise ValueError("no frames to encode")
        container.mux(stream.encode(None))
    except BaseException:
        # Closing writes the trailer, which can fail on a half-written file; that failure
        # must not replace the exception the caller needs to see (e.g. Cancelled).
        with contextlib.suppress(Exception):
            container.close()
        raise
    container.close()
    return count


def _check_frame(frame: np.ndarray, index: int, width: int, height: int) -> None:
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame {index} is a {type(frame).__name__}, not a numpy array")
    if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
        raise ValueError(
            f"frame {index} has shape {frame.shape} and dtype {frame.dtype}; "
            f"expected ({height}, {width}, 3) uint8"
        )


def _temp_sibling(path: Path) -> Path:
    """A unique hidden name next to ``path``: same filesystem, so the final rename is atomic."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
