"""The preview engine: a deterministic virtual camera move over the input image, on the CPU.

It stands in for the real model on machines without a GPU (development, integration tests,
demos), so it honours the whole engine contract: exact frame count and size, progress for
every frame, cancellation between frames, and identical output for identical requests.

The move is chosen from camera words in the prompt (see :func:`camera_move_for`); the seed
varies its amplitude, drift direction and focal point. The virtual camera is a window over
the cover-cropped image that never leaves it, so no frame shows anything outside the image.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import numpy as np
from PIL import Image

from framecast.engines.base import Engine, GenerationRequest, Hooks
from framecast.errors import InputError

PREVIEW_VERSION: Final = "1"
"""Bumped whenever the frames for a given request change, since results record it."""

PUSH_IN: Final = "push_in"
PULL_BACK: Final = "pull_back"
PAN_LEFT: Final = "pan_left"
PAN_RIGHT: Final = "pan_right"
TILT_UP: Final = "tilt_up"
TILT_DOWN: Final = "tilt_down"
ORBIT: Final = "orbit"
CAMERA_MOVES: Final = (PUSH_IN, PULL_BACK, PAN_LEFT, PAN_RIGHT, TILT_UP, TILT_DOWN, ORBIT)
DEFAULT_CAMERA_MOVE: Final = PUSH_IN

# One alternation so that a single left-to-right search finds the earliest camera phrase:
# "pan left, then zoom in" pans, "zoom in, then pan left" pushes in.
_CAMERA_PHRASES: Final[dict[str, str]] = {
    PUSH_IN: r"zoom(?:s|ed|ing)?\s+in(?:to)?|push(?:es|ed|ing)?\s+in(?:to)?"
    r"|dolly(?:ing)?\s+in|close[\s-]?ups?",
    PULL_BACK: r"zoom(?:s|ed|ing)?\s+out|pull(?:s|ed|ing)?\s+(?:back|out)"
    r"|dolly(?:ing)?\s+(?:out|back)|reveal(?:s|ed|ing)?",
    PAN_LEFT: r"pan(?:s|ned|ning)?\s+(?:to\s+(?:the\s+)?)?left",
    PAN_RIGHT: r"pan(?:s|ned|ning)?\s+(?:to\s+(?:the\s+)?)?right",
    TILT_UP: r"tilt(?:s|ed|ing)?\s+up(?:wards?)?",
    TILT_DOWN: r"tilt(?:s|ed|ing)?\s+down(?:wards?)?",
    ORBIT: r"orbit(?:s|ed|ing)?|arc(?:s|ed|ing)?|circl(?:e|es|ed|ing)\s+around"
    r"|rotat(?:e|es|ed|ing)\s+around",
}
_CAMERA_RE: Final = re.compile(
    "|".join(rf"(?P<{move}>\b(?:{phrase})\b)" for move, phrase in _CAMERA_PHRASES.items()),
    re.IGNORECASE,
)

# No move zooms further than this, so a source prepared at this scale (or at the actual
# move's peak, which is lower) is never magnified per frame.
_MAX_ZOOM: Final = 1.3
# Frames rendered ahead of the consumer: enough to absorb jitter in encode time, few enough
# that a 4K frame queue stays small and a stop is noticed quickly.
_QUEUE_DEPTH: Final = 3
# How often a producer blocked on a full queue checks whether it should stop.
_STOP_POLL_S: Final = 0.05


def camera_move_for(prompt: str) -> str:
    """The camera move for ``prompt``: the first camera phrase in it, else a gentle push-in.

    One of :data:`CAMERA_MOVES`. Matching is case-insensitive and on whole words, so
    "panorama" does not pan and "arch" does not orbit.
    """
    match = _CAMERA_RE.search(prompt)
    if match is None or match.lastgroup is None:
        return DEFAULT_CAMERA_MOVE
    return match.lastgroup


@dataclass(frozen=True)
class _Pose:
    """Where the virtual camera looks, relative to the cover-cropped image.

    ``cx``/``cy`` is the window centre as a fraction of the image's width/height; ``zoom``
    is how much the window magnifies (1 shows the whole image, 2 shows half its width).
    """

    cx: float
    cy: float
    zoom: float


_CameraPath: TypeAlias = Callable[[float], _Pose]
"""A camera path: eased progress in [0, 1] -> pose."""


def _slack(zoom: float) -> float:
    """How far (as a fraction of the image) the window centre may move off 0.5 at ``zoom``."""
    return 0.5 - 0.5 / zoom


def _ease(t: float) -> float:
    """Cosine ease-in-out: zero velocity at both ends, so moves start and stop gently."""
    return 0.5 - 0.5 * math.cos(math.pi * t)


def _camera_path(move: str, rng: np.random.Generator) -> _CameraPath:
    """The camera path for ``move``, with amplitude and direction varied by ``rng``."""
    if move in (PUSH_IN, PULL_BACK):
        end_zoom = float(rng.uniform(1.14, 1.22))
        # The focal point wanders a little off centre so different seeds frame differently.
        fx, fy = (float(v) for v in rng.uniform(-0.6, 0.6, size=2))
        log_zoom = math.log(end_zoom)
        end_slack = _slack(end_zoom)

        def push_in(e: float) -> _Pose:
            # Zoom geometrically so the perceived speed is even. Slack grows concavely with
            # e under this zoom, so e * end_slack always fits inside the image.
            return _Pose(0.5 + fx * e * end_slack, 0.5 + fy * e * end_slack, math.exp(log_zoom * e))

        if move == PUSH_IN:
            return push_in
        return lambda e: push_in(1.0 - e)

    if move in (PAN_LEFT, PAN_RIGHT, TILT_UP, TILT_DOWN):
        zoom = float(rng.uniform(1.18, 1.26))
        reach = _slack(zoom) * float(rng.uniform(0.85, 0.98))
        # A little drift across the main axis keeps it from looking like a mechanical slide.
        drift = _slack(zoom) * float(rng.uniform(-0.25, 0.25))
        # Panning right moves the window right, so the content slides left in frame; tilting
        # up moves the window up (smaller y), so the content slides down.
        sign = 1.0 if move in (PAN_RIGHT, TILT_DOWN) else -1.0
        horizontal = move in (PAN_LEFT, PAN_RIGHT)

        def slide(e: float) -> _Pose:
            along = 0.5 + sign * reach * (2 * e - 1)
            across = 0.5 + drift * (2 * e - 1)
            return _Pose(along, across, zoom) if horizontal else _Pose(across, along, zoom)

        return slide

    if move == ORBIT:
        base_zoom = float(rng.uniform(1.18, 1.24))
        swell = float(rng.uniform(0.03, 0.05))
        direction = 1.0 if rng.random() < 0.5 else -1.0
        reach = _slack(base_zoom) * float(rng.uniform(0.85, 0.95))
        # The arc's height is limited by the zoom at its ends, where the window is widest.
        lift = _slack(base_zoom) * float(rng.uniform(0.4, 0.7))

        def orbit(e: float) -> _Pose:
            arc = math.sin(math.pi * e)
            return _Pose(
                0.5 + direction * reach * (2 * e - 1),
                0.5 - lift * arc,
                base_zoom * (1.0 + swell * arc),
            )

        return orbit

    raise ValueError(f"unknown camera move {move!r}; expected one of {CAMERA_MOVES}")


def _cover_box(image_size: tuple[int, int], aspect: float) -> tuple[float, float, float, float]:
    """The largest centred box of ``image_size`` with width/height ``aspect``."""
    iw, ih = image_size
    if iw / ih > aspect:
        cw = ih * aspect
        return ((iw - cw) / 2, 0.0, (iw + cw) / 2, float(ih))
    ch = iw / aspect
    return (0.0, (ih - ch) / 2, float(iw), (ih + ch) / 2)


def _window(pose: _Pose, source_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The source box the camera sees at ``pose``, clamped inside the source."""
    sw, sh = source_size
    zoom = max(pose.zoom, 1.0)
    w, h = sw / zoom, sh / zoom
    # The paths are designed to stay inside; the clamp only absorbs float rounding.
    x0 = min(max(pose.cx * sw - w / 2, 0.0), sw - w)
    y0 = min(max(pose.cy * sh - h / 2, 0.0), sh - h)
    return (x0, y0, x0 + w, y0 + h)


