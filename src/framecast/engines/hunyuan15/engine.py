"""The HunyuanVideo 1.5 image-to-video engine, through diffusers, loaded once per worker.

Same family as the HunyuanVideo-I2V engine (``name = "hunyuan"``; ``metadata()`` says which
model). One request runs in three phases, each reported through the hooks: ``encoding`` (the
Qwen2.5-VL and ByT5 text encoders), ``denoising`` (one update per step, cancel checked after
every step; SigLIP and the VAE encode the image at its start) and ``decoding`` (the VAE). The
denoising is diffusers' own ``__call__`` on
:class:`~framecast.engines.hunyuan15.pipeline.FramecastHunyuan15Pipeline`.

The request's options and their defaults (the loaded checkpoint's) are in :mod:`.options`.

The speed-ups beyond the exact path, FP8 linears (``FRAMECAST_LINEAR``), regional compilation
(``FRAMECAST_COMPILE``) and step caching (``step_cache``), and LoRAs (``loras``), are the
HunyuanVideo-I2V engine's, shared code in ``engines/hunyuan/`` (fp8.py, speedups.py, cache.py,
loras.py) that reads what is particular to 1.5, its blocks and how its LoRA files are read
(engines/hunyuan15/lora_formats.py), from :data:`~framecast.engines.hunyuan.blocks.HUNYUAN_15`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
import PIL.Image
import torch
from diffusers.models.transformers.transformer_hunyuan_video15 import (
    HunyuanVideo15Transformer3DModel,
)
from diffusers.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
)

from framecast.engines.base import Engine, EngineUnavailable, GenerationRequest, Hooks
from framecast.engines.hunyuan.cache import CachedRequests
from framecast.engines.hunyuan.fp8 import convert_at_load, linear_label, linear_mode
from framecast.engines.hunyuan.loras import LoraAdapters, LoraSettings
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
    weight_bytes,
)
from framecast.engines.hunyuan.speedups import (
    check_speedups,
    compile_blocks,
    compiles,
    path_of,
)
from framecast.engines.hunyuan15 import memory
from framecast.engines.hunyuan15.exact import ExactAttention
from framecast.engines.hunyuan15.options import Defaults, Options
from framecast.engines.hunyuan15.pipeline import (
    Conditions,
    FramecastHunyuan15Pipeline,
    enable_official_vae_tiling,
    encode_conditions,
)
from framecast.engines.hunyuan15.sr_engine import (
    BASE_PHASE,
    RenamedPhase,
    SuperResolver,
    load_stages,
)
from framecast.engines.hunyuan15.vae_attention import install_frame_causal_attention
from framecast.engines.hunyuan15.weights import ModelSource, WeightsError
from framecast.errors import InputError
from framecast.models.hunyuan15_i2v import (
    BUCKET_BASE,
    BUCKETS,
    CHECKPOINTS,
    FRAME_STEP,
    MAX_FRAMES,
    MIN_FRAMES,
    SETTING,
    checkpoint,
    resolution_of,
)

log = logging.getLogger("framecast.engines.hunyuan15")

OFFLOAD_MODES: Final = ("none", "model", "group", "sequential")

RESOLUTION_OF_TARGET_SIZE: Final = {base: resolution for resolution, base in BUCKET_BASE.items()}
"""diffusers stores the bucket base as the transformer's ``target_size``: which resolution it is."""


def text_encoder_headroom(pipe: FramecastHunyuan15Pipeline) -> int:
    """GPU memory that must stay free after loading for the 7B text encoder to stay on the GPU
    between requests (offload=none); below it the encoder moves to the GPU only to encode.
    Computed (:mod:`.memory`) for the checkpoint's largest request: its resolution's worst
    bucket at the most frames (31.0 GiB at 720p); a model of another size counts as 720p."""
    target = int(pipe.transformer.config.target_size)
    resolution = RESOLUTION_OF_TARGET_SIZE.get(target, "720p")
    return memory.text_encoder_headroom(memory.worst_size(resolution), MAX_FRAMES)


