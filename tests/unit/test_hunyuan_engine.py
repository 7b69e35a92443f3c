"""The hunyuan engine on the tiny random model: parity with diffusers, the official departures,
determinism, shapes, progress and cancel.

Sizes are small (64x48, 5 frames, 2-3 steps) so the whole file runs in seconds on a CPU; the
API-sized run (360p) is in the acceptance tests.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest

pytest.importorskip("diffusers")

import PIL.Image
import torch

# Imported from its module: the top-level name is a placeholder to a type checker.
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import (
    HunyuanVideoImageToVideoPipeline,
)

from framecast.engines.base import Cancelled, GenerationRequest, NullHooks
from framecast.engines.hunyuan.engine import (
    HunyuanEngine,
    Placement,
    check_checkpoint,
    load_pipeline,
)
from framecast.engines.hunyuan.pipeline import (
    IMAGE_EMBED_INTERLEAVE,
    enable_official_vae_tiling,
    encode_conditions,
)
from framecast.engines.hunyuan.weights import ModelSource, WeightsError, resolve_model
from framecast.images import cover_fit
from framecast.models.hunyuan_i2v import FPS

from .tiny_inputs import gradient_image

PROMPT = "a red fox runs across the snow"
W, H, FRAMES = 64, 48, 5


@pytest.fixture(scope="module")
def engine() -> HunyuanEngine:
    # Without the exact speedups (cut padding, no mask), which change the last bits of a
    # float: this engine must equal diffusers' stock pipeline to the bit. The speedups have
    # their own tests against it (test_hunyuan_speedups.py).
    return HunyuanEngine.load(resolve_model("tiny-random"), exact_speedups=False)


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


def run(engine: HunyuanEngine, req: GenerationRequest, hooks: Any = None) -> np.ndarray:
    return np.stack(list(engine.generate(req, hooks or NullHooks())))


def stock(
    engine: HunyuanEngine,
    image: PIL.Image.Image,
    *,
    seed: int = 7,
    shift: float | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """diffusers' own pipeline on the same weights, called as its docs show for this model,
    with the image split as the official code does: LLaVA encodes the original image, the VAE
    the cover-cropped one (stock diffusers gives its one ``image`` to both)."""
    pipe = HunyuanVideoImageToVideoPipeline(**engine.pipe.components)
    with torch.inference_mode():
        # diffusers annotates `image` as a tensor; its CLIP image processor takes a PIL image.
        embeds, pooled, mask = pipe.encode_prompt(
            image=image,  # type: ignore[arg-type]
            prompt=PROMPT,
            device=torch.device("cpu"),
            image_embed_interleave=4,
        )
    pipe.scheduler = engine._base_scheduler  # the engine swaps its own per request
    if shift is not None:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, shift=shift)
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    out: np.ndarray = pipe(
        image=cover_fit(image, W, H),
        prompt_embeds=embeds,
        pooled_prompt_embeds=pooled,
        prompt_attention_mask=mask,
        height=H,
        width=W,
        num_frames=FRAMES,
        num_inference_steps=2,
        guidance_scale=6.0,
        generator=torch.Generator().manual_seed(seed),
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


def first_transformer_input(engine: HunyuanEngine, req: GenerationRequest) -> torch.Tensor:
    seen: list[torch.Tensor] = []

    def grab(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        seen.append(kwargs["hidden_states"].clone())

    handle = engine.pipe.transformer.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        run(engine, req)
    finally:
        handle.remove()
    return seen[0]


def test_default_request_equals_the_stock_pipeline_bitwise(
    engine: HunyuanEngine, image: PIL.Image.Image
) -> None:
    ours = run(engine, request(image))
    assert ours.shape == (FRAMES, H, W, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, stock(engine, image))


def test_flow_shift_is_per_request_and_matches_stock_with_that_shift(
    engine: HunyuanEngine, image: PIL.Image.Image
) -> None:
    ours = run(engine, request(image, flow_shift=17.0))
    np.testing.assert_array_equal(ours, stock(engine, image, shift=17.0))
    assert not np.array_equal(ours, run(engine, request(image)))


def test_stability_off_starts_from_pure_noise_with_shift_17(
    engine: HunyuanEngine, image: PIL.Image.Image
) -> None:
    noise = torch.randn((1, 4, 2, H // 8, W // 8), generator=torch.Generator().manual_seed(7))
    on = first_transformer_input(engine, request(image, i2v_stability=True))
    off = first_transformer_input(engine, request(image, i2v_stability=False))
    # Frame 0 is the clean image latent in both (token_replace); the rest is what differs.
    torch.testing.assert_close(on[:, :, :1], off[:, :, :1], rtol=0, atol=0)
    torch.testing.assert_close(off[:, :, 1:], noise[:, :, 1:], rtol=0, atol=0)
    mixed = noise[:, :, 1:] * 0.999 + on[:, :, :1] * 0.001
    torch.testing.assert_close(on[:, :, 1:], mixed)
    assert engine.describe(request(image, i2v_stability=False))["flow_shift"] == 17.0


def test_negative_prompt_is_encoded_with_the_official_interleave(
    engine: HunyuanEngine, image: PIL.Image.Image
) -> None:
    with torch.inference_mode():
        c = encode_conditions(
            engine.pipe, cover_fit(image, W, H), PROMPT, "blurry", torch.device("cpu")
        )
        # What diffusers would do with negative_prompt="blurry": every 2nd image token.
        stock_neg, _, _ = engine.pipe.encode_prompt(
            image=PIL.Image.new("RGB", (W, H)),  # type: ignore[arg-type]  # as above
            prompt="blurry",
            device=torch.device("cpu"),
        )
    assert c.negative_prompt_embeds is not None
    assert c.negative_prompt_embeds.shape == c.prompt_embeds.shape
    image_tokens = 576 // IMAGE_EMBED_INTERLEAVE
    assert stock_neg.shape[1] - c.negative_prompt_embeds.shape[1] == 576 // 2 - image_tokens


def test_true_cfg_runs_the_stock_loop_with_official_negative_embeddings(
    engine: HunyuanEngine, image: PIL.Image.Image
) -> None:
    ours = run(engine, request(image, cfg_scale=3.0, negative_prompt="blurry"))
    with torch.inference_mode():
        c = encode_conditions(engine.pipe, image, PROMPT, "blurry", torch.device("cpu"))
    theirs = stock(
        engine,
        image,
        true_cfg_scale=3.0,
        negative_prompt_embeds=c.negative_prompt_embeds,
        negative_pooled_prompt_embeds=c.negative_pooled_prompt_embeds,
        negative_prompt_attention_mask=c.negative_prompt_attention_mask,
    )
    np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(ours, run(engine, request(image)))


def test_same_seed_same_frames_other_seed_other_frames(
    engine: HunyuanEngine, image: PIL.Image.Image
) -> None:
    a = run(engine, request(image, seed=1))
    np.testing.assert_array_equal(a, run(engine, request(image, seed=1)))
    assert not np.array_equal(a, run(engine, request(image, seed=2)))


def test_the_prompt_changes_the_video(engine: HunyuanEngine, image: PIL.Image.Image) -> None:
    a = run(engine, request(image))
    assert not np.array_equal(a, run(engine, request(image, prompt="a boat drifts at dusk")))


@pytest.mark.parametrize(("size", "frames"), [((64, 48), 5), ((48, 64), 9)])
def test_both_orientations_give_the_asked_shape(
    engine: HunyuanEngine, image: PIL.Image.Image, size: tuple[int, int], frames: int
) -> None:
    out = run(engine, request(image, size=size, num_frames=frames))
    assert out.shape == (frames, size[1], size[0], 3)


def test_progress_for_every_step_and_each_phase(
    engine: HunyuanEngine, image: PIL.Image.Image
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


def test_cancel_stops_at_that_step(engine: HunyuanEngine, image: PIL.Image.Image) -> None:
    hooks = Recorder(cancel_at=1)
    calls: list[int] = []
    handle = engine.pipe.transformer.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(Cancelled):
            run(engine, request(image, num_inference_steps=3), hooks)
    finally:
        handle.remove()
    assert hooks.events[-1] == ("denoising", 1, 3)
    assert len(calls) == 1  # no second transformer pass, no decode
    # The engine is usable again after a cancel.
    assert run(engine, request(image)).shape == (FRAMES, H, W, 3)


def test_geometry_the_model_cannot_take_is_an_input_error(
    engine: HunyuanEngine, image: PIL.Image.Image
) -> None:
    from framecast.errors import InputError

    with pytest.raises(InputError, match="multiples of 16"):
        run(engine, request(image, size=(60, 48)))
    with pytest.raises(InputError, match="4n\\+1"):
        run(engine, request(image, num_frames=6))


def test_metadata_says_loudly_that_the_tiny_model_is_not_the_real_one(
    engine: HunyuanEngine,
) -> None:
    meta = engine.metadata()
    assert meta["engine"] == "hunyuan" and meta["model"] == "tiny-random"
    assert meta["tiny_random"] is True and "noise" in meta["warning"]


def test_llava_sees_the_original_image_and_the_vae_the_cropped_one(
    engine: HunyuanEngine, image: PIL.Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []
    processor = engine.pipe.image_processor

    def spy(picture: PIL.Image.Image, **kwargs: Any) -> Any:
        seen.append(picture.size)
        return processor(picture, **kwargs)

    monkeypatch.setattr(engine.pipe, "image_processor", spy)
    vae_inputs: list[tuple[int, ...]] = []
    handle = engine.pipe.vae.encoder.register_forward_pre_hook(
        lambda _m, args: vae_inputs.append(tuple(args[0].shape))
    )
    try:
        run(engine, request(image))
    finally:
        handle.remove()
    assert seen == [image.size]  # 100x60, not the 64x48 crop
    assert [shape[-2:] for shape in vae_inputs] == [(H, W)]


def test_the_conditioning_image_is_encoded_whole_though_decoding_is_tiled(
    engine: HunyuanEngine,
) -> None:
    vae = engine.pipe.vae
    assert vae.use_tiling
    # Larger than a 256-pixel tile, so tiling would change the latent.
    picture = torch.rand(1, 3, 288, 320, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        _, conditioned = engine.pipe.prepare_latents(
            picture,
            1,
            4,
            288,
            320,
            5,
            torch.float32,
            torch.device("cpu"),
            torch.Generator().manual_seed(1),
            image_condition_type="token_replace",
        )
        tiled = vae.encode(picture[:, :, None]).latent_dist.mode()
        vae.disable_tiling()
        try:
            whole = vae.encode(picture[:, :, None]).latent_dist.mode()
        finally:
            vae.enable_tiling()
    assert vae.use_tiling  # switched back on for the decode
    assert not torch.equal(tiled, whole)
    torch.testing.assert_close(conditioned, whole * vae.config.scaling_factor, rtol=0, atol=0)


def test_decode_tiles_time_as_the_official_vae(engine: HunyuanEngine) -> None:
    vae = engine.pipe.vae
    assert (vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames) == (64, 48)
    # 61 frames are 16 latent frames: one official 64-frame tile, so the decode equals the
    # untiled one; diffusers' default 16-frame tiles would split and blend it.
    latents = torch.randn(1, 4, 16, 4, 4, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        ours = engine._decode(latents * vae.config.scaling_factor)
        vae.disable_tiling()
        try:
            whole = engine._decode(latents * vae.config.scaling_factor)
            vae.enable_tiling(tile_sample_min_num_frames=16, tile_sample_stride_num_frames=12)
            diffusers_default = engine._decode(latents * vae.config.scaling_factor)
        finally:
            enable_official_vae_tiling(vae)
    assert ours.shape == (61, 32, 32, 3)
    np.testing.assert_array_equal(ours, whole)
    assert not np.array_equal(ours, diffusers_default)


def official_temporal_tiles(vae: Any, z: torch.Tensor) -> torch.Tensor:
    """``temporal_tiled_decode`` of the official ``hyvideo/vae``, written out from its numbers
    (``sample_tsize`` 64 frames, overlap 0.25, 4 frames a latent frame): each tile decoded
    whole, then blended linearly into the one before."""
    tile = 64 // 4  # latent frames, plus the one a tile shares with the previous
    stride = int(tile * (1 - 0.25))  # 12 latent frames, 48 video frames
    blend = int(64 * 0.25)  # 16 video frames
    keep = 64 - blend
    pieces = []
    for i in range(0, z.shape[2], stride):
        decoded = vae.decoder(vae.post_quant_conv(z[:, :, i : i + tile + 1]))
        pieces.append(decoded if i == 0 else decoded[:, :, 1:])
    kept = [pieces[0][:, :, : keep + 1]]
    for before, this in pairwise(pieces):
        n = min(blend, before.shape[2], this.shape[2])
        for x in range(n):  # in place, as the official code: the next tile blends with this one
            this[:, :, x] = before[:, :, x - n] * (1 - x / n) + this[:, :, x] * (x / n)
        kept.append(this[:, :, :keep])
    return torch.cat(kept, dim=2)


def test_a_long_decode_blends_official_temporal_tiles(engine: HunyuanEngine) -> None:
    vae = engine.pipe.vae
    # 129 frames, the API's length, are 33 latent frames: tiles at latent frames 0, 12 and 24,
    # each blended over 16 frames into the one before.
    latents = torch.randn(1, 4, 33, 4, 4, generator=torch.Generator().manual_seed(6))
    scaled = latents * vae.config.scaling_factor
    calls = []
    tiled = vae._temporal_tiled_decode

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0].shape[2])
        return tiled(*args, **kwargs)

    vae._temporal_tiled_decode = spy
    try:
        with torch.inference_mode():
            ours = engine._decode(scaled)
            vae.use_framewise_decoding = False  # disable_tiling() leaves the temporal tiles on
            try:
                whole = engine._decode(scaled)
            finally:
                vae.use_framewise_decoding = True
            # The latents _decode gives the VAE, to the bit.
            z = scaled.to(vae.dtype) / engine.pipe.vae_scaling_factor
            video = official_temporal_tiles(vae, z)
    finally:
        del vae._temporal_tiled_decode
    assert calls == [33]  # the temporal tiles, and only in the tiled decode
    frames = engine.pipe.video_processor.postprocess_video(video, output_type="np")[0]
    expected = (frames * 255).round().astype(np.uint8)
    assert ours.shape == expected.shape == (129, 32, 32, 3)
    np.testing.assert_array_equal(ours, expected)
    # A causal VAE started afresh at each tile: the seams are not the untiled video's.
    assert not np.array_equal(ours, whole)


def test_a_latent_concat_checkpoint_is_refused_before_its_weights_load(tmp_path: Any) -> None:
    folder = tmp_path / "transformer"
    folder.mkdir()
    (folder / "config.json").write_text(
        '{"_class_name": "HunyuanVideoTransformer3DModel", "in_channels": 33, '
        '"out_channels": 16, "image_condition_type": "latent_concat"}'
    )
    source = ModelSource("directory", "HunyuanVideo-I2V-33ch", tmp_path)
    with pytest.raises(WeightsError, match=r"latent_concat.*33.*token_replace"):
        # No weights exist there: only the config check can stop it before from_pretrained.
        load_pipeline(source, Placement.choose("cpu", "none"))
    with pytest.raises(WeightsError, match="image_condition_type=None"):
        check_checkpoint({"in_channels": 16, "out_channels": 16}, "a text-to-video model")
    check_checkpoint(
        {"image_condition_type": "token_replace", "in_channels": 16, "out_channels": 16}, "ok"
    )
