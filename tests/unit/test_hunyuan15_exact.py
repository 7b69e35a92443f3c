"""HunyuanVideo 1.5's exact path on the tiny model: the padding cut, attention with no mask
(never a sequence-squared one), the same video as stock diffusers within float rounding, and
memory that grows with the tokens, not their square."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("diffusers")

import diffusers.models.transformers.transformer_hunyuan_video as v1_module
import diffusers.models.transformers.transformer_hunyuan_video15 as v15_module
import torch
from diffusers.models.autoencoders.autoencoder_kl_hunyuanvideo15 import HunyuanVideo15AttnBlock

# Imported from its module: the top-level name is a placeholder to a type checker.
from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5_image2video import (
    HunyuanVideo15ImageToVideoPipeline,
)

from framecast.engines import EngineUnavailable
from framecast.engines.base import GenerationRequest, NullHooks
from framecast.engines.hunyuan15 import loader
from framecast.engines.hunyuan15.engine import Hunyuan15Engine
from framecast.engines.hunyuan15.exact import ExactAttention, cut_padding
from framecast.engines.hunyuan15.pipeline import (
    Conditions,
    FramecastHunyuan15Pipeline,
    encode_conditions,
)
from framecast.engines.hunyuan15.tiny import build_tiny_pipeline
from framecast.engines.hunyuan15.vae_attention import (
    frame_causal_attention,
    install_frame_causal_attention,
)
from framecast.engines.hunyuan15.weights import resolve_model
from framecast.models.hunyuan15_i2v import FPS
from framecast.settings import Settings

from .live_bytes import LiveBytes
from .tiny_inputs import gradient_image

CPU = torch.device("cpu")
QUOTED = 'a red fox runs past a sign that says "open"'
PLAIN = "a red fox runs"
TINY = "tiny-random"


@pytest.fixture(scope="module")
def stock_pipe() -> HunyuanVideo15ImageToVideoPipeline:
    pipe = build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    return pipe


@pytest.fixture(scope="module")
def exact_pipe() -> HunyuanVideo15ImageToVideoPipeline:
    """The same weights as ``stock_pipe`` (one seed), with the exact path installed."""
    pipe = build_tiny_pipeline()
    ExactAttention(pipe.transformer)
    return pipe


def encoded(pipe: HunyuanVideo15ImageToVideoPipeline, prompt: str) -> Conditions:
    with torch.inference_mode():
        return encode_conditions(pipe, prompt, "blurry, low quality", CPU)


def inputs(c: Conditions, *, negative: bool = False) -> dict[str, torch.Tensor]:
    if negative:
        assert c.negative_prompt_embeds is not None
        assert c.negative_prompt_embeds_mask is not None
        assert c.negative_prompt_embeds_2 is not None
        assert c.negative_prompt_embeds_mask_2 is not None
        return {
            "encoder_hidden_states": c.negative_prompt_embeds,
            "encoder_attention_mask": c.negative_prompt_embeds_mask,
            "encoder_hidden_states_2": c.negative_prompt_embeds_2,
            "encoder_attention_mask_2": c.negative_prompt_embeds_mask_2,
        }
    return {
        "encoder_hidden_states": c.prompt_embeds,
        "encoder_attention_mask": c.prompt_embeds_mask,
        "encoder_hidden_states_2": c.prompt_embeds_2,
        "encoder_attention_mask_2": c.prompt_embeds_mask_2,
    }


def forward(
    pipe: HunyuanVideo15ImageToVideoPipeline,
    text: dict[str, torch.Tensor],
    latent: tuple[int, int, int] = (2, 3, 5),
    batch: int = 1,
) -> torch.Tensor:
    """One transformer pass on fixed random latents and image embeddings."""
    transformer = pipe.transformer
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(batch, transformer.config.in_channels, *latent, generator=generator)
    image_embeds = torch.randn(batch, 729, transformer.config.image_embed_dim, generator=generator)
    with torch.inference_mode():
        out: torch.Tensor = transformer(
            hidden_states=hidden,
            timestep=torch.full((batch,), 700.0),
            image_embeds=image_embeds,
            return_dict=False,
            **text,
        )[0]
    return out


@pytest.fixture
def attention_masks(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[torch.Tensor | None]]:
    """The mask of every attention call, by the processor that made it: ours (which hands
    diffusers' HunyuanVideo-I2V processor the call) or diffusers' 1.5 one."""
    seen: dict[str, list[torch.Tensor | None]] = {"ours": [], "stock": []}

    def recording(module: Any, name: str) -> None:
        dispatch = module.dispatch_attention_fn

        def record(*args: Any, **kwargs: Any) -> Any:
            seen[name].append(kwargs.get("attn_mask"))
            return dispatch(*args, **kwargs)

        monkeypatch.setattr(module, "dispatch_attention_fn", record)

    recording(v1_module, "ours")
    recording(v15_module, "stock")
    return seen


# -- the padding cut ---------------------------------------------------------------------------


def test_cut_keeps_every_valid_token_and_nothing_else(
    stock_pipe: HunyuanVideo15ImageToVideoPipeline,
) -> None:
    for prompt, glyphs in ((QUOTED, True), (PLAIN, False)):
        text = inputs(encoded(stock_pipe, prompt))
        cut, unpadded = cut_padding(text)
        assert unpadded
        for embeds, mask in (("encoder_hidden_states", "encoder_attention_mask"),
                             ("encoder_hidden_states_2", "encoder_attention_mask_2")):  # fmt: skip
            valid = text[mask][0].bool()
            assert cut[embeds].shape[1] == int(valid.sum()) < text[embeds].shape[1]
            assert bool(cut[mask].bool().all())
            torch.testing.assert_close(cut[embeds][0], text[embeds][0, valid], rtol=0, atol=0)
        # ByT5 sees only quoted text: a prompt without any keeps none of its 256 tokens.
        assert (cut["encoder_hidden_states_2"].shape[1] > 0) == glyphs


def test_a_batch_of_several_sequences_is_left_alone(
    stock_pipe: HunyuanVideo15ImageToVideoPipeline,
) -> None:
    text = inputs(encoded(stock_pipe, QUOTED))
    both = {name: torch.cat([t, t]) for name, t in text.items()}
    cut, unpadded = cut_padding(both)
    assert not unpadded and all(cut[name] is both[name] for name in both)


# -- the same computation ----------------------------------------------------------------------


@pytest.mark.parametrize("latent", [(2, 3, 5), (3, 4, 2)])
@pytest.mark.parametrize("prompt", [QUOTED, PLAIN])
def test_a_pass_without_padding_or_mask_is_the_stock_pass_in_float_rounding(
    stock_pipe: HunyuanVideo15ImageToVideoPipeline,
    exact_pipe: HunyuanVideo15ImageToVideoPipeline,
    attention_masks: dict[str, list[torch.Tensor | None]],
    latent: tuple[int, int, int],
    prompt: str,
) -> None:
    c = encoded(stock_pipe, prompt)
    for negative in (False, True):  # true CFG's second pass: another text, another length
        text = inputs(c, negative=negative)
        expected = forward(stock_pipe, text, latent)
        torch.testing.assert_close(
            forward(exact_pipe, text, latent), expected, rtol=1e-5, atol=1e-5
        )
    blocks = exact_pipe.transformer.config.num_layers
    assert attention_masks["ours"] == [None] * 2 * blocks
    # What it replaces: diffusers' processor hands attention a [B, 1, S, S] mask.
    tokens = math.prod(latent) + int(c.prompt_embeds_mask.sum()) + 729
    (stock_mask, *_) = attention_masks["stock"]
    assert stock_mask is not None and stock_mask.shape[-2:] == (stock_mask.shape[-1],) * 2
    assert stock_mask.shape[-1] > tokens  # the padding too


def test_where_padding_stays_attention_masks_only_the_keys(
    stock_pipe: HunyuanVideo15ImageToVideoPipeline,
    exact_pipe: HunyuanVideo15ImageToVideoPipeline,
    attention_masks: dict[str, list[torch.Tensor | None]],
) -> None:
    c = encoded(stock_pipe, QUOTED)
    # Two sequences in one batch, of different valid lengths: nothing can be cut.
    conditional, unconditional = inputs(c), inputs(c, negative=True)
    both = {name: torch.cat([conditional[name], unconditional[name]]) for name in conditional}
    assert int(c.prompt_embeds_mask.sum()) != int(both["encoder_attention_mask"][1].sum())
    expected = forward(stock_pipe, both, batch=2)
    torch.testing.assert_close(forward(exact_pipe, both, batch=2), expected, rtol=1e-5, atol=1e-5)
    masks = attention_masks["ours"]
    assert masks and all(m is not None and m.shape[:3] == (2, 1, 1) for m in masks)


def run(engine: Hunyuan15Engine, size: tuple[int, int], frames: int, **options: Any) -> np.ndarray:
    req = GenerationRequest(
        image=gradient_image(),
        prompt=QUOTED,
        seed=11,
        width=size[0],
        height=size[1],
        num_frames=frames,
        fps=FPS,
        options={"num_inference_steps": 2, **options},
    )
    return np.stack(list(engine.generate(req, NullHooks())))


@pytest.mark.parametrize(("size", "frames"), [((80, 48), 5), ((48, 80), 9)])
def test_the_default_engine_makes_stock_diffusers_video_in_float_rounding(
    size: tuple[int, int], frames: int
) -> None:
    exact = Hunyuan15Engine.load(resolve_model(TINY), device="cpu")
    faithful = Hunyuan15Engine.load(resolve_model(TINY), device="cpu", exact_speedups=False)
    assert exact.metadata()["attention_mask"] == "dropped (no padding)"
    assert faithful.metadata()["attention_mask"] == "stock"
    for options in ({}, {"guidance_scale": 3.0, "negative_prompt": "blur"}):
        a, b = run(exact, size, frames, **options), run(faithful, size, frames, **options)
        assert a.shape == (frames, size[1], size[0], 3)
        diff = np.abs(a.astype(int) - b.astype(int))
        assert int(diff.max()) <= 1 and float(np.mean(diff > 0)) < 0.01


# -- memory ------------------------------------------------------------------------------------


def peak_of(fn: Callable[[], object]) -> int:
    tracker = LiveBytes()
    with tracker:
        fn()
    return tracker.peak


def growth_exponent(
    pipe: HunyuanVideo15ImageToVideoPipeline, text: dict[str, torch.Tensor], *, padded: bool
) -> float:
    """k in peak ~ tokens^k, from one pass at two token counts (the video tokens doubled);
    ``padded``: the sequence attention sees holds the text padding (stock's)."""
    small, large = (8, 12, 16), (16, 12, 16)
    names = ("encoder_attention_mask", "encoder_attention_mask_2")
    text_tokens = sum(text[n].shape[1] if padded else int(text[n].sum()) for n in names)
    tokens = [math.prod(latent) + text_tokens + 729 for latent in (small, large)]
    peaks = [peak_of(functools.partial(forward, pipe, text, latent)) for latent in (small, large)]
    return math.log(peaks[1] / peaks[0]) / math.log(tokens[1] / tokens[0])


def test_a_passs_memory_grows_with_the_tokens_not_their_square(
    stock_pipe: HunyuanVideo15ImageToVideoPipeline,
    exact_pipe: HunyuanVideo15ImageToVideoPipeline,
) -> None:
    text = inputs(encoded(stock_pipe, QUOTED))
    assert growth_exponent(exact_pipe, text, padded=False) < 1.1
    # The measure sees the S x S mask: stock's peak grows about as the square.
    assert growth_exponent(stock_pipe, text, padded=True) > 1.7


# -- the VAE's attention -----------------------------------------------------------------------


def test_the_vaes_frame_causal_attention_needs_no_mask_and_gives_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    block = HunyuanVideo15AttnBlock(8)
    x = torch.randn(1, 8, 4, 5, 6)
    with torch.inference_mode():
        expected = block(x)
        # Causal by frame: the first frame's output does not depend on the later frames.
        later = x.clone()
        later[:, :, 1:] += 1
        assert not torch.allclose(block(later)[:, :, 1:], expected[:, :, 1:])
        torch.testing.assert_close(block(later)[:, :, :1], expected[:, :, :1])

        def no_mask(*_: object, **__: object) -> None:
            raise AssertionError("the [S, S] mask was built")

        monkeypatch.setattr(block, "prepare_causal_attention_mask", no_mask)
        torch.testing.assert_close(frame_causal_attention(block, x), expected, rtol=1e-5, atol=1e-5)


def test_the_engines_vae_runs_the_frame_causal_attention() -> None:
    vae = build_tiny_pipeline().vae
    assert install_frame_causal_attention(vae) >= 1
    blocks = [m for m in vae.modules() if isinstance(m, HunyuanVideo15AttnBlock)]
    assert all(getattr(b.forward, "func", None) is frame_causal_attention for b in blocks)


# -- settings ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flash() -> Iterator[Hunyuan15Engine]:
    yield Hunyuan15Engine.load(resolve_model(TINY), device="cpu", attention="flash")


def test_a_chosen_attention_backend_makes_the_same_video(flash: Hunyuan15Engine) -> None:
    # PyTorch's flash kernel also exists for the CPU: the one backend choice runnable here.
    assert flash.metadata()["attention"] == "flash" and flash.metadata()["path"] == "exact"
    default = Hunyuan15Engine.load(resolve_model(TINY), device="cpu")
    a, b = run(default, (80, 48), 5), run(flash, (80, 48), 5)
    assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


@pytest.mark.parametrize("choice", ["cudnn", "flash-attn", "sage", "nonsense"])
def test_an_attention_backend_that_cannot_run_here_fails_at_start(choice: str) -> None:
    with pytest.raises(EngineUnavailable, match=f"^FRAMECAST_ATTENTION={choice} ") as caught:
        Hunyuan15Engine.load(resolve_model(TINY), device="cpu", attention=choice)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("linear", ["fp8", "fp8-weight"])
def test_fp8_linears_load_from_the_settings_and_are_labelled_fast(
    linear: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fp8 compiles the blocks (tests/unit/test_hunyuan15_speedups.py runs it compiled once);
    # here only that it was asked to.
    compiled: list[bool] = []
    monkeypatch.setattr(Hunyuan15Engine, "compile", lambda self: compiled.append(True))
    settings = Settings(engine="hunyuan", hunyuan_model=TINY, device="cpu", linear=linear)
    engine = loader.load(settings)
    assert isinstance(engine, Hunyuan15Engine)
    meta = engine.metadata()
    assert meta["linear"].startswith(f"{linear} (e4m3") and meta["path"] == "fast"
    assert compiled == ([True] if linear == "fp8" else [])


def test_quantised_attention_is_labelled_fast(flash: Hunyuan15Engine) -> None:
    pipe = FramecastHunyuan15Pipeline(**build_tiny_pipeline().components)
    sage = Hunyuan15Engine(pipe, model="m", placement=flash.placement, attention="sage")
    assert sage.metadata()["path"] == "fast"
    with pytest.raises(ValueError, match="needs exact_speedups"):
        Hunyuan15Engine(
            pipe, model="m", placement=flash.placement, attention="flash", exact_speedups=False
        )