@dataclass(frozen=True)
class Placement:
    """Where the model lives and in which precisions."""

    device: torch.device
    offload: str
    transformer_dtype: torch.dtype
    dtype: torch.dtype
    """Of the VAE, the Qwen2.5-VL text encoder and the SigLIP image encoder."""
    byt5_dtype: torch.dtype
    text_encoder_resident: bool

    @classmethod
    def choose(cls, device_spec: str, offload: str) -> Placement:
        if offload not in OFFLOAD_MODES:
            raise EngineUnavailable(f"offload must be one of {', '.join(OFFLOAD_MODES)}")
        device = choose_device(device_spec)
        if device.type == "cuda":
            # The official precisions: transformer bf16; VAE, Qwen2.5-VL and SigLIP fp16; ByT5
            # as loaded, fp32.
            return cls(device, offload, torch.bfloat16, torch.float16, torch.float32, False)
        if offload != "none":
            log.warning("FRAMECAST_OFFLOAD=%s has no meaning on the CPU; ignoring it", offload)
        # Half precision on the CPU is slow and, for the tiny test model, needlessly lossy.
        f32 = torch.float32
        return cls(device, "none", f32, f32, f32, True)


def load_pipeline(
    source: ModelSource, placement: Placement, linear: str = "bf16"
) -> FramecastHunyuan15Pipeline:
    """Load the weights (never from the network) and place them as ``placement`` says;
    ``linear="fp8"`` or ``"fp8-weight"`` converts the transformer blocks' linear layers first
    (engines/hunyuan/fp8.py; the caller checks the device can run them)."""
    if source.is_tiny:
        from framecast.engines.hunyuan15.tiny import build_tiny_pipeline

        pipe = FramecastHunyuan15Pipeline(**build_tiny_pipeline().components)
        if placement.dtype != torch.float32:  # built in float32
            for part in (pipe.vae, pipe.text_encoder, pipe.image_encoder):
                part.to(dtype=placement.dtype)
            pipe.transformer.to(dtype=placement.transformer_dtype)
    else:
        assert source.path is not None
        try:
            # The config first: refusing a wrong checkpoint should not cost minutes of loading.
            config = HunyuanVideo15Transformer3DModel.load_config(
                source.path, subfolder="transformer", local_files_only=True
            )
            check_checkpoint(config, source.name)
            pipe = FramecastHunyuan15Pipeline.from_pretrained(
                source.path,
                dtype={
                    "transformer": placement.transformer_dtype,
                    "text_encoder_2": placement.byt5_dtype,
                    "default": placement.dtype,
                },
                local_files_only=True,
            )
        except (OSError, ValueError, KeyError) as exc:
            raise WeightsError(
                f"cannot load HunyuanVideo 1.5 from {source.path}: {type(exc).__name__}: {exc}"
            ) from exc
        if placement.device.type == "cpu":
            copy_out_of_mmap(_models(pipe))
    pipe.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
    # As the official code: the decode in tiles, the official ones (the large-GPU values on
    # every device, see OFFICIAL_VAE_TILING). The tiny model too: whole, its 848x480 61-frame
    # decode on a CPU peaks at 5.9 GB of RSS, tiled at 1.6 GB (and videos smaller than one
    # tile, as the tests make, are decoded whole either way).
    enable_official_vae_tiling(pipe.vae)
    convert_at_load(pipe.transformer, linear, placement.device, placement.offload)
    place(pipe, placement, _models(pipe))
    return pipe


def check_checkpoint(config: Mapping[str, Any], name: str) -> None:
    """Refuse a transformer this pipeline cannot run, before its weights load: a text-to-video
    one (it takes no image latent: ``in_channels`` is not 2 x ``out_channels`` + 1)."""
    task = config.get("task_type")
    channels = (config.get("in_channels"), config.get("out_channels"))
    image_channels = isinstance(channels[1], int) and channels[0] == 2 * channels[1] + 1
    if task != "i2v" or not image_channels:
        raise WeightsError(
            f"{name} is not a HunyuanVideo 1.5 image-to-video checkpoint: its transformer has "
            f"task_type={task!r} and in_channels={channels[0]}. Point {SETTING} at one of "
            + ", ".join(c.repo_id for c in CHECKPOINTS)
        )


def _models(pipe: FramecastHunyuan15Pipeline) -> tuple[torch.nn.Module, ...]:
    return (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.image_encoder)


