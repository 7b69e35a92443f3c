"""The HunyuanVideo 1.5 image-to-video engine on its tiny random model: parity with diffusers'
stock pipeline, sizes, progress, cancel, the distilled checkpoints, weights resolution.

The tiny model's size buckets have base 64, so a 100x60 image becomes an 80x48 video in the
stock pipeline too, and each run takes a fraction of a second on a CPU.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("diffusers")

import PIL.Image
import torch
from diffusers.pipelines.hunyuan_video1_5.image_processor import (
    HunyuanVideo15ImageProcessor,
    generate_crop_size_list,
)

# Imported from its module: the top-level name is a placeholder to a type checker.
from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
    HunyuanVideo15ImageToVideoPipeline,
)

from framecast.engines.base import (
    Cancelled,
    EngineOutOfMemory,
    EngineUnavailable,
    GenerationRequest,
    NullHooks,
)
from framecast.engines.hunyuan15 import memory
from framecast.engines.hunyuan15.engine import (
    Hunyuan15Engine,
    Placement,
    check_checkpoint,
    load_pipeline,
    text_encoder_headroom,
)
from framecast.engines.hunyuan15.loader import availability, model_spec
from framecast.engines.hunyuan15.options import Options
from framecast.engines.hunyuan15.pipeline import OFFICIAL_VAE_TILING, FramecastHunyuan15Pipeline
from framecast.engines.hunyuan15.tiny import build_tiny_pipeline
from framecast.engines.hunyuan15.weights import (
    COMPONENTS,
    ModelSource,
    WeightsError,
    missing_files,
    resolve_model,
)
from framecast.errors import InputError
from framecast.models import hunyuan15_i2v as sizes
from framecast.models.hunyuan15_i2v import CHECKPOINTS, FPS
from framecast.models.hunyuan15_i2v import DEFAULT_CHECKPOINT as DEFAULT_MODEL
from framecast.settings import Settings

from .tiny_inputs import gradient_image

# Quoted text: the ByT5 glyph encoder runs too (it sees only text in quotes).
PROMPT = 'a red fox runs past a sign that says "open"'
W, H, FRAMES = 80, 48, 5


@pytest.fixture(scope="module")
def engine() -> Hunyuan15Engine:
    return Hunyuan15Engine.load(resolve_model("tiny-random"), device="cpu")


@pytest.fixture(scope="module")
def faithful() -> Hunyuan15Engine:
    """With diffusers' own attention (and its masks): the engine's plumbing (sizes, noise,
    options, hooks) must then give stock's video bit for bit."""
    return Hunyuan15Engine.load(resolve_model("tiny-random"), device="cpu", exact_speedups=False)


def same_video(ours: np.ndarray, theirs: np.ndarray, engine: Hunyuan15Engine) -> None:
    """Bitwise for the faithful engine; for the exact path, float rounding: a pixel may cross a
    rounding boundary, by one level at most."""
    if engine.metadata()["attention_mask"] == "stock":
        np.testing.assert_array_equal(ours, theirs)
        return
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert int(diff.max()) <= 1 and float(np.mean(diff > 0)) < 0.01


@pytest.fixture(params=["engine", "faithful"])
def either(request: pytest.FixtureRequest) -> Hunyuan15Engine:
    """The default engine (the exact path), then the faithful one."""
    engine: Hunyuan15Engine = request.getfixturevalue(request.param)
    return engine


@pytest.fixture(scope="module")
def image() -> PIL.Image.Image:
    return gradient_image()


def request(image: PIL.Image.Image, **options: Any) -> GenerationRequest:
    size = options.pop("size", (W, H))
    return GenerationRequest(
        image=image,
        prompt=options.pop("prompt", PROMPT),
        seed=options.pop("seed", 7),
        width=size[0],
        height=size[1],
        num_frames=options.pop("num_frames", FRAMES),
        fps=FPS,
        options={"num_inference_steps": 2, **options},
    )


