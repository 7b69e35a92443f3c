from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from framecast.engines.base import Cancelled, GenerationRequest, NullHooks
from framecast.engines.preview import (
    CAMERA_MOVES,
    ORBIT,
    PAN_LEFT,
    PAN_RIGHT,
    PREVIEW_VERSION,
    PULL_BACK,
    PUSH_IN,
    TILT_DOWN,
    TILT_UP,
    PreviewEngine,
    camera_move_for,
)
from framecast.errors import InputError
from framecast.models.hunyuan_i2v import FPS

RENDER_THREAD = "framecast-preview-render"


# --- helpers ---------------------------------------------------------------------------------


def textured_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth random blobs at two scales: enough structure for motion estimates to lock on."""
    rng = np.random.default_rng(seed)
    total = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((32, 1.0), (8, 0.6)):
        small = rng.random((max(2, height // cell), max(2, width // cell), 3)) * 255
        layer = Image.fromarray(small.astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        total += weight * np.asarray(layer, np.float32)
    total -= total.min()
    total *= 255 / total.max()
    return Image.fromarray(total.astype(np.uint8))


def request(
    prompt: str = "a quiet lake",
    *,
    seed: int = 7,
    width: int = 128,
    height: int = 72,
    num_frames: int = 9,
    image: Image.Image | None = None,
) -> GenerationRequest:
    return GenerationRequest(
        image=image if image is not None else textured_image(640, 360),
        prompt=prompt,
        seed=seed,
        width=width,
        height=height,
        num_frames=num_frames,
        fps=FPS,
    )


def render(req: GenerationRequest) -> list[np.ndarray]:
    return list(PreviewEngine().generate(req, NullHooks()))


def gray(frame: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.asarray(frame, np.float64).mean(axis=2)
    return result


def shift_between(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(dy, dx) such that ``b[y, x] ~ a[y - dy, x - dx]``, by phase correlation."""
    ga, gb = gray(a), gray(b)
    window = np.outer(np.hanning(ga.shape[0]), np.hanning(ga.shape[1]))
    fa = np.fft.fft2((ga - ga.mean()) * window)
    fb = np.fft.fft2((gb - gb.mean()) * window)
    cross = fb * np.conj(fa)
    surface = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    dy, dx = np.unravel_index(np.argmax(surface), surface.shape)
    h, w = surface.shape
    return (int(dy) - h if dy > h // 2 else int(dy), int(dx) - w if dx > w // 2 else int(dx))


def correlation(a: np.ndarray, b: np.ndarray, margin: int) -> float:
    ga = gray(a)[margin:-margin, margin:-margin].ravel()
    gb = gray(b)[margin:-margin, margin:-margin].ravel()
    return float(np.corrcoef(ga, gb)[0, 1])


def overlap_correlation(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> float:
    """Correlation of ``a`` and ``b`` where they overlap once ``a`` is moved by (dy, dx)."""
    h, w = a.shape[:2]
    a_part = a[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    b_part = b[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
    return correlation(a_part, b_part, 4)


def magnify(frame: np.ndarray, scale: float) -> np.ndarray:
    """The centre ``1/scale`` of ``frame``, blown up to the full size."""
    h, w = frame.shape[:2]
    cw, ch = w / scale, h / scale
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR, box=box))


def best_magnification(wide: np.ndarray, close: np.ndarray) -> tuple[float, float, float]:
    """How much ``close`` magnifies ``wide`` (allowing an off-centre focal point).

    Returns (best scale, correlation at that scale, correlation at scale 1 after aligning).
    """
    margin = 16
    results = []
    for scale in np.linspace(1.0, 1.35, 15):
        candidate = magnify(wide, float(scale))
        dy, dx = shift_between(candidate, close)
        aligned = np.roll(candidate, (dy, dx), axis=(0, 1))
        results.append((float(scale), correlation(aligned, close, margin)))
    best = max(results, key=lambda r: r[1])
    return best[0], best[1], results[0][1]


class RecordingHooks:
    def __init__(self, cancel_at: int | None = None) -> None:
        self.cancel_at = cancel_at
        self.checks = 0
        self.progress_calls: list[tuple[int, int, str]] = []

    def progress(self, step: int, total: int, phase: str) -> None:
        self.progress_calls.append((step, total, phase))

    def raise_if_cancelled(self) -> None:
        if self.cancel_at is not None and self.checks == self.cancel_at:
            raise Cancelled()
        self.checks += 1


def render_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == RENDER_THREAD]


# --- frames ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(128, 72), (72, 128), (64, 64)])
def test_yields_exact_count_and_shape(width: int, height: int) -> None:
    frames = render(request(width=width, height=height, num_frames=9))

    assert len(frames) == 9
    for frame in frames:
        assert frame.shape == (height, width, 3)
        assert frame.dtype == np.uint8
        assert frame.flags.writeable  # callers may draw on frames (watermarks, overlays)


def test_single_frame() -> None:
    frames = render(request(num_frames=1))
    assert len(frames) == 1
    assert frames[0].shape == (72, 128, 3)


@pytest.mark.slow
@pytest.mark.parametrize(("width", "height"), [(1280, 720), (720, 1280)])
def test_full_size_129_frames(width: int, height: int) -> None:
    # Its speed is measured by bench/preview_render.py, not asserted here.
    image = textured_image(1920, 1080)
    count = 0
    for frame in PreviewEngine().generate(
        request(width=width, height=height, num_frames=129, image=image), NullHooks()
    ):
        assert frame.shape == (height, width, 3)
        count += 1

    assert count == 129


def test_accepts_non_rgb_images() -> None:
    image = textured_image(200, 100).convert("L").convert("RGBA")
    frames = render(request(image=image))
    assert frames[0].shape == (72, 128, 3)


# --- determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["a cat", "pan left", "tilt up", "orbit", "zoom out"])
def test_same_request_gives_identical_frames(prompt: str) -> None:
    first = render(request(prompt, seed=123))
    second = render(request(prompt, seed=123))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("prompt", ["a cat", "pan left", "tilt up", "orbit", "zoom out"])
def test_different_seed_gives_different_frames(prompt: str) -> None:
    first = render(request(prompt, seed=1))
    second = render(request(prompt, seed=2))
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_negative_and_huge_seeds_work() -> None:
    for seed in (-1, 2**63, 2**64 - 1):
        assert len(render(request(seed=seed, num_frames=2))) == 2


# --- camera words ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "move"),
    [
        ("a cat sleeping on a sofa", PUSH_IN),
        ("", PUSH_IN),
        ("Zoom in on the lighthouse", PUSH_IN),
        ("slow push in towards the door", PUSH_IN),
        ("dolly in", PUSH_IN),
        ("close-up of a face", PUSH_IN),
        ("extreme closeup", PUSH_IN),
        ("ZOOM OUT to show the city", PULL_BACK),
        ("the camera pulls back", PULL_BACK),
        ("dolly out from the table", PULL_BACK),
        ("a slow reveal of the valley", PULL_BACK),
        ("pan left across the beach", PAN_LEFT),
        ("camera pans to the left", PAN_LEFT),
        ("Pan Right over the skyline", PAN_RIGHT),
        ("tilt up to the sky", TILT_UP),
        ("tilting down to the river", TILT_DOWN),
        ("orbit around the statue", ORBIT),
        ("the camera arcs past the car", ORBIT),
        ("circle around the dancer", ORBIT),
        ("rotate around the vase", ORBIT),
        # First phrase wins.
        ("pan left, then zoom in", PAN_LEFT),
        ("zoom in, then pan left", PUSH_IN),
        ("tilt down and orbit", TILT_DOWN),
        # Whole words only.
        ("a panorama of the archway", PUSH_IN),
        ("zoomed interface", PUSH_IN),
        ("a marching band", PUSH_IN),
        ("japan leftovers", PUSH_IN),
    ],
)
def test_camera_move_for(prompt: str, move: str) -> None:
    assert camera_move_for(prompt) == move


