"""HunyuanVideo 1.5's super-resolution stage on the tiny model: the sizes, the first latent and
condition as the official SR pipeline computes them (written out here from
``hyvideo/pipelines/hunyuan_video_sr_pipeline.py``, independently of engines/hunyuan15/sr.py),
the low-resolution latent dropping out below the noise strength, the engine end to end (the
result's size, frames, metadata and progress), and the official upsampler layout."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("diffusers")

import PIL.Image
import torch
from safetensors.torch import save_file

from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.hunyuan15 import sr
from framecast.engines.hunyuan15.engine import Hunyuan15Engine
from framecast.engines.hunyuan15.tiny import build_tiny_pipeline, build_tiny_sr
from framecast.engines.hunyuan15.upsampler import Upsampler1080p, load_upsampler
from framecast.engines.hunyuan15.weights import resolve_model, sr_missing_files
from framecast.errors import InputError
from framecast.models.hunyuan15_i2v import (
    FPS,
    SIZES,
    SR_CHECKPOINTS,
    ImageToVideo15Input,
    SuperResolution,
    sr_size,
)

from .test_hunyuan15_engine import Recorder
from .tiny_inputs import gradient_image

SR720 = SR_CHECKPOINTS[0]
SMALL = replace(SR720, bucket_base=128)
"""The 720p stage with a small bucket base, so the tiny model's SR runs at a few dozen pixels."""


def official_crop_sizes(base: int, patch: int = 16) -> list[tuple[int, int]]:
    """``generate_crop_size_list`` as the official data_utils.py has it."""
    cells = round((base / patch) ** 2)
    sizes, wp, hp = [], cells, 1
    while wp > 0:
        if max(wp, hp) / min(wp, hp) <= 4.0:
            sizes.append((wp * patch, hp * patch))
        if (hp + 1) * wp <= cells:
            hp += 1
        else:
            wp -= 1
    return sizes


def official_bucket_map(lr: tuple[int, int], lr_base: int, hr_base: int) -> tuple[int, int]:
    """The official ``BucketMap``: the high-resolution bucket of the nearest w/h ratio."""
    hr = official_crop_sizes(hr_base)
    assert lr in official_crop_sizes(lr_base)
    ratios = np.array([w / h for w, h in hr])
    return hr[int(np.abs(ratios - lr[0] / lr[1]).argmin())]


@pytest.mark.parametrize("checkpoint", SR_CHECKPOINTS)
def test_sr_sizes_are_the_official_bucket_map(checkpoint: Any) -> None:
    base = {"480p": 640, "720p": 960}[checkpoint.base_resolution]
    for (_, resolution), size in SIZES.items():
        if resolution == checkpoint.base_resolution:
            expected = official_bucket_map(size, base, checkpoint.bucket_base)
            assert sr_size(*size, checkpoint) == expected
    assert sr_size(848, 480, SR720) == (1280, 720)


def test_the_input_asks_for_the_sr_size_and_stage() -> None:
    plain = ImageToVideo15Input(prompt="p", image="data:,")
    upscaled = ImageToVideo15Input(prompt="p", image="data:,", super_resolution=True)
    assert (plain.size, plain.required_stages) == ((848, 480), ())
    assert (upscaled.size, upscaled.required_stages) == ((1280, 720), ("720p_sr",))
    stage = upscaled.model_options()["super_resolution"]
    assert stage == SuperResolution(SR720, (848, 480))
    assert plain.model_options()["super_resolution"] is None


@pytest.fixture(scope="module")
def pipe() -> Any:
    from framecast.engines.hunyuan15.pipeline import FramecastHunyuan15Pipeline

    return FramecastHunyuan15Pipeline(**build_tiny_pipeline().components)


