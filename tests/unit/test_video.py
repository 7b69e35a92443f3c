from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from framecast.engines.base import Cancelled
from framecast.video import VideoInfo, encode_mp4, probe_mp4

W, H = 128, 72
FPS = 24  # any rate: encoding does not depend on the model


def smooth_frames(count: int, width: int = W, height: int = H) -> list[np.ndarray]:
    """Colourful gradients that drift a little per frame: easy to compress, easy to compare."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = []
    for i in range(count):
        r = 128 + 100 * np.sin((x + 2 * i) / 23)
        g = 128 + 100 * np.cos((y - i) / 17)
        b = 128 + 90 * np.sin((x + y + 3 * i) / 41)
        frames.append(np.stack([r, g, b], -1).round().astype(np.uint8))
    return frames


def top_level_boxes(path: Path) -> list[str]:
    """The types of the top-level ISO BMFF boxes, in file order."""
    boxes = []
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        elif size == 0:
            size = len(data) - offset
        assert size >= 8
        boxes.append(kind.decode("ascii"))
        offset += size
    assert offset == len(data)
    return boxes


def decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    info = encode_mp4(smooth_frames(30), path, width=W, height=H, fps=FPS)

    assert info == VideoInfo(
        num_frames=30,
        width=W,
        height=H,
        fps=24,
        size_bytes=path.stat().st_size,
        duration_s=1.25,
    )
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 24
        assert (stream.codec_context.width, stream.codec_context.height) == (W, H)
        assert stream.duration is not None and stream.time_base is not None
        assert float(stream.duration * stream.time_base) == pytest.approx(1.25)
        frames = list(container.decode(stream))
    assert len(frames) == 30
    # Presentation times are exactly i / fps.
    assert [f.time for f in frames] == pytest.approx([i / 24 for i in range(30)])


def test_probe_matches_encode(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    info = encode_mp4(smooth_frames(17), path, width=W, height=H, fps=24)
    assert probe_mp4(path) == info


@pytest.mark.parametrize("fps", [8, 24, 30])
def test_other_frame_rates(tmp_path: Path, fps: int) -> None:
    path = tmp_path / "out.mp4"
    encode_mp4(smooth_frames(12), path, width=W, height=H, fps=fps)
    probed = probe_mp4(path)
    assert probed.fps == fps
    assert probed.num_frames == 12
    assert probed.duration_s == pytest.approx(12 / fps)


def test_single_frame(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    encode_mp4(smooth_frames(1), path, width=W, height=H, fps=FPS)
    assert probe_mp4(path).num_frames == 1


def test_accepts_a_generator_and_portrait_size(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    frames = (f for f in smooth_frames(5, width=72, height=128))
    info = encode_mp4(frames, path, width=72, height=128, fps=FPS)
    assert (info.width, info.height, info.num_frames) == (72, 128, 5)
    assert probe_mp4(path).num_frames == 5


def test_moov_before_mdat(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    encode_mp4(smooth_frames(24), path, width=W, height=H, fps=FPS)

    boxes = top_level_boxes(path)

    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat")


def test_content_is_preserved(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    original = smooth_frames(10)
    encode_mp4(original, path, width=W, height=H, fps=FPS)

    decoded = decode_rgb(path)

    assert len(decoded) == len(original)
    for before, after in zip(original, decoded, strict=True):
        error = np.abs(before.astype(int) - after.astype(int))
        # Small overall, and no colour cast (a BT.601/709 mix-up shifts means by several levels).
        assert error.mean() < 3.0
        assert np.abs(before.mean(axis=(0, 1)) - after.mean(axis=(0, 1))).max() < 1.5


def test_frame_order_is_preserved(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    levels = [20, 200, 60, 240, 100, 140]
    frames = [np.full((H, W, 3), v, np.uint8) for v in levels]
    encode_mp4(frames, path, width=W, height=H, fps=FPS)

    means = [float(f.mean()) for f in decode_rgb(path)]

    assert means == pytest.approx(levels, abs=3)


def test_poster_is_first_frame_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    poster = tmp_path / "poster.jpg"
    frames = smooth_frames(5)
    encode_mp4(frames, path, width=W, height=H, poster_path=poster, fps=FPS)

    with Image.open(poster) as image:
        assert image.format == "JPEG"
        assert image.size == (W, H)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    assert np.abs(pixels - frames[0]).mean() < 3
    assert np.abs(pixels - frames[4]).mean() > np.abs(pixels - frames[0]).mean()


def test_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old")
    encode_mp4(smooth_frames(3), path, width=W, height=H, fps=FPS)
    assert probe_mp4(path).num_frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((H, W + 2, 3), np.uint8),
        np.zeros((H, W, 4), np.uint8),
        np.zeros((H, W), np.uint8),
        np.zeros((H, W, 3), np.float32),
        np.zeros((H, W, 3), np.uint16),
    ],
    ids=["wrong-width", "rgba", "gray", "float", "uint16"],
)
def test_bad_frame_raises_and_leaves_nothing(tmp_path: Path, bad: np.ndarray) -> None:
    path = tmp_path / "out.mp4"
    poster = tmp_path / "poster.jpg"
    frames = [*smooth_frames(3), bad, *smooth_frames(2)]

    with pytest.raises(ValueError, match="frame 3"):
        encode_mp4(frames, path, width=W, height=H, poster_path=poster, fps=FPS)

    assert list(tmp_path.iterdir()) == []


def test_bad_first_frame_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frame 0"):
        encode_mp4(
            [np.zeros((10, 10, 3), np.uint8)],
            tmp_path / "out.mp4",
            width=W,
            height=H,
            fps=FPS,
            poster_path=tmp_path / "poster.jpg",
        )
    assert list(tmp_path.iterdir()) == []


def test_no_frames_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        encode_mp4([], tmp_path / "out.mp4", width=W, height=H, fps=FPS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc_type", [Cancelled, RuntimeError, KeyboardInterrupt])
def test_failing_iterator_reraises_unchanged_and_leaves_nothing(
    tmp_path: Path, exc_type: type[BaseException]
) -> None:
    boom = exc_type("stop here")

    def frames() -> Iterator[np.ndarray]:
        yield from smooth_frames(4)
        raise boom

    with pytest.raises(exc_type) as excinfo:
        encode_mp4(
            frames(),
            tmp_path / "out.mp4",
            width=W,
            height=H,
            poster_path=tmp_path / "p.jpg",
            fps=FPS,
        )

    assert excinfo.value is boom
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    encode_mp4(smooth_frames(3), path, width=W, height=H, fps=FPS)
    before = path.read_bytes()

    def frames() -> Iterator[np.ndarray]:
        yield smooth_frames(1)[0]
        raise Cancelled()

    with pytest.raises(Cancelled):
        encode_mp4(frames(), path, width=W, height=H, fps=FPS)

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 127}, "even"),
        ({"height": 0}, "even"),
        ({"fps": 0}, "fps"),
        ({"crf": 52}, "crf"),
        ({"preset": "no-such-preset"}, "preset"),
        ({"poster_quality": 0}, "poster_quality"),
    ],
)
def test_bad_parameters(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    params: dict[str, Any] = {"width": W, "height": H, "fps": FPS} | kwargs
    with pytest.raises(ValueError, match=match):
        encode_mp4(smooth_frames(2), tmp_path / "out.mp4", **params)
    assert list(tmp_path.iterdir()) == []


def test_crf_and_preset_are_used(tmp_path: Path) -> None:
    frames = smooth_frames(12)
    fine = encode_mp4(frames, tmp_path / "fine.mp4", width=W, height=H, crf=10, fps=FPS)
    coarse = encode_mp4(frames, tmp_path / "coarse.mp4", width=W, height=H, crf=40, fps=FPS)
    assert fine.size_bytes > coarse.size_bytes

    fast = encode_mp4(frames, tmp_path / "fast.mp4", width=W, height=H, preset="ultrafast", fps=FPS)
    assert probe_mp4(tmp_path / "fast.mp4") == fast