class PreviewEngine(Engine):
    """A camera move over the input image: real, deterministic and fast, needing no GPU.

    ``step_seconds`` adds an artificial delay per frame (e.g. 0.1 makes a 129-frame video
    take about 13 s) so people can watch progress and try cancelling; 0 renders at full
    speed. Frames are rendered a few ahead on a background thread, so rendering
    overlaps whatever the consumer does with them (usually H.264 encoding).
    """

    name = "preview"
    model = "framecast/preview-camera"

    def __init__(self, step_seconds: float = 0.0) -> None:
        if not step_seconds >= 0:
            raise ValueError(f"step_seconds must be >= 0, got {step_seconds}")
        self.step_seconds = step_seconds

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "version": PREVIEW_VERSION}

    def generate(self, request: GenerationRequest, hooks: Hooks) -> Iterator[np.ndarray]:
        """Yield ``request.num_frames`` frames of the camera move picked from the prompt.

        Bad sizes raise :class:`InputError` here, before any frame is produced.
        """
        _validate(request)
        return self._frames(request, hooks)

    def _frames(self, request: GenerationRequest, hooks: Hooks) -> Iterator[np.ndarray]:
        size = (request.width, request.height)
        # numpy seeds must be non-negative; the modulo keeps distinct 64-bit seeds distinct.
        rng = np.random.default_rng(request.seed % 2**64)
        path = _camera_path(camera_move_for(request.prompt), rng)
        n = request.num_frames
        poses = [path(_ease(i / (n - 1) if n > 1 else 0.0)) for i in range(n)]
        source = _prepare_source(request.image, size, max(p.zoom for p in poses))
        boxes = [_window(p, source.size) for p in poses]

        frames: queue.Queue[np.ndarray | BaseException] = queue.Queue(maxsize=_QUEUE_DEPTH)
        stop = threading.Event()
        renderer = threading.Thread(
            target=_render,
            args=(source, size, boxes, frames, stop),
            name="framecast-preview-render",
            daemon=True,
        )
        renderer.start()
        try:
            for i in range(n):
                hooks.raise_if_cancelled()
                item = frames.get()
                if isinstance(item, BaseException):
                    raise item
                if self.step_seconds:
                    time.sleep(self.step_seconds)
                hooks.progress(i + 1, n, "rendering")
                yield item
        finally:
            # Runs on normal exit, on an exception (Cancelled) and when the consumer closes
            # the generator early, so the renderer never outlives the request.
            stop.set()
            renderer.join()