def test_first_latent_and_condition_are_the_official_ones(pipe: Any) -> None:
    models = build_tiny_sr(SMALL)
    width, height, frames, seed = 96, 64, 5, 11
    lq = torch.randn(1, 4, 2, 3, 4, generator=torch.Generator().manual_seed(0))
    image = pipe.video_processor.resize(
        gradient_image(), height=height, width=width, resize_mode="crop"
    )
    got = sr.prepare(
        pipe, models, lq, image, seed=seed, width=width, height=height, num_frames=frames,
        device=torch.device("cpu"),
    )  # fmt: skip

    # The official steps, one by one (hunyuan_video_sr_pipeline.py __call__).
    g = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn((1, 4, 2, height // 16, width // 16), generator=g)  # prepare_latents
    b, c, f, h, w = lq.shape  # rearrange "b c f h w -> (b f) c h w", bilinear, back
    flat = lq.transpose(1, 2).reshape(b * f, c, h, w)
    flat = torch.nn.functional.interpolate(
        flat, size=(height // 16, width // 16), mode="bilinear", align_corners=False
    )
    up = models.upsampler(flat.reshape(b, f, c, height // 16, width // 16).transpose(1, 2))
    t = 1000.0 * 0.7  # add_noise_to_lq(lq_latents, 0.7): randn_like, ours from the seed
    noise = torch.randn(up.shape, generator=g)
    lq_noised = (1 - t / 1000.0) * up + (t / 1000.0) * noise
    with torch.no_grad():  # get_image_condition_latents: the VAE's mode, scaled
        pixels = pipe.video_processor.preprocess(image, height=height, width=width).unsqueeze(2)
        vae = pipe.vae
        tiled, vae.use_tiling = vae.use_tiling, False
        image_latent = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        vae.use_tiling = tiled
    cond = image_latent.repeat(1, 1, f, 1, 1)  # _prepare_cond_latents (i2v)
    cond[:, :, 1:] = 0.0
    mask = torch.zeros(1, 1, f, height // 16, width // 16)
    mask[:, :, 0] = 1.0  # get_task_mask("i2v")
    lq_cond = torch.cat([lq_noised, torch.ones(1, 1, f, height // 16, width // 16)], dim=1)
    condition = torch.cat([cond, mask, lq_cond], dim=1)
    zero = condition.clone()
    zero[:, c + 1 : 2 * c + 1] = 0
    zero[:, 2 * c + 1] = 0
    first_input = torch.cat([latents, condition], dim=1)

    torch.testing.assert_close(torch.cat([got.latents, got.condition], dim=1), first_input)
    torch.testing.assert_close(got.bare_condition, zero)
    assert first_input.shape[1] == models.transformer.config["in_channels"]


def test_the_low_resolution_latent_drops_out_below_the_noise_strength(pipe: Any) -> None:
    models = build_tiny_sr(SMALL)
    lq = torch.randn(1, 4, 2, 3, 4)
    image = pipe.video_processor.resize(gradient_image(), height=64, width=96, resize_mode="crop")
    inputs = sr.prepare(
        pipe, models, lq, image, seed=1, width=96, height=64, num_frames=5,
        device=torch.device("cpu"),
    )  # fmt: skip
    from framecast.engines.hunyuan15.pipeline import encode_conditions

    conditions = encode_conditions(pipe, "a fox", None, torch.device("cpu"))
    seen: list[tuple[float, bool]] = []

    def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        lq_part = kwargs["hidden_states"][:, 2 * 4 + 1 :]
        seen.append((float(kwargs["timestep"][0]), bool(lq_part.abs().sum() > 0)))

    hook = models.transformer.register_forward_pre_hook(record, with_kwargs=True)
    steps: list[int] = []
    try:
        with torch.inference_mode():
            out = sr.denoise(
                models, inputs, conditions, pipe.scheduler.config, lambda d, _t: steps.append(d)
            )
    finally:
        hook.remove()
    assert out.shape == inputs.latents.shape
    assert steps == list(range(1, SR720.num_inference_steps + 1))
    # shift 2 over 6 steps: 1000, 909, 800, 667, 500, 286; the official switch is t < 700.
    assert [round(t) for t, _ in seen] == [1000, 909, 800, 667, 500, 286]
    assert [present for _, present in seen] == [True, True, True, False, False, False]


@pytest.fixture(scope="module")
def engine() -> Hunyuan15Engine:
    return Hunyuan15Engine.load(resolve_model("tiny-random"), device="cpu")


def sr_request(base: tuple[int, int], checkpoint: Any, **options: Any) -> GenerationRequest:
    width, height = sr_size(*base, checkpoint)
    return GenerationRequest(
        image=gradient_image(),
        prompt="a fox",
        seed=3,
        width=width,
        height=height,
        num_frames=5,
        fps=FPS,
        options={
            "num_inference_steps": 1,
            "super_resolution": SuperResolution(checkpoint, base),
            **options,
        },
    )


def test_engine_runs_the_stage_and_records_it(engine: Hunyuan15Engine) -> None:
    assert engine.stages() == ("720p_sr", "1080p_sr")
    req = sr_request((80, 48), SMALL)
    hooks = Recorder()
    frames = np.stack(list(engine.generate(req, hooks)))
    assert frames.shape == (5, req.height, req.width, 3)
    phases = [p for p, *_ in hooks.events]
    assert (
        phases.index("denoising_base") < phases.index("super_resolution") < phases.index("decoding")
    )
    assert (
        "super_resolution",
        SR720.num_inference_steps,
        SR720.num_inference_steps,
    ) in hooks.events
    described = engine.describe(req)
    assert described["super_resolution"]["checkpoint"] == "720p_sr_distilled"
    assert described["super_resolution"]["from"] == "80x48"
    assert described["super_resolution"]["num_inference_steps"] == 6
    assert described["super_resolution"]["flow_shift"] == 2.0
    assert set(described["stage_seconds"]) == {"base", "super_resolution", "decoding"}


def test_a_size_that_is_not_the_stages_is_refused(engine: Hunyuan15Engine) -> None:
    asked = sr_request((80, 48), SMALL)
    req = replace(asked, width=asked.width + 16)
    with pytest.raises(InputError, match="super_resolution from 80x48 makes"):
        list(engine.generate(req, NullHooks()))


def test_no_sr_weights_no_stage(tmp_path: Path) -> None:
    from framecast.engines.hunyuan15.sr_engine import load_stages

    assert load_stages(str(tmp_path), ("480p",), False, torch.float32) == {}
    assert load_stages("off", ("480p",), False, torch.float32) == {}
    assert "transformer/720p_sr_distilled/config.json" in sr_missing_files(tmp_path, SR720)


def test_the_official_upsampler_layout_loads(tmp_path: Path) -> None:
    # The official 1080p upsampler's ResNet blocks name their shortcut nin_shortcut.
    config = {"_class_name": "SRTo1080pUpsampler", "z_channels": 4, "out_channels": 4,
              "block_out_channels": [8, 16], "num_res_blocks": 1}  # fmt: skip
    reference = Upsampler1080p(4, 4, (8, 16), 1)
    state = {
        k.replace(".conv_shortcut.", ".nin_shortcut."): v.clone()
        for k, v in reference.state_dict().items()
    }
    assert any(".nin_shortcut." in k for k in state)
    folder = tmp_path / "upsampler" / "1080p_sr_distilled"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    loaded = load_upsampler(folder)
    x = torch.randn(1, 4, 2, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x))


@pytest.mark.slow
def test_a_480p_16_9_request_with_super_resolution_is_a_720p_video(engine: Hunyuan15Engine) -> None:
    # The acceptance case at its real size: the tiny model's decode of 1280x720 is the cost.
    params = ImageToVideo15Input(
        prompt="a fox", image="data:,", num_frames=5, num_inference_steps=1, super_resolution=True
    )
    req = params.generation_request(PIL.Image.new("RGB", (960, 540), (180, 40, 40)))
    # Decoded whole: in the official 256-pixel tiles this test took 47 s on 2 cores, whole 26 s,
    # and the tiles are test_hunyuan15_vae_tiles.py's subject.
    engine.pipe.vae.use_tiling = False
    try:
        frames = list(engine.generate(req, NullHooks()))
    finally:
        engine.pipe.vae.use_tiling = True
    assert len(frames) == 5
    assert {f.shape for f in frames} == {(720, 1280, 3)}
    assert engine.describe(req)["super_resolution"]["to"] == "1280x720"