def run(engine: Hunyuan15Engine, req: GenerationRequest, hooks: Any = None) -> np.ndarray:
    return np.stack(list(engine.generate(req, hooks or NullHooks())))


def stock(
    engine: Hunyuan15Engine,
    image: PIL.Image.Image,
    *,
    seed: int = 7,
    steps: int = 2,
    shift: float | None = None,
    guidance: float | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """diffusers' own pipeline on the same weights (a pipeline of its own: the engine's models
    carry its attention), called as its docs show, with the engine's starting noise; the
    original image, which it crops itself."""
    distilled = bool(engine.pipe.transformer.config.use_meanflow)
    pipe = HunyuanVideo15ImageToVideoPipeline(
        **build_tiny_pipeline(step_distilled=distilled).components
    )
    if shift is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, shift=shift)
    if guidance is not None:
        pipe.guider = pipe.guider.new(guidance_scale=guidance)
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    noise = engine.pipe.starting_noise(
        seed, width=W, height=H, num_frames=FRAMES, device=torch.device("cpu")
    )
    out: np.ndarray = pipe(
        image=image,
        prompt=PROMPT,
        num_frames=FRAMES,
        num_inference_steps=steps,
        latents=noise,
        output_type="np",
        **kwargs,
    ).frames[0]
    return (out * 255).round().astype(np.uint8)


class Recorder:
    def __init__(self, cancel_at: int | None = None) -> None:
        self.events: list[tuple[str, int, int]] = []
        self.cancel_at = cancel_at

    def progress(self, step: int, total: int, phase: str) -> None:
        self.events.append((phase, step, total))

    def raise_if_cancelled(self) -> None:
        if self.cancel_at is not None and ("denoising", self.cancel_at, 3) in self.events:
            raise Cancelled("cancelled by the client")


def count_passes(engine: Hunyuan15Engine) -> tuple[list[int], Any]:
    calls: list[int] = []
    handle = engine.pipe.transformer.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls, handle


# -- parity with stock diffusers ----------------------------------------------------------------