def _validate(request: GenerationRequest) -> None:
    if request.num_frames < 1:
        raise InputError(
            f"num_frames must be at least 1, got {request.num_frames}",
            field="num_frames",
        )
    for name, value in (("width", request.width), ("height", request.height)):
        if value <= 0 or value % 2:
            raise InputError(f"{name} must be a positive even number, got {value}", field=name)
    iw, ih = request.image.size
    if iw <= 0 or ih <= 0:
        raise InputError(f"the image is empty ({iw}x{ih})", field="image")


def _prepare_source(image: Image.Image, size: tuple[int, int], zoom: float) -> Image.Image:
    """Cover-crop ``image`` to the output aspect and scale it for the move's deepest zoom.

    At ``zoom`` the window spans ``1/zoom`` of the source, so a source of ``size * zoom``
    keeps every frame a downscale (or 1:1) of it: per-frame resampling never magnifies, and
    the one magnification a small input needs is done once, with a better filter.
    """
    width, height = size
    scale = min(max(zoom, 1.0), _MAX_ZOOM)
    source_size = (math.ceil(width * scale), math.ceil(height * scale))
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    box = _cover_box(rgb.size, width / height)
    # reducing_gap makes multi-megapixel photos cheap: an integer box-reduce first, then
    # Lanczos over a small remainder, with no visible difference.
    return rgb.resize(source_size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def _render(
    source: Image.Image,
    size: tuple[int, int],
    boxes: list[tuple[float, float, float, float]],
    out: queue.Queue[np.ndarray | BaseException],
    stop: threading.Event,
) -> None:
    """Render one frame per box into ``out`` until done or ``stop`` is set.

    Runs on a background thread: Pillow releases the GIL while resampling, so this overlaps
    with the consumer's work. A failure is handed to the consumer to raise in its thread.
    """
    try:
        for box in boxes:
            if stop.is_set():
                return
            # One call crops at sub-pixel precision and scales: smooth, and the fastest path
            # Pillow has (much faster than an affine transform).
            frame = np.array(source.resize(size, Image.Resampling.BILINEAR, box=box))
            if not _put(out, frame, stop):
                return
    except BaseException as exc:  # handed over, never swallowed
        _put(out, exc, stop)


def _put(
    out: queue.Queue[np.ndarray | BaseException],
    item: np.ndarray | BaseException,
    stop: threading.Event,
) -> bool:
    """Put ``item`` on ``out``, giving up (False) if ``stop`` is set while the queue is full."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_STOP_POLL_S)
        except queue.Full:
            continue
        return True
    return False