def test_every_move_is_reachable() -> None:
    prompts = ["push in", "pull back", "pan left", "pan right", "tilt up", "tilt down", "orbit"]
    assert sorted(camera_move_for(p) for p in prompts) == sorted(CAMERA_MOVES)


# --- the motion itself -----------------------------------------------------------------------


def motion_frames(prompt: str, seed: int) -> list[np.ndarray]:
    """Big enough for motion estimates to be precise, small enough to be quick."""
    return render(request(prompt, seed=seed, width=256, height=144, num_frames=9))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_push_in_magnifies_the_centre(seed: int) -> None:
    frames = motion_frames("a cat", seed)

    scale, corr, corr_unzoomed = best_magnification(frames[0], frames[-1])

    assert 1.1 <= scale <= 1.3
    assert corr > 0.9
    assert corr > corr_unzoomed + 0.1
    # And not the other way round.
    reverse_scale, _, _ = best_magnification(frames[-1], frames[0])
    assert reverse_scale == 1.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pull_back_shows_more_at_the_end(seed: int) -> None:
    frames = motion_frames("zoom out", seed)

    scale, corr, corr_unzoomed = best_magnification(frames[-1], frames[0])

    assert 1.1 <= scale <= 1.3
    assert corr > 0.9
    assert corr > corr_unzoomed + 0.1