def test_default_request_equals_the_stock_pipeline(
    either: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    engine = either
    ours = run(engine, request(image))
    assert ours.shape == (FRAMES, H, W, 3) and ours.dtype == np.uint8
    same_video(ours, stock(engine, image), engine)


def test_options_match_stock_with_the_same_settings(
    either: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    engine = either
    ours = run(engine, request(image, flow_shift=9.0, guidance_scale=3.0, negative_prompt="blur"))
    theirs = stock(engine, image, shift=9.0, guidance=3.0, negative_prompt="blur")
    same_video(ours, theirs, engine)
    assert not np.array_equal(ours, run(engine, request(image)))


def test_guidance_1_is_one_pass_per_step_and_matches_stock(
    either: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    engine = either
    calls, handle = count_passes(engine)
    try:
        ours = run(engine, request(image, guidance_scale=1.0))
    finally:
        handle.remove()
    assert len(calls) == 2
    same_video(ours, stock(engine, image, guidance=1.0), engine)
    assert engine.describe(request(image, guidance_scale=1.0)).get("negative_prompt") is None


def test_step_distilled_checkpoint_defaults_and_parity(image: PIL.Image.Image) -> None:
    pipe = FramecastHunyuan15Pipeline(**build_tiny_pipeline(step_distilled=True).components)
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    distilled = Hunyuan15Engine(
        pipe, model="tiny-random", placement=Placement.choose("cpu", "none"), tiny=True
    )
    assert distilled.metadata()["checkpoint"]["distilled"] == "step"
    described = distilled.describe(request(image, num_inference_steps=None))
    assert described == {"num_inference_steps": 12, "guidance_scale": 1.0, "flow_shift": 7.0}
    calls, handle = count_passes(distilled)
    try:
        ours = run(distilled, request(image))
    finally:
        handle.remove()
    assert len(calls) == 2  # MeanFlow, no CFG: one pass per step
    same_video(ours, stock(distilled, image), distilled)


def test_same_seed_same_frames_other_seed_or_prompt_other_frames(
    engine: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    a = run(engine, request(image, seed=1))
    np.testing.assert_array_equal(a, run(engine, request(image, seed=1)))
    assert not np.array_equal(a, run(engine, request(image, seed=2)))
    assert not np.array_equal(a, run(engine, request(image, seed=1, prompt="a boat at dusk")))


def test_starting_noise_comes_from_a_cpu_generator(engine: Hunyuan15Engine) -> None:
    noise = engine.pipe.starting_noise(
        3, width=W, height=H, num_frames=9, device=torch.device("cpu")
    )
    expected = torch.randn((1, 4, 3, H // 16, W // 16), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(noise, expected, rtol=0, atol=0)


# -- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "frames"), [((80, 48), 5), ((48, 80), 9)])
def test_both_orientations_give_the_asked_shape(
    engine: Hunyuan15Engine, image: PIL.Image.Image, size: tuple[int, int], frames: int
) -> None:
    # 48x80 is one of the sizes the pipeline's own rule would shrink (to 48x64) from a crop.
    out = run(engine, request(image, size=size, num_frames=frames))
    assert out.shape == (frames, size[1], size[0], 3)


@pytest.mark.parametrize("resolution", list(sizes.BUCKET_BASE))
@pytest.mark.parametrize("aspect", sizes.ASPECT_RATIOS)
def test_video_size_is_what_the_stock_pipeline_makes_of_an_image_of_that_aspect_but_one(
    resolution: str, aspect: str
) -> None:
    # diffusers' one-sided rule and the official nearest-bucket one (test_hunyuan15_buckets.py)
    # agree on 9 of the 10 sizes; at 9:16 and 720p diffusers' is 720x1264, the official 720x1280.
    processor = HunyuanVideo15ImageProcessor(vae_scale_factor=16)
    w, h = (int(p) * 300 for p in aspect.split(":"))
    stock_h, stock_w = processor.calculate_default_height_width(h, w, sizes.BUCKET_BASE[resolution])
    official = (stock_w, stock_h)
    if (resolution, aspect) == ("720p", "9:16"):
        assert official == (720, 1264)
        official = (720, 1280)
    assert sizes.video_size(resolution, aspect) == official
    assert sizes.image_video_size(resolution, w, h) == official
    assert sizes.resolution_of(*official) == resolution


DRIFTING = {("480p", "9:16"), ("480p", "3:4"), ("720p", "9:16"), ("720p", "4:3")}


@pytest.mark.parametrize("resolution", list(sizes.BUCKET_BASE))
@pytest.mark.parametrize("aspect", sizes.ASPECT_RATIOS)
def test_an_image_cropped_to_the_video_size_keeps_it_once_the_pipeline_pins_it(
    engine: Hunyuan15Engine, resolution: str, aspect: str
) -> None:
    width, height = sizes.video_size(resolution, aspect)
    processor = engine.pipe.video_processor
    base = sizes.BUCKET_BASE[resolution]
    # The stock rule applied again to the crop: a no-op for most sizes, one grid step smaller
    # for four (a 480x848 crop gives 480x832), which is why the pipeline pins the size.
    again = processor.calculate_default_height_width(height, width, base)[::-1]
    assert (again != (width, height)) == ((resolution, aspect) in DRIFTING)
    with engine.pipe.hooked(width=width, height=height, on_step=lambda *_: None):
        assert processor.calculate_default_height_width(height, width, base) == (height, width)
    assert processor.calculate_default_height_width(height, width, base)[::-1] == again


@pytest.mark.parametrize("base", [64, 640, 960])
def test_the_buckets_are_the_stock_ones_and_the_closest_is_never_farther(base: int) -> None:
    # diffusers' generate_crop_size_list is the official one verbatim; its pick of a bucket is
    # not (it looks on one side of the image's ratio only), so ours is as near or nearer.
    official = generate_crop_size_list(base_size=base, patch_size=16)  # type: ignore[no-untyped-call]
    assert list(sizes.buckets(base)) == official
    processor = HunyuanVideo15ImageProcessor(vae_scale_factor=16)
    for w in range(100, 2000, 37):
        for h in (100, 333, 720, 1080, 1999):
            stock_h, stock_w = processor.calculate_default_height_width(h, w, base)
            ours_w, ours_h = sizes.closest_bucket(base, w, h)
            assert abs(round(ours_h / ours_w, 5) - h / w) <= abs(
                round(stock_h / stock_w, 5) - h / w
            )


def test_frame_rule() -> None:
    sizes.check_num_frames(sizes.DEFAULT_FRAMES)
    sizes.check_num_frames(sizes.MAX_FRAMES)
    for bad in (sizes.MIN_FRAMES - 4, 120, sizes.MAX_FRAMES + 4):
        with pytest.raises(ValueError, match="4n\\+1"):
            sizes.check_num_frames(bad)
    with pytest.raises(ValueError, match="resolution"):
        sizes.video_size("1080p", "16:9")


# -- progress, cancel, metadata ------------------------------------------------------------------


def test_progress_for_every_step_and_each_phase(
    engine: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    hooks = Recorder()
    run(engine, request(image, num_inference_steps=3), hooks)
    assert hooks.events == [
        ("encoding", 0, 1),
        ("encoding", 1, 1),
        ("denoising", 1, 3),
        ("denoising", 2, 3),
        ("denoising", 3, 3),
        ("decoding", 0, 1),
        ("decoding", 1, 1),
    ]


def test_cancel_stops_at_that_step_and_the_next_request_is_unaffected(
    engine: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    before = run(engine, request(image))
    hooks = Recorder(cancel_at=1)
    calls, handle = count_passes(engine)
    try:
        with pytest.raises(Cancelled):
            run(engine, request(image, num_inference_steps=3), hooks)
    finally:
        handle.remove()
    assert hooks.events[-1] == ("denoising", 1, 3)
    assert len(calls) == 2  # step 1's two CFG passes; no step 2, no decode
    assert "step" not in vars(engine.pipe.scheduler)  # the hook is gone
    np.testing.assert_array_equal(run(engine, request(image)), before)


def test_out_of_memory_is_the_engines_typed_error_and_the_next_request_runs(
    engine: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    """torch's error becomes EngineOutOfMemory (the worker fails the request with
    out_of_memory by its type, knowing nothing of torch); nothing of it stays behind."""
    before = run(engine, request(image))

    def oom_once(*_: Any) -> None:
        handle.remove()
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    handle = engine.pipe.transformer.register_forward_pre_hook(oom_once)
    with pytest.raises(EngineOutOfMemory) as raised:
        run(engine, request(image))
    assert raised.value.code == "out_of_memory" and "smaller resolution" in raised.value.message
    assert isinstance(raised.value.__cause__, torch.OutOfMemoryError)
    np.testing.assert_array_equal(run(engine, request(image)), before)


def test_metadata_says_loudly_that_the_tiny_model_is_not_the_real_one(
    engine: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    meta = engine.metadata()
    assert meta["engine"] == "hunyuan" and meta["model"] == "tiny-random"
    assert meta["pipeline"] == "HunyuanVideo 1.5 image-to-video"
    assert meta["checkpoint"] == {"resolution": None, "distilled": None, "official": False}
    assert (meta["device"], meta["dtype"], meta["offload"]) == ("cpu", "float32", "none")
    assert meta["path"] == "exact" and meta["compiled"] is False
    assert meta["tiny_random"] is True and "noise" in meta["warning"]
    assert engine.resolutions == ("480p", "720p")
    assert engine.describe(request(image, num_inference_steps=None)) == {
        "num_inference_steps": 50,
        "guidance_scale": 6.0,
        "flow_shift": 5.0,
        "negative_prompt": "",
    }


def test_options_default_to_the_official_480p_settings() -> None:
    options = Options.of(request(PIL.Image.new("RGB", (8, 8)), num_inference_steps=None))
    assert options == Options(50, 6.0, 5.0, "")
    with pytest.raises(InputError, match="num_inference_steps"):
        Options.of(request(PIL.Image.new("RGB", (8, 8)), num_inference_steps=0))


def test_geometry_the_model_cannot_take_is_an_input_error(
    engine: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    with pytest.raises(InputError, match="multiples of 16"):
        run(engine, request(image, size=(72, 48)))
    with pytest.raises(InputError, match="4n\\+1"):
        run(engine, request(image, num_frames=6))
    # A real checkpoint runs at its own resolution only, as the official code.
    real = Hunyuan15Engine(engine.pipe, model=DEFAULT_MODEL, placement=engine.placement)
    real.resolution = "480p"
    with pytest.raises(InputError, match="720p_i2v"):
        run(real, request(image, size=(1280, 720)))


def test_building_the_tiny_model_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    build_tiny_pipeline()
    assert torch.equal(state, torch.random.get_rng_state())


# -- checkpoints and weights ---------------------------------------------------------------------


def test_a_text_to_video_checkpoint_is_refused_before_its_weights_load(tmp_path: Path) -> None:
    folder = tmp_path / "transformer"
    folder.mkdir()
    (folder / "config.json").write_text(
        '{"_class_name": "HunyuanVideo15Transformer3DModel", "in_channels": 65, '
        '"out_channels": 32, "task_type": "t2v"}'
    )
    source = ModelSource("directory", "HunyuanVideo-1.5-480p_t2v", tmp_path)
    with pytest.raises(WeightsError, match=r"task_type='t2v'.*FRAMECAST_HUNYUAN15_MODEL"):
        load_pipeline(source, Placement.choose("cpu", "none"))
    check_checkpoint({"task_type": "i2v", "in_channels": 65, "out_channels": 32}, "ok")


def test_the_official_checkpoints() -> None:
    assert DEFAULT_MODEL == "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v"
    table = {
        c.version: (c.num_inference_steps, c.guidance_scale, c.flow_shift) for c in CHECKPOINTS
    }
    assert table == {
        "480p_i2v": (50, 6.0, 5.0),
        "720p_i2v": (50, 6.0, 7.0),
        "480p_i2v_distilled": (50, 1.0, 5.0),
        "720p_i2v_distilled": (50, 1.0, 7.0),
        "480p_i2v_step_distilled": (12, 1.0, 7.0),
    }
    assert all(c.repo_id.endswith(c.version) for c in CHECKPOINTS)


def fake_model(root: Path) -> Path:
    """The file layout of a hunyuanvideo-community 1.5 I2V pipeline, with empty files."""
    root.mkdir()
    (root / "model_index.json").write_text(
        json.dumps(
            {"_class_name": "HunyuanVideo15ImageToVideoPipeline"}
            | {name: ["diffusers", "Class"] for name in COMPONENTS}
        )
    )
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "image_encoder"):
        (root / name).mkdir()
        (root / name / "config.json").write_text("{}")
        (root / name / "model.safetensors").write_bytes(b"")
    for name, config in (
        ("scheduler", "scheduler_config.json"),
        ("guider", "guider_config.json"),
        ("tokenizer", "tokenizer.json"),
        ("tokenizer_2", "tokenizer_config.json"),  # ByT5: no vocabulary file
        ("feature_extractor", "preprocessor_config.json"),
    ):
        (root / name).mkdir()
        (root / name / config).write_text("{}")
    return root


def test_weights_resolution_checks_this_pipelines_components(tmp_path: Path) -> None:
    model = fake_model(tmp_path / "hv15")
    assert missing_files(model) == []
    assert resolve_model(str(model)).path == model.resolve()
    assert resolve_model("tiny-random").is_tiny
    (model / "guider" / "guider_config.json").unlink()
    (model / "image_encoder" / "model.safetensors").unlink()
    assert missing_files(model) == [
        "guider/guider_config.json",
        "image_encoder/weights (*.safetensors)",
    ]
    with pytest.raises(WeightsError, match=r"FRAMECAST_HUNYUAN15_MODEL=.*image-to-video"):
        resolve_model(str(model))


def test_the_tiny_model_setting_of_the_i2v_model_selects_the_tiny_15_model_too() -> None:
    settings = Settings(hunyuan_model="tiny-random")
    assert model_spec(settings) == "tiny-random"
    assert availability(settings) is None
    # Its own setting, when given, wins.
    assert model_spec(Settings(hunyuan_model="tiny-random", hunyuan15_model="/x")) == "/x"
    assert model_spec(Settings(hunyuan15_model=DEFAULT_MODEL)) == DEFAULT_MODEL


def test_a_saved_tiny_pipeline_is_complete_and_loads_with_the_official_precisions(
    tmp_path: Path, engine: Hunyuan15Engine, image: PIL.Image.Image
) -> None:
    folder = tmp_path / "hv15"
    engine.pipe.save_pretrained(folder)
    assert missing_files(folder) == []
    source = resolve_model(str(folder))
    # A GPU's precisions, loaded on the CPU: each component as the official code has it.
    gpu_like = Placement(
        torch.device("cpu"), "none", torch.bfloat16, torch.float16, torch.float32, True
    )
    pipe = load_pipeline(source, gpu_like)
    assert pipe.transformer.dtype == torch.bfloat16
    assert pipe.vae.dtype == pipe.text_encoder.dtype == pipe.image_encoder.dtype == torch.float16
    assert pipe.text_encoder_2.dtype == torch.float32
    assert pipe.vae.use_tiling  # the real models decode in tiles, the official ones
    assert pipe.vae.tile_overlap_factor == OFFICIAL_VAE_TILING["tile_overlap_factor"]
    loaded = Hunyuan15Engine.load(source, device="cpu")
    assert loaded.metadata()["model"] == str(folder)
    np.testing.assert_array_equal(run(loaded, request(image)), run(engine, request(image)))


# -- GPU memory ---------------------------------------------------------------------------------


def on_a_gpu_of(gib: float) -> Hunyuan15Engine:
    """The tiny engine, checked as if it ran the real model on a GPU of ``gib`` GiB (the check
    is off on the CPU and for the tiny model itself)."""
    checked = Hunyuan15Engine.load(resolve_model("tiny-random"), device="cpu")
    assert checked.gpu_memory is None
    checked.gpu_memory = int(gib * memory.GiB)
    return checked


def test_a_request_too_large_for_the_gpu_fails_before_it_starts(image: PIL.Image.Image) -> None:
    checked = on_a_gpu_of(40)
    calls, handle = count_passes(checked)
    try:
        with pytest.raises(InputError) as caught:
            run(checked, request(image, size=(1280, 720), num_frames=241))
    finally:
        handle.remove()
    assert calls == []  # not a step, not an encode
    message = caught.value.message
    assert caught.value.details["field"] == "num_frames" and "\n" not in message
    assert message.startswith("HunyuanVideo 1.5 at 1280x720, 241 frames, FRAMECAST_OFFLOAD=none")
    # What would fit, by the same arithmetic.
    assert re.search(r"it would fit with FRAMECAST_OFFLOAD=model or at most \d+ frames$", message)
    assert run(checked, request(image)).shape == (FRAMES, H, W, 3)  # a small one runs


def test_a_gpu_too_small_for_any_request_stops_the_worker_at_start() -> None:
    with pytest.raises(EngineUnavailable) as caught:
        on_a_gpu_of(16).check_fits_at_all()
    assert "FRAMECAST_MEMORY_CHECK=false" in str(caught.value) and "\n" not in str(caught.value)
    on_a_gpu_of(80).check_fits_at_all()


def test_the_text_encoder_headroom_is_the_computed_one(engine: Hunyuan15Engine) -> None:
    # The tiny model's bucket base is neither checkpoint's: it counts as 720p, the larger.
    expected = memory.text_encoder_headroom(memory.worst_size("720p"), sizes.MAX_FRAMES)
    assert text_encoder_headroom(engine.pipe) == expected
    assert 30 * memory.GiB < expected < 32 * memory.GiB