class Hunyuan15Engine(Engine):
    name = "hunyuan"

    def __init__(
        self,
        pipe: FramecastHunyuan15Pipeline,
        *,
        model: str,
        placement: Placement,
        tiny: bool = False,
        exact_speedups: bool = True,
        attention: str = "auto",
        loras: LoraSettings | None = None,
        sr: SuperResolver | None = None,
    ) -> None:
        """``exact_speedups``: cut the text padding and drop diffusers' sequence-squared attention
        masks, the transformer's (exact.py) and the VAE's (vae_attention.py); off only to
        compare with diffusers' stock pipeline bit for bit. ``attention`` is the
        ``FRAMECAST_ATTENTION`` backend of the transformer's unmasked calls. ``sr``: the
        super-resolution checkpoints (sr_engine.py); None: none."""
        if attention != "auto" and not exact_speedups:
            raise ValueError("an attention backend other than auto needs exact_speedups")
        self.pipe = pipe
        self.model = model
        self.placement = placement
        self.tiny = tiny
        self.attention = attention
        self.linear = linear_mode(pipe.transformer)  # "bf16", "fp8" or "fp8-weight"
        self._exact = ExactAttention(pipe.transformer, attention) if exact_speedups else None
        self.sr = sr or SuperResolver({}, placement.device, placement.offload)
        for models in self.sr.stages.values():  # the SR transformers take the same path
            if exact_speedups:
                ExactAttention(models.transformer, attention)
        self.gpu_memory: int | None = None
        """The GPU's memory in bytes, where requests are checked against the computed peak
        (:meth:`memory_refusal`); None: no check (the CPU, the tiny model, or switched off)."""
        if exact_speedups:
            install_frame_causal_attention(pipe.vae)
        self.defaults = Defaults.of_pipeline(pipe)
        self.resolution = RESOLUTION_OF_TARGET_SIZE.get(int(pipe.transformer.config.target_size))
        """The checkpoint's resolution ("480p", "720p"); None for the tiny model."""
        self.compiled = False
        self.loras = LoraAdapters(pipe, loras or LoraSettings())
        self._cached = CachedRequests()
        """The step cache's pass counts of the last request that ran with one."""
        # Each request gets its own scheduler (flow shift) and guider (guidance scale).
        self._base_scheduler = pipe.scheduler
        self._base_guider = pipe.guider
        self.decodes = True
        """False on ranks 1..N-1 of a process group (engines/hunyuan/group.py), as for the I2V
        engine: only rank 0 decodes."""

    def stages(self) -> tuple[str, ...]:
        """The optional stages this engine runs: its super-resolution checkpoints."""
        return self.sr.names

    @property
    def resolutions(self) -> tuple[str, ...]:
        """The resolutions this engine makes videos at: the checkpoint's own (the official code
        refuses the others), or every one for the tiny model, so it can stand in end to end."""
        if self.resolution is None:
            return tuple(BUCKET_BASE)
        return (self.resolution,)

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
        memory_check: bool = True,
        loras: LoraSettings | None = None,
        sr_model: str = "off",
    ) -> Hunyuan15Engine:
        placement = Placement.choose(device, offload)
        check_speedups(attention, linear, placement.device, placement.transformer_dtype)
        pipe = load_pipeline(source, placement, linear)
        resolution = RESOLUTION_OF_TARGET_SIZE.get(int(pipe.transformer.config.target_size))
        stages = load_stages(
            sr_model,
            (resolution,) if resolution else tuple(BUCKET_BASE),
            source.is_tiny,
            placement.transformer_dtype,
        )
        for models in stages.values():
            convert_at_load(models.transformer, linear, placement.device, placement.offload)
        sr = SuperResolver(stages, placement.device, placement.offload)
        if keep_on_gpu(pipe.text_encoder, placement, text_encoder_headroom(pipe)):
            placement = replace(placement, text_encoder_resident=True)
        engine = cls(
            pipe,
            model=source.name,
            placement=placement,
            tiny=source.is_tiny,
            exact_speedups=exact_speedups,
            attention=attention,
            loras=loras,
            sr=sr,
        )
        log.info(
            "HunyuanVideo 1.5 I2V (%s, distilled=%s) loaded from %s on %s (offload=%s, text "
            "encoder %s)",
            engine.resolution or "tiny",
            engine.defaults.distilled,
            source.name,
            placement.device,
            placement.offload,
            "resident" if placement.text_encoder_resident else "moved in to encode",
        )
        if memory_check and placement.device.type == "cuda" and not source.is_tiny:
            engine.gpu_memory = int(torch.cuda.mem_get_info(placement.device)[1])
            engine.check_fits_at_all()
        if compiles(compile_mode, linear, placement.device, log):
            engine.compile()
        return engine

    # -- memory -------------------------------------------------------------------------------

    def memory_refusal(self, width: int, height: int, num_frames: int) -> str | None:
        """One line saying why a request of this size cannot fit this GPU (by the computed
        peak of :mod:`.memory`), or None where it fits or nothing is checked. The SR
        transformers resident beside the base one (offload=none) count against the GPU."""
        if self.gpu_memory is None:
            return None
        placement = self.placement
        return memory.refusal(
            self.gpu_memory - self.sr.resident_bytes(),
            (width, height),
            num_frames,
            placement.offload,
            placement.text_encoder_resident,
            # As loaded: FRAMECAST_LINEAR=fp8 weights count a byte each.
            weight_bytes(self.pipe.transformer),
        )

    def check_fits_at_all(self) -> None:
        """At start: refuse a GPU too small for even the shortest video of this checkpoint, and
        log the longest one that fits."""
        resolution = self.resolution or "720p"
        smallest = memory.worst_size(resolution, MIN_FRAMES)
        refused = self.memory_refusal(*smallest, MIN_FRAMES)
        if refused is not None:
            raise EngineUnavailable(f"{refused}; set FRAMECAST_MEMORY_CHECK=false to try anyway")
        worst = memory.worst_size(resolution)
        longest = next(
            n
            for n in range(MAX_FRAMES, MIN_FRAMES - 1, -FRAME_STEP)
            if self.memory_refusal(*worst, n) is None
        )
        log.info(
            "HunyuanVideo 1.5 at %s fits this GPU (%.1f GiB) up to %d frames at every aspect "
            "ratio (computed); longer requests are refused before they start",
            resolution,
            (self.gpu_memory or 0) / memory.GiB,
            longest,
        )

    def compile(self) -> None:
        """Compile every transformer block (regional ``torch.compile``, as the I2V engine);
        the first request after this pays the compile time."""
        self.loras.prepare_for_compile()  # LoRA slots first: adding them later would recompile
        compile_blocks(self.pipe.transformer)
        self.compiled = True

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "engine": self.name,
            "model": self.model,
            "pipeline": "HunyuanVideo 1.5 image-to-video",
            "checkpoint": {
                "resolution": self.resolution,
                "distilled": self.defaults.distilled,
                "official": checkpoint(self.model) is not None,
            },
            "device": str(self.placement.device),
            "dtype": str(self.placement.transformer_dtype).removeprefix("torch."),
            "offload": self.placement.offload,
            "compiled": self.compiled,
            "attention_mask": "dropped (no padding)" if self._exact else "stock",
            "attention": self.attention,
            "linear": linear_label(self.linear, self.placement.transformer_dtype),
            # "fast": FP8 linears or quantised attention; the video deviates from the model's.
            "path": path_of(self.linear, self.attention),
        }
        if self.tiny:
            meta["tiny_random"] = True
            meta["warning"] = (
                "TINY RANDOM MODEL (tiny-random): random weights for tests; this video is "
                "noise, not HunyuanVideo 1.5 output"
            )
        return meta

    def describe(self, request: GenerationRequest) -> dict[str, Any]:
        options = Options.of(request, self.defaults)
        described = {k: v for k, v in options.__dict__.items() if v is not None}
        described.pop("loras")
        described.update(self.loras.recorded(options.loras))
        described.update(self._cached.describe(request, options.step_cache))
        if self.sr.last is not None and self.sr.last.request is request:
            described.update(self.sr.last.describe())
        return {**described, **peak_memory(self.placement)}

    def generate(self, request: GenerationRequest, hooks: Hooks) -> Iterator[np.ndarray]:
        options = Options.of(request, self.defaults)
        # With super_resolution, the request is the video and ``request`` below its base pass.
        video, (request, sr_run) = request, self.sr.plan(request)
        self._check_geometry(request)
        refused = self.memory_refusal(request.width, request.height, request.num_frames)
        if sr_run is not None and refused is None:
            refused = self.memory_refusal(video.width, video.height, video.num_frames)
        if refused is not None:
            # Before any work, rather than an out-of-memory error minutes in.
            raise InputError(refused, field="num_frames")
        self.loras.use(options.loras)
        reset_peak_memory(self.placement)  # recorded by describe() for /metrics
        hooks.raise_if_cancelled()
        # The crop the pipeline (and the official code) makes: Lanczos to cover, centre crop.
        image = self.pipe.video_processor.resize(
            request.image.convert("RGB"),
            height=request.height,
            width=request.width,
            resize_mode="crop",
        )
        with out_of_memory_as_engine_error():
            try:
                hooks.progress(0, 1, "encoding")
                conditions = self._encode(request.prompt, options.negative_prompt)
                hooks.progress(1, 1, "encoding")
                hooks.raise_if_cancelled()
                if sr_run is None:
                    latents = self._denoise(image, conditions, request, options, hooks)
                else:
                    started = time.perf_counter()
                    renamed = RenamedPhase(hooks, {"denoising": BASE_PHASE})
                    latents = self._denoise(image, conditions, request, options, renamed)
                    sr_run.seconds["base"] = time.perf_counter() - started
                    latents = self.sr.run(self.pipe, sr_run, latents, conditions, hooks)
                if not self.decodes:
                    return
                decode_started = time.perf_counter()
                hooks.progress(0, 1, "decoding")
                frames = self._decode(latents)
                hooks.progress(1, 1, "decoding")
                if sr_run is not None:
                    sr_run.seconds["decoding"] = time.perf_counter() - decode_started
            finally:
                self._tidy()
        yield from frames

    # -- phases -------------------------------------------------------------------------------

    @torch.inference_mode()
    def _encode(self, prompt: str, negative_prompt: str | None) -> Conditions:
        pipe, placement = self.pipe, self.placement
        with visiting(pipe.text_encoder, placement):
            return encode_conditions(pipe, prompt, negative_prompt, placement.device)

    def _denoise(
        self,
        image: PIL.Image.Image,
        conditions: Conditions,
        request: GenerationRequest,
        options: Options,
        hooks: Hooks,
    ) -> torch.Tensor:
        pipe = self.pipe
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            self._base_scheduler.config, shift=options.flow_shift
        )
        pipe.guider = self._base_guider.new(guidance_scale=options.guidance_scale)
        noise = pipe.starting_noise(
            request.seed,
            width=request.width,
            height=request.height,
            num_frames=request.num_frames,
            device=self.placement.device,
        )

        def on_step(done: int, total: int) -> None:
            hooks.progress(done, total, "denoising")
            hooks.raise_if_cancelled()

        hooked = pipe.hooked(width=request.width, height=request.height, on_step=on_step)
        # The guider enters a cache context around each pass ("pred_cond", "pred_uncond"), so
        # the step cache needs no branches told apart; a cancel (raised by on_step) removes it.
        cache = self._cached.running(
            request, pipe.transformer, options.step_cache, options.step_cache_threshold
        )
        with torch.inference_mode(), hooked, cache:
            (latents,) = pipe(
                image=image,
                num_frames=request.num_frames,
                num_inference_steps=options.num_inference_steps,
                latents=noise,
                output_type="latent",
                return_dict=False,
                **conditions.as_call_kwargs(),
            )
        result: torch.Tensor = latents
        return result

    @torch.inference_mode()
    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        pipe = self.pipe
        latents = latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor
        video = pipe.vae.decode(latents, return_dict=False)[0]
        frames = pipe.video_processor.postprocess_video(video, output_type="np")[0]
        # The rounding diffusers uses when it makes PIL images from the same array.
        out: np.ndarray = (frames * 255).round().astype(np.uint8)
        return out

    def _tidy(self) -> None:
        tidy(self.pipe, self.placement)

    def _check_geometry(self, request: GenerationRequest) -> None:
        width, height = request.width, request.height
        grid = BUCKETS.grid
        if width % grid or height % grid or width <= 0 or height <= 0:
            raise InputError(
                f"width and height must be positive multiples of {grid}, got {width}x{height}",
                field="resolution",
            )
        if self.resolution is not None and resolution_of(width, height) != self.resolution:
            others = [c.repo_id for c in CHECKPOINTS if c.resolution != self.resolution]
            raise InputError(
                f"{width}x{height} is not a {self.resolution} size, and this server runs the "
                f"{self.resolution} checkpoint {self.model}; for another resolution point "
                f"{SETTING} at its checkpoint ({', '.join(others)})",
                field="resolution",
            )
        if request.num_frames < 1 or (request.num_frames - 1) % FRAME_STEP:
            raise InputError(
                f"num_frames must be 4n+1, got {request.num_frames}", field="num_frames"
            )