@pytest.mark.parametrize(
    ("prompt", "axis", "sign"),
    [
        # Panning right moves the camera right, so the content slides left (negative dx).
        ("pan right", 1, -1),
        ("pan left", 1, 1),
        # Tilting up moves the camera up, so the content slides down (positive dy).
        ("tilt up", 0, 1),
        ("tilt down", 0, -1),
    ],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_pans_and_tilts_move_the_right_way(prompt: str, axis: int, sign: int, seed: int) -> None:
    frames = motion_frames(prompt, seed)
    size = frames[0].shape[axis]

    shifts = [shift_between(frames[0], frame) for frame in frames]
    main = [s[axis] * sign for s in shifts]
    cross = [s[1 - axis] for s in shifts]

    # A clear move (>= 15% of the frame) along the axis, monotonic, and little across it.
    assert main[-1] >= 0.15 * size
    assert all(b >= a for a, b in itertools.pairwise(main))
    assert max(abs(c) for c in cross) <= 0.05 * frames[0].shape[1 - axis] + 1
    # Pure translation: the aligned end frame matches the start where they overlap.
    assert overlap_correlation(frames[0], frames[-1], *shifts[-1]) > 0.9


def test_motion_eases_in_and_out() -> None:
    frames = render(request("pan right", seed=1, width=256, height=144, num_frames=17))
    positions = [-shift_between(frames[0], frame)[1] for frame in frames]
    steps = np.diff(positions)

    # Slow at both ends, fastest in the middle.
    assert steps[0] < steps[7] and steps[-1] < steps[8]


def test_orbit_drifts_sideways_on_an_arc() -> None:
    directions = set()
    for seed in range(6):
        frames = motion_frames("orbit around the statue", seed)
        dy_end, dx_end = shift_between(frames[0], frames[-1])
        dy_mid, _ = shift_between(frames[0], frames[len(frames) // 2])

        # Sideways from start to end, back at the same height and scale at the end...
        assert abs(dx_end) >= 0.15 * frames[0].shape[1]
        assert abs(dy_end) <= 2
        assert overlap_correlation(frames[0], frames[-1], dy_end, dx_end) > 0.9
        # ...but lifted in the middle: the camera rises, so the content sinks.
        assert dy_mid > 2
        directions.add(int(np.sign(dx_end)))

    # The seed picks the direction of travel.
    assert directions == {-1, 1}


def test_moves_differ_from_each_other() -> None:
    last = {move: render(request(move.replace("_", " "), seed=5))[-1] for move in CAMERA_MOVES}
    for a in CAMERA_MOVES:
        for b in CAMERA_MOVES:
            if a < b:
                assert not np.array_equal(last[a], last[b]), (a, b)


# --- aspect ratio and borders ----------------------------------------------------------------


def gradient_image(width: int, height: int) -> Image.Image:
    """Never dark anywhere; red encodes x and green encodes y, so crops can be located."""
    x = np.linspace(60, 250, width)[None, :].repeat(height, 0)
    y = np.linspace(60, 250, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 120)], -1).astype(np.uint8))


@pytest.mark.parametrize("size", [(3000, 500), (300, 2000)])
@pytest.mark.parametrize("prompt", ["a cat", "zoom out", "pan left", "tilt down", "orbit"])
def test_extreme_aspect_fills_the_frame(size: tuple[int, int], prompt: str) -> None:
    for width, height in ((128, 72), (72, 128)):
        frames = render(request(prompt, image=gradient_image(*size), width=width, height=height))
        for frame in frames:
            assert frame.min() >= 55  # no black (or dark) border anywhere


def test_cover_crop_is_centred() -> None:
    # A 3000x500 image into 16:9 keeps the middle 889 columns: red 60..250 maps to ~116..194.
    frames = render(request("a cat", image=gradient_image(3000, 500), num_frames=1))
    red = frames[0][:, :, 0].astype(float)
    assert red[:, 0].mean() == pytest.approx(60 + 190 * 1055.5 / 3000, abs=3)
    assert red[:, -1].mean() == pytest.approx(60 + 190 * 1944.5 / 3000, abs=3)
    # The whole height is used.
    green = frames[0][:, :, 1].astype(float)
    assert green[0].mean() < 66 and green[-1].mean() > 244


def test_small_input_is_upscaled() -> None:
    frames = render(request(image=textured_image(40, 30), width=256, height=144))
    assert frames[0].shape == (144, 256, 3)
    assert frames[0].std() > 10


# --- hooks and cancellation ------------------------------------------------------------------


def test_progress_for_every_frame() -> None:
    hooks = RecordingHooks()
    frames = list(PreviewEngine().generate(request(num_frames=9), hooks))

    assert len(frames) == 9
    assert hooks.progress_calls == [(i, 9, "rendering") for i in range(1, 10)]
    assert hooks.checks == 9


