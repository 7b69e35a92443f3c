"""The ``hunyuan`` engine: HunyuanVideo-I2V through diffusers, loaded once per worker.

One request runs in three phases, each reported through the hooks: ``encoding`` (LLaVA and
CLIP), ``denoising`` (one update per step, cancel checked after every step) and ``decoding``
(the VAE, tiled). The denoising call is diffusers' own ``__call__`` on
:class:`~framecast.engines.hunyuan.pipeline.FramecastHunyuanPipeline`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from diffusers.models.transformers.transformer_hunyuan_video import (
    HunyuanVideoTransformer3DModel,
)
from diffusers.utils.torch_utils import randn_tensor

from framecast.engines.base import Engine, GenerationRequest, Hooks
from framecast.engines.hunyuan.cache import CachedRequests
from framecast.engines.hunyuan.fp8 import convert_at_load, linear_label, linear_mode
from framecast.engines.hunyuan.loras import LoraAdapters, LoraSettings
from framecast.engines.hunyuan.pipeline import (
    FramecastHunyuanPipeline,
    enable_official_vae_tiling,
    encode_conditions,
    scheduler_with_shift,
)
from framecast.engines.hunyuan.placement import (
    choose_device,
    copy_out_of_mmap,
    keep_on_gpu,
    out_of_memory_as_engine_error,
    peak_memory,
    place,
    reset_peak_memory,
    tidy,
    visiting,
)
from framecast.engines.hunyuan.speedups import (
    check_speedups,
    compile_blocks,
    compiles,
    install_unmasked_attention,
    path_of,
    trim_padding,
)
from framecast.engines.hunyuan.weights import ModelSource, WeightsError
from framecast.errors import InputError
from framecast.images import cover_fit
from framecast.models.hunyuan_i2v import DEFAULT_CHECKPOINT, FRAME_STEP, SETTING, options_for
from framecast.models.request import LoraChoice

log = logging.getLogger("framecast.engines.hunyuan")

TEXT_ENCODER_HEADROOM = 40 * 2**30
"""GPU memory that must stay free for denoising and decoding at 720p if the 8B text encoder
is to stay on the GPU between requests (offload=none). An estimate from the official 60 GB
peak minus the ~26 GB transformer; below it the encoder moves to the GPU only to encode."""


@dataclass(frozen=True)
class Placement:
    """Where each part of the model lives and in which precision."""

    device: torch.device
    offload: str
    transformer_dtype: torch.dtype
    dtype: torch.dtype
    """Of the VAE and both text encoders."""
    text_encoder_resident: bool

    @classmethod
    def choose(cls, device_spec: str, offload: str) -> Placement:
        device = choose_device(device_spec)
        if device.type == "cuda":
            # The official precisions: transformer bf16, VAE and text encoders fp16.
            return cls(device, offload, torch.bfloat16, torch.float16, False)
        if offload != "none":
            log.warning("FRAMECAST_OFFLOAD=%s has no meaning on the CPU; ignoring it", offload)
        # Half precision on the CPU is slow and, for the tiny test model, needlessly lossy.
        return cls(device, "none", torch.float32, torch.float32, True)


@dataclass(frozen=True)
class Options:
    """A request's HunyuanVideo-I2V options, as the model resolved them
    (:meth:`~framecast.models.hunyuan_i2v.ImageToVideoInput.model_options`)."""

    num_inference_steps: int
    i2v_stability: bool
    flow_shift: float
    cfg_scale: float
    negative_prompt: str | None
    """None without true CFG."""
    embedded_guidance_scale: float
    step_cache: str | None
    step_cache_threshold: float | None
    """Only with a step cache (None without one)."""
    loras: tuple[LoraChoice, ...]

    @classmethod
    def of(cls, request: GenerationRequest) -> Options:
        """The options as given; a request built without an input (a test, a benchmark) may
        name only some, and gets the rest as an input that sets only those would
        (:func:`~framecast.models.hunyuan_i2v.options_for`)."""
        given = dict(request.options)
        if given.keys() != _OPTION_NAMES:
            given = options_for(**given)
        return cls(
            num_inference_steps=int(given["num_inference_steps"]),
            i2v_stability=bool(given["i2v_stability"]),
            flow_shift=float(given["flow_shift"]),
            cfg_scale=float(given["cfg_scale"]),
            negative_prompt=given["negative_prompt"],
            embedded_guidance_scale=float(given["embedded_guidance_scale"]),
            step_cache=given["step_cache"],
            step_cache_threshold=(
                None
                if given["step_cache_threshold"] is None
                else float(given["step_cache_threshold"])
            ),
            loras=tuple(given["loras"]),
        )


_OPTION_NAMES = {f.name for f in fields(Options)}


def load_pipeline(
    source: ModelSource, placement: Placement, linear: str = "bf16"
) -> FramecastHunyuanPipeline:
    """Load the weights (never from the network) and place them as ``placement`` says;
    ``linear="fp8"`` or ``"fp8-weight"`` converts the transformer blocks' linear layers first
    (see fp8.py; the caller checks the device can run them)."""
    if source.is_tiny:
        from framecast.engines.hunyuan.tiny import build_tiny_pipeline

        pipe = FramecastHunyuanPipeline(**build_tiny_pipeline().components)
        if placement.dtype != torch.float32:  # built in float32
            pipe.to(dtype=placement.dtype)
            pipe.transformer.to(dtype=placement.transformer_dtype)
        check_checkpoint(pipe.transformer.config, source.name)
    else:
        assert source.path is not None
        try:
            # The config first: refusing a wrong checkpoint should not cost minutes of loading.
            config = HunyuanVideoTransformer3DModel.load_config(
                source.path, subfolder="transformer", local_files_only=True
            )
            check_checkpoint(config, source.name)
            transformer = HunyuanVideoTransformer3DModel.from_pretrained(
                source.path,
                subfolder="transformer",
                torch_dtype=placement.transformer_dtype,
                local_files_only=True,
            )
            pipe = FramecastHunyuanPipeline.from_pretrained(
                source.path,
                transformer=transformer,
                torch_dtype=placement.dtype,
                local_files_only=True,
            )
        except (OSError, ValueError, KeyError) as exc:
            raise WeightsError(
                f"cannot load HunyuanVideo-I2V from {source.path}: {type(exc).__name__}: {exc}"
            ) from exc
    if placement.device.type == "cpu" and not source.is_tiny:
        copy_out_of_mmap(_models(pipe))
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    enable_official_vae_tiling(pipe.vae)
    convert_at_load(pipe.transformer, linear, placement.device, placement.offload)
    place(pipe, placement, _models(pipe))
    return pipe


def check_checkpoint(config: Mapping[str, Any], name: str) -> None:
    """Refuse any transformer but the token_replace one, naming what was found.

    That is the 16-channel checkpoint (the official weights as updated in March 2025, and the
    official code's default ``--i2v-condition-type``): its input is the latent alone, so
    ``in_channels`` equals ``out_channels`` (16, or the tiny model's 4). The 33-channel
    latent_concat checkpoint loads fine but needs another starting latent; without this check
    it would fail on the first request instead of at start.
    """
    kind = config.get("image_condition_type")
    channels = (config.get("in_channels"), config.get("out_channels"))
    if kind != "token_replace" or channels[0] != channels[1]:
        raise WeightsError(
            f"{name} is not the HunyuanVideo-I2V checkpoint framecast runs: its transformer "
            f"has image_condition_type={kind!r} and in_channels={channels[0]} "
            f"(the 33-channel latent_concat checkpoint has 'latent_concat' and 33); framecast "
            f"supports only the 16-channel token_replace checkpoint ({DEFAULT_CHECKPOINT}). "
            f"Point {SETTING} at it (`framecast weights download`)"
        )


def _models(pipe: FramecastHunyuanPipeline) -> tuple[torch.nn.Module, ...]:
    return (pipe.transformer, pipe.vae, pipe.text_encoder_2, pipe.text_encoder)


class HunyuanEngine(Engine):
    name = "hunyuan"

    def __init__(
        self,
        pipe: FramecastHunyuanPipeline,
        *,
        model: str,
        placement: Placement,
        tiny: bool = False,
        exact_speedups: bool = True,
        attention: str = "auto",
        loras: LoraSettings | None = None,
    ) -> None:
        """``exact_speedups``: cut text padding and drop the attention mask (see speedups.py);
        off only to compare with diffusers' stock pipeline bit for bit. ``attention`` is the
        backend of unmasked calls. Both it and whether the pipeline's linear layers are fp8
        are recorded in every result."""
        if attention != "auto" and not exact_speedups:
            raise ValueError("an attention backend other than auto needs exact_speedups")
        self.pipe = pipe
        self.model = model
        self.placement = placement
        self.tiny = tiny
        self.attention = attention
        self.linear = linear_mode(pipe.transformer)  # "bf16", "fp8" or "fp8-weight"
        self._base_scheduler = pipe.scheduler
        self._attention = (
            install_unmasked_attention(pipe.transformer, attention) if exact_speedups else None
        )
        self.compiled = False
        self.loras = LoraAdapters(pipe, loras or LoraSettings())
        self._cached = CachedRequests()
        """The step cache's pass counts of the last request that ran with one."""
        self.decodes = True
        """False on ranks 1..N-1 of a process group (engines/hunyuan/group.py): rank 0 decodes
        the latents every rank holds, so the others stop after denoising and yield no frames."""

    @property
    def exact(self) -> bool:
        """Whether this engine computes what the model does (up to floating-point rounding)."""
        return path_of(self.linear, self.attention) == "exact"

    def compile(self) -> None:
        """Compile every transformer block (regional ``torch.compile``); the first request
        after this pays the compile time."""
        self.loras.prepare_for_compile()  # LoRA slots first: adding them later would recompile
        compile_blocks(self.pipe.transformer)
        self.compiled = True

    @classmethod
    def load(
        cls,
        source: ModelSource,
        *,
        device: str = "auto",
        offload: str = "none",
        compile_mode: str = "off",
        exact_speedups: bool = True,
        attention: str = "auto",
        linear: str = "bf16",
        loras: LoraSettings | None = None,
    ) -> HunyuanEngine:
        placement = Placement.choose(device, offload)
        check_speedups(attention, linear, placement.device, placement.transformer_dtype)
        pipe = load_pipeline(source, placement, linear)
        if keep_on_gpu(pipe.text_encoder, placement, TEXT_ENCODER_HEADROOM):
            placement = replace(placement, text_encoder_resident=True)
        log.info(
            "HunyuanVideo-I2V loaded from %s on %s (offload=%s, text encoder %s)",
            source.name,
            placement.device,
            placement.offload,
            "resident" if placement.text_encoder_resident else "moved in to encode",
        )
        engine = cls(
            pipe,
            model=source.name,
            placement=placement,
            tiny=source.is_tiny,
            exact_speedups=exact_speedups,
            attention=attention,
            loras=loras,
        )
        if compiles(compile_mode, linear, placement.device, log):
            engine.compile()
        return engine

    def metadata(self) -> dict[str, Any]:
        dtype = str(self.placement.transformer_dtype).removeprefix("torch.")
        meta: dict[str, Any] = {
            "engine": self.name,
            "model": self.model,
            "device": str(self.placement.device),
            "dtype": dtype,
            "offload": self.placement.offload,
            "attention_mask": "dropped (no padding)" if self._attention else "stock",
            "attention": self.attention,
            "linear": linear_label(self.linear, self.placement.transformer_dtype),
            "compiled": self.compiled,
            # "fast": FP8 linears or quantised attention; the video deviates from the model's.
            "path": path_of(self.linear, self.attention),
        }
        if self.tiny:
            meta["tiny_random"] = True
            meta["warning"] = (
                "TINY RANDOM MODEL (FRAMECAST_HUNYUAN_MODEL=tiny-random): random weights for "
                "tests; this video is noise, not HunyuanVideo-I2V output"
            )
        return meta

    def describe(self, request: GenerationRequest) -> dict[str, Any]:
        options = Options.of(request)
        described = {k: v for k, v in options.__dict__.items() if v is not None}
        described.pop("loras")
        described.update(self.loras.recorded(options.loras))
        described.update(self._cached.describe(request, options.step_cache))
        return {**described, **peak_memory(self.placement)}

    def generate(self, request: GenerationRequest, hooks: Hooks) -> Iterator[np.ndarray]:
        options = Options.of(request)
        _check_geometry(request)
        self.loras.use(options.loras)
        reset_peak_memory(self.placement)  # recorded by describe() for /metrics
        hooks.raise_if_cancelled()
        original = request.image.convert("RGB")
        # Official: the VAE gets the image cropped to the video's size, while LLaVA sees the
        # original (its processor centre-crops a square itself), as in stock diffusers too.
        image = cover_fit(original, request.width, request.height)
        with out_of_memory_as_engine_error():
            try:
                hooks.progress(0, 1, "encoding")
                conditions = self._encode(original, request.prompt, options.negative_prompt)
                hooks.progress(1, 1, "encoding")
                hooks.raise_if_cancelled()
                latents = self._denoise(image, conditions, request, options, hooks)
                if not self.decodes:
                    return
                hooks.progress(0, 1, "decoding")
                frames = self._decode(latents)
                hooks.progress(1, 1, "decoding")
            finally:
                self._tidy()
        yield from frames

    # -- phases -------------------------------------------------------------------------------

    @torch.inference_mode()
    def _encode(self, image: Any, prompt: str, negative_prompt: str | None) -> Any:
        pipe, placement = self.pipe, self.placement
        with visiting(pipe.text_encoder, placement):
            return encode_conditions(pipe, image, prompt, negative_prompt, placement.device)

    def _denoise(
        self,
        image: Any,
        conditions: Any,
        request: GenerationRequest,
        options: Options,
        hooks: Hooks,
    ) -> torch.Tensor:
        pipe = self.pipe
        steps = options.num_inference_steps
        # A CPU generator: the same seed gives the same noise on every GPU model and on the CPU
        # (the official code seeds a CUDA generator, whose stream differs between devices).
        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        latent_frames = (request.num_frames - 1) // pipe.vae_scale_factor_temporal + 1
        shape = (
            1,
            pipe.transformer.config.in_channels,
            latent_frames,
            request.height // pipe.vae_scale_factor_spatial,
            request.width // pipe.vae_scale_factor_spatial,
        )
        noise = randn_tensor(
            shape, generator=generator, device=self.placement.device, dtype=torch.float32
        )

        def on_step(_pipe: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            hooks.progress(i + 1, steps, "denoising")
            hooks.raise_if_cancelled()
            return kwargs

        if self._attention is not None:
            conditions, self._attention.unpadded = trim_padding(conditions)
        pipe.i2v_stability = options.i2v_stability
        pipe.scheduler = scheduler_with_shift(self._base_scheduler, options.flow_shift)
        # The stock __call__ enters no cache context: the step cache tells the branches apart
        # by their text embeddings.
        branches = {"cond": conditions.prompt_embeds}
        if conditions.negative_prompt_embeds is not None:
            branches["uncond"] = conditions.negative_prompt_embeds
        cache = self._cached.running(
            request, pipe.transformer, options.step_cache, options.step_cache_threshold, branches
        )
        with torch.inference_mode(), cache:
            (latents,) = pipe(
                image=image,
                height=request.height,
                width=request.width,
                num_frames=request.num_frames,
                num_inference_steps=steps,
                guidance_scale=options.embedded_guidance_scale,
                true_cfg_scale=options.cfg_scale,
                generator=generator,
                latents=noise,
                output_type="latent",
                return_dict=False,
                callback_on_step_end=on_step,
                callback_on_step_end_tensor_inputs=[],
                **conditions.as_call_kwargs(),
            )
        result: torch.Tensor = latents
        return result

    @torch.inference_mode()
    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        pipe = self.pipe
        latents = latents.to(pipe.vae.dtype) / pipe.vae_scaling_factor
        video = pipe.vae.decode(latents, return_dict=False)[0]
        frames = pipe.video_processor.postprocess_video(video, output_type="np")[0]
        # The rounding diffusers uses when it makes PIL images from the same array.
        out: np.ndarray = (frames * 255).round().astype(np.uint8)
        return out

    def _tidy(self) -> None:
        tidy(self.pipe, self.placement)


def _check_geometry(request: GenerationRequest) -> None:
    if request.width % 16 or request.height % 16:
        raise InputError(
            f"width and height must be multiples of 16, got {request.width}x{request.height}",
            field="resolution",
        )
    if request.num_frames < 1 or (request.num_frames - 1) % FRAME_STEP:
        raise InputError(
            f"num_frames must be {FRAME_STEP}n+1, got {request.num_frames}", field="num_frames"
        )