def test_progress_is_reported_before_the_next_frame_is_asked_for() -> None:
    hooks = RecordingHooks()
    frames = PreviewEngine().generate(request(num_frames=3), hooks)
    next(frames)
    assert hooks.progress_calls == [(1, 3, "rendering")]
    next(frames)
    assert len(hooks.progress_calls) == 2
    list(frames)


@pytest.mark.parametrize("cancel_at", [0, 1, 4, 8])
def test_cancel_stops_and_cleans_up(cancel_at: int) -> None:
    baseline = threading.active_count()
    hooks = RecordingHooks(cancel_at=cancel_at)
    received = []

    with pytest.raises(Cancelled):
        for frame in PreviewEngine().generate(request(num_frames=9), hooks):
            received.append(frame)

    assert len(received) == cancel_at
    assert len(hooks.progress_calls) == cancel_at
    assert render_threads() == []
    assert threading.active_count() == baseline


def test_closing_early_stops_the_renderer() -> None:
    baseline = threading.active_count()
    step = 0.2  # the 48 frames left would take 9.6 s to render
    frames = PreviewEngine(step_seconds=step).generate(request(num_frames=50), NullHooks())
    next(frames)
    next(frames)
    assert len(render_threads()) == 1

    start = time.perf_counter()
    frames.close()  # type: ignore[attr-defined]

    # Stopped, not rendered to the end: a hang guard relative to the rest of the run.
    assert time.perf_counter() - start < 48 * step / 2
    assert render_threads() == []
    assert threading.active_count() == baseline


def test_abandoned_generator_stops_the_renderer() -> None:
    baseline = threading.active_count()

    def take_one() -> None:
        frames: Iterator[np.ndarray] = PreviewEngine().generate(request(num_frames=50), NullHooks())
        next(frames)

    take_one()  # CPython finalises the generator as soon as it is unreferenced

    assert render_threads() == []
    assert threading.active_count() == baseline


def test_step_seconds_slows_each_frame() -> None:
    engine = PreviewEngine(step_seconds=0.05)
    start = time.perf_counter()
    frames = list(engine.generate(request(num_frames=6), NullHooks()))
    elapsed = time.perf_counter() - start

    assert len(frames) == 6
    assert elapsed >= 0.3


def test_step_seconds_does_not_delay_cancellation() -> None:
    hooks = RecordingHooks(cancel_at=2)
    start = time.perf_counter()
    with pytest.raises(Cancelled):
        list(PreviewEngine(step_seconds=0.05).generate(request(num_frames=100), hooks))
    # Cancelled at the second frame, not after the 100 frames' 5 s of steps.
    assert time.perf_counter() - start < 100 * 0.05 / 2
    assert render_threads() == []


def test_negative_step_seconds_is_rejected() -> None:
    with pytest.raises(ValueError, match="step_seconds"):
        PreviewEngine(step_seconds=-1)


# --- validation and metadata -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": -3}, "num_frames"),
        ({"width": 0}, "width"),
        ({"width": 127}, "width"),
        ({"height": -72}, "height"),
        ({"height": 71}, "height"),
    ],
)
def test_invalid_requests_fail_before_any_frame(changes: dict[str, Any], field: str) -> None:
    hooks = RecordingHooks()
    params: dict[str, Any] = {"width": 128, "height": 72, "num_frames": 9} | changes
    with pytest.raises(InputError, match=field) as excinfo:
        PreviewEngine().generate(request(**params), hooks)  # no iteration needed

    assert excinfo.value.details["field"] == field
    assert hooks.progress_calls == []


def test_metadata() -> None:
    engine = PreviewEngine()
    assert engine.metadata() == {
        "engine": "preview",
        "model": "framecast/preview-camera",
        "version": PREVIEW_VERSION,
    }


@pytest.mark.parametrize("move", CAMERA_MOVES)
def test_camera_paths_stay_inside_the_image_without_clamping(move: str) -> None:
    # The renderer clamps the window as a safety net; the paths themselves must not need it,
    # or the clamp would show up as the camera sticking at an edge.
    from framecast.engines.preview import _MAX_ZOOM, _camera_path, _slack

    for seed in range(200):
        path = _camera_path(move, np.random.default_rng(seed))
        for e in np.linspace(0.0, 1.0, 101):
            pose = path(float(e))
            assert 1.0 <= pose.zoom <= _MAX_ZOOM
            assert abs(pose.cx - 0.5) <= _slack(pose.zoom) + 1e-12
            assert abs(pose.cy - 0.5) <= _slack(pose.zoom) + 1e-12
