"""Peak GPU memory of one HunyuanVideo 1.5 image-to-video request: computed, not measured.

Arithmetic on the published architecture (:mod:`.fullsize`, whose models built on the meta
device gave the parameter counts below; ``tests/unit/test_hunyuan15_memory.py`` recounts them
and traces the activations this module counts), for the engine to refuse, before a worker
loads or a request starts, a size the GPU cannot hold (:func:`refusal`), and to derive how much
memory must stay free for the 7B text encoder to stay on the GPU (:func:`text_encoder_headroom`).
No torch here: importing it costs nothing.

``python -m framecast.engines.hunyuan15.memory`` prints the table of docs/performance.md.

What one request holds on the GPU, phase by phase (the engine: ``engine.py``, ``pipeline.py``):

- weights: the official precisions (transformer bf16; VAE, Qwen2.5-VL, SigLIP fp16; ByT5 fp32).
  Which of them are on the GPU in each phase depends on the offload mode (:func:`peak`).
- text encoding: Qwen2.5-VL over 1108 tokens (the system turn and the user turn's header, 108,
  and the prompt padded to 1000), every hidden state kept (``output_hidden_states``); ByT5 over 256.
- image encoding: SigLIP over 729 patches; the VAE encodes the conditioning image, one frame,
  whole (``FramecastHunyuan15Pipeline.prepare_cond_latents_and_mask``).
- denoising: one transformer pass at a time (the guider runs the conditional and unconditional
  passes one after the other, batch 1) on the exact path: the text padding is cut and
  attention has no mask and runs on a flash or cuDNN kernel, whose memory grows with the tokens
  (its output), never with their square. The largest live set is in each dual-stream block's
  MLP (:data:`BLOCK_BYTES_PER_VIDEO_TOKEN`). Eager: compiled blocks fuse some of it away, so
  this is an upper bound for them.
- decoding: the official tiles (256 pixels, overlap 0.125, no tiles in time: each tile is
  decoded over every frame at once); the largest live set is in the last level's ResNet
  blocks (:data:`VAE_DECODE_BYTES_PER_ELEMENT`), and every decoded tile is kept until they are
  blended into the video.

Left out, all small beside these: buffers (rotary frequencies), the text encoders' masks, the
scheduler's fp32 step (taken after the passes' activations are freed). Not counted either,
and only a GPU can tell: cuDNN's workspaces for the VAE's 3D convolutions (allocated through
torch, so inside a measured peak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from framecast.models.hunyuan15_i2v import (
    DEFAULT_FRAMES,
    FRAME_STEP,
    MAX_FRAMES,
    MIN_FRAMES,
    RESOLUTIONS,
)
from framecast.models.hunyuan15_i2v import SIZES as HV15_SIZES

GiB: Final = 2**30
MiB: Final = 2**20

OFFLOAD_MODES: Final = ("none", "model", "group", "sequential")
"""As :data:`framecast.engines.hunyuan15.engine.OFFLOAD_MODES`."""

SIZES: Final[dict[str, tuple[int, int]]] = {r: HV15_SIZES[("16:9", r)] for r in RESOLUTIONS}
"""16:9 at each resolution, (width, height): the sizes of the table."""

# -- The architecture (fullsize.py's configs; the test checks these against them) -------------

SPATIAL_COMPRESSION: Final = 16
TEMPORAL_COMPRESSION: Final = 4
LATENT_CHANNELS: Final = 32
TRANSFORMER_IN_CHANNELS: Final = 65
"""The noisy latent, the image latent and a mask channel."""
HIDDEN: Final = 2048
HEAD_DIM: Final = 128
MLP_RATIO: Final = 4
TRANSFORMER_BLOCKS: Final = 54

QWEN_TOKENS: Final = 108 + 1000
"""What the pipeline crops (``prompt_template_encode_start_idx``: the system turn and the user
turn's header) and the prompt, padded."""
QWEN_TEXT_TOKENS: Final = 1000
BYT5_TOKENS: Final = 256
SIGLIP_TOKENS: Final = 729
TEXT_TOKENS: Final = QWEN_TEXT_TOKENS + BYT5_TOKENS + SIGLIP_TOKENS
"""The transformer's text tokens at most: the exact path cuts the padding, so usually fewer."""

QWEN_HIDDEN: Final = 3584
QWEN_MLP: Final = 18944
QWEN_LAYERS: Final = 28
BYT5_HIDDEN: Final = 1472
BYT5_MLP: Final = 3584
BYT5_HEADS: Final = 6
SIGLIP_HIDDEN: Final = 1152
SIGLIP_MLP: Final = 4304
SIGLIP_HEADS: Final = 16

VAE_LAST_CHANNELS: Final = 128
"""The decoder's last level (``block_out_channels[0]``), at full resolution."""
VAE_TILE: Final = 256
"""Pixels; the official decode tile (``pipeline.OFFICIAL_VAE_TILING``)."""
VAE_TILE_OVERLAP: Final = 0.125


# -- Parameters, counted on the meta device (test_hunyuan15_memory.py recounts them) ----------


@dataclass(frozen=True)
class Component:
    """One model of the pipeline: how many parameters, in which precision, and how many of
    them each offload mode keeps on the GPU while the model runs."""

    name: str
    params: int
    bytes_per_param: int
    group_params: int
    """On the GPU under ``group`` (block-level group offload, one block a group, streamed):
    what is outside the model's top-level ModuleList, plus the running block and the next one,
    being prefetched. A model without one is a single group."""
    largest_leaf_params: int
    """On the GPU under ``sequential`` (accelerate's hooks on every module): the largest module
    with parameters of its own."""

    @property
    def bytes(self) -> int:
        return self.params * self.bytes_per_param

    @property
    def group_bytes(self) -> int:
        return self.group_params * self.bytes_per_param

    @property
    def largest_leaf_bytes(self) -> int:
        return self.largest_leaf_params * self.bytes_per_param


TRANSFORMER_BLOCK_PARAMS: Final = 151_056_896
TRANSFORMER_OUTSIDE_BLOCKS_PARAMS: Final = 169_535_776
QWEN_LAYER_PARAMS: Final = 233_057_792
QWEN_OUTSIDE_LAYERS_PARAMS: Final = 545_000_960
"""Mostly the embedding, 152064 x 3584."""

TRANSFORMER: Final = Component(
    "transformer",
    8_326_608_160,
    2,
    TRANSFORMER_OUTSIDE_BLOCKS_PARAMS + 2 * TRANSFORMER_BLOCK_PARAMS,
    25_178_112,  # a block's norm1_context.linear, 2048 -> 6 x 2048
)
TEXT_ENCODER: Final = Component(
    "text_encoder",
    7_070_619_136,
    2,
    QWEN_OUTSIDE_LAYERS_PARAMS + 2 * QWEN_LAYER_PARAMS,
    544_997_376,  # embed_tokens
)
TEXT_ENCODER_2: Final = Component("text_encoder_2", 219_314_944, 4, 219_314_944, 5_275_648)
IMAGE_ENCODER: Final = Component("image_encoder", 428_225_600, 2, 428_225_600, 4_962_512)
VAE: Final = Component(
    "vae",
    1_260_634_115,
    2,
    1_260_634_115,  # no ModuleList at its top: one group
    226_500_608,  # the decoder's first upsampling conv, 1024 -> 8 x 1024 channels, 3x3x3
)
COMPONENTS: Final = (TRANSFORMER, TEXT_ENCODER, TEXT_ENCODER_2, IMAGE_ENCODER, VAE)

# -- Activations -------------------------------------------------------------------------------

BF16: Final = 2
FP16: Final = 2
FP32: Final = 4

BLOCK_BYTES_PER_VIDEO_TOKEN: Final = (4 + 2 * MLP_RATIO) * HIDDEN * BF16 + 2 * HEAD_DIM * FP32
"""A dual-stream block's largest live set, per video token (in its MLP): the block's input
(held by the transformer's loop), the attention output, the residual sum, the modulated norm
(1 x hidden each), the MLP's first projection and its GELU (4 x hidden each); and the rotary
cos and sin (fp32, head dim each), alive through the whole pass. 50,176 bytes."""
BLOCK_BYTES_PER_TEXT_TOKEN: Final = 4 * HIDDEN * BF16
"""The text stream's share of the same moment: its input, attention output, residual sum and
modulated norm (its own MLP runs after the video's)."""
LATENT_BYTES_PER_VIDEO_TOKEN: Final = BF16 * (
    LATENT_CHANNELS  # the latents
    + LATENT_CHANNELS  # the image latent
    + 1  # its mask
    + TRANSFORMER_IN_CHANNELS  # their concatenation, the transformer's input
    + 2 * LATENT_CHANNELS  # the conditional prediction, kept, and the one being made
)
CONDITION_BYTES: Final = (
    2 * BF16 * (QWEN_TEXT_TOKENS * QWEN_HIDDEN + BYT5_TOKENS * BYT5_HIDDEN)
    + BF16 * SIGLIP_TOKENS * SIGLIP_HIDDEN
)
"""The encoded prompt and negative prompt (cast to bf16) and the image embedding."""

VAE_DECODE_BYTES_PER_ELEMENT: Final = 3 * FP16 + 2 * FP32
"""Per element of the decoder's last level (128 channels, every pixel of the tile, every frame):
the level's input (held by the decoder's loop), a ResNet block's residual and its first conv's
output (fp16), and its RMS norm's fp32 copy and fp32 result (diffusers normalises half
precision in fp32). 14 bytes; traced on the meta device in the test."""


@dataclass(frozen=True)
class Grid:
    """The latent grid of a video: frames, height and width in latents."""

    frames: int
    height: int
    width: int

    @classmethod
    def of(cls, width: int, height: int, num_frames: int) -> Grid:
        if num_frames < 1 or (num_frames - 1) % FRAME_STEP:
            raise ValueError(f"num_frames must be {FRAME_STEP}n+1, got {num_frames}")
        if width % SPATIAL_COMPRESSION or height % SPATIAL_COMPRESSION or width <= 0 or height <= 0:
            raise ValueError(
                f"width and height must be positive multiples of {SPATIAL_COMPRESSION}, "
                f"got {width}x{height}"
            )
        return cls(
            (num_frames - 1) // TEMPORAL_COMPRESSION + 1,
            height // SPATIAL_COMPRESSION,
            width // SPATIAL_COMPRESSION,
        )

    @property
    def tokens(self) -> int:
        """Video tokens: patch 1x1x1, one a latent."""
        return self.frames * self.height * self.width


def tokens(width: int, height: int, num_frames: int) -> int:
    """The transformer's sequence at most: the video's tokens and :data:`TEXT_TOKENS`."""
    return Grid.of(width, height, num_frames).tokens + TEXT_TOKENS


def transformer_pass_bytes(width: int, height: int, num_frames: int) -> int:
    """Activations of one transformer pass, with the latents and conditions the loop keeps."""
    video = Grid.of(width, height, num_frames).tokens
    return (
        video * (BLOCK_BYTES_PER_VIDEO_TOKEN + LATENT_BYTES_PER_VIDEO_TOKEN)
        + TEXT_TOKENS * BLOCK_BYTES_PER_TEXT_TOKEN
        + CONDITION_BYTES
    )


def _tile_extents(latents: int) -> list[int]:
    """The latent extent of each tile along one axis, as diffusers' ``tiled_decode`` cuts."""
    tile = VAE_TILE // SPATIAL_COMPRESSION
    stride = int(tile * (1 - VAE_TILE_OVERLAP))
    return [min(tile, latents - start) for start in range(0, latents, stride)]


def vae_decode_bytes(width: int, height: int, num_frames: int) -> int:
    """The tiled decode: one tile's working set over every frame, and every decoded tile."""
    grid = Grid.of(width, height, num_frames)
    rows, columns = _tile_extents(grid.height), _tile_extents(grid.width)
    tile = max(rows) * max(columns) * SPATIAL_COMPRESSION**2  # pixels of the largest tile
    working_set = VAE_DECODE_BYTES_PER_ELEMENT * VAE_LAST_CHANNELS * tile * num_frames
    tiles = FP16 * 3 * num_frames * sum(rows) * sum(columns) * SPATIAL_COMPRESSION**2
    video = FP16 * 3 * num_frames * width * height
    latents = 2 * FP16 * LATENT_CHANNELS * grid.tokens  # cast and scaled
    # The blend: every tile, then the rows cut from them, then the video; with the tiles the
    # largest live set either way, and the tiles' own is larger.
    return latents + max(working_set + tiles, tiles + 2 * video)


def vae_encode_bytes(width: int, height: int) -> int:
    """The conditioning image, one frame, encoded whole: the same 14 bytes an element of the
    encoder's first level (128 channels at full resolution)."""
    return VAE_DECODE_BYTES_PER_ELEMENT * VAE_LAST_CHANNELS * width * height


def qwen_encode_bytes() -> int:
    """Qwen2.5-VL over its 1108 tokens: every hidden state (29, kept for the pipeline to take
    the third from the end), an MLP's three 18944-wide tensors and a layer's attention in fp32
    at most. About 0.4 GiB."""
    hidden_states = (QWEN_LAYERS + 1) * QWEN_TOKENS * QWEN_HIDDEN * FP16
    mlp = 3 * QWEN_TOKENS * QWEN_MLP * FP16
    attention = 4 * QWEN_TOKENS * QWEN_HIDDEN * FP32
    return hidden_states + mlp + attention


def byt5_encode_bytes() -> int:
    """ByT5 (fp32) over 256 tokens: a layer's states, MLP and attention scores. About 20 MiB."""
    states = 4 * BYT5_TOKENS * BYT5_HIDDEN * FP32
    mlp = 3 * BYT5_TOKENS * BYT5_MLP * FP32
    scores = 2 * BYT5_HEADS * BYT5_TOKENS**2 * FP32
    return states + mlp + scores


def siglip_encode_bytes() -> int:
    """SigLIP over 729 patches: a layer's states, MLP and attention scores. About 0.1 GiB."""
    states = 4 * SIGLIP_TOKENS * SIGLIP_HIDDEN * FP32
    mlp = 2 * SIGLIP_TOKENS * SIGLIP_MLP * FP32
    scores = 2 * SIGLIP_HEADS * SIGLIP_TOKENS**2 * FP32
    return states + mlp + scores


# -- Per offload mode --------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One phase of a request: the weights on the GPU during it and its working set."""

    name: str
    weights: int
    work: int

    @property
    def bytes(self) -> int:
        return self.weights + self.work


@dataclass(frozen=True)
class Peak:
    """The peak of one request, and the phases it is the largest of."""

    width: int
    height: int
    num_frames: int
    offload: str
    text_encoder_resident: bool
    phases: tuple[Phase, ...]

    @property
    def phase(self) -> Phase:
        """The phase at the peak."""
        return max(self.phases, key=lambda p: p.bytes)

    @property
    def bytes(self) -> int:
        """The most memory torch holds for tensors (what ``max_memory_allocated`` reports)."""
        return self.phase.bytes

    @property
    def required(self) -> int:
        """The GPU's total memory this needs: the peak, the allocator's slack on it
        (:data:`FRAGMENTATION`) and the CUDA context (:data:`CUDA_CONTEXT`)."""
        return math.ceil(self.bytes * (1 + FRAGMENTATION)) + CUDA_CONTEXT

    def describe(self) -> str:
        """'47.4 GiB in the decode: 19.5 of weights and 28.0 of working set'."""
        p = self.phase
        return (
            f"{self.bytes / GiB:.1f} GiB in the {p.name}: {p.weights / GiB:.1f} of weights and "
            f"{p.work / GiB:.1f} of working set"
        )


CUDA_CONTEXT: Final = 1 * GiB
"""GPU memory outside torch's tensors: the CUDA context and the cuBLAS and cuDNN handles (about
0.5 GiB on an H100 with CUDA 12's lazy loading; 1 GiB to be safe). Not measured here."""
FRAGMENTATION: Final = 0.05
"""The caching allocator's rounding and fragmentation, as a share of the peak: an assumption
until a GPU measures it (``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` keeps it small)."""


def _size(size: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)} or (width, height)")
        return SIZES[size]
    return size


def peak(
    size: str | tuple[int, int],
    num_frames: int,
    offload: str = "none",
    text_encoder_resident: bool = False,
    transformer_bytes: int | None = None,
) -> Peak:
    """The peak of one request of ``size`` ("480p", "720p": 16:9; or (width, height)) and
    ``num_frames``, with the models placed as ``offload`` places them
    (:func:`framecast.engines.hunyuan.placement.place`):

    - ``none``: the transformer, the VAE, SigLIP and ByT5 stay on the GPU; Qwen2.5-VL too where
      ``text_encoder_resident``, else it comes in to encode the prompt and leaves.
    - ``model`` (accelerate's model offload, sequence image_encoder -> text_encoder ->
      transformer -> vae): a model is moved out only when the next in the sequence runs, and
      the engine runs them out of that order (it encodes the prompt first, and the pipeline
      encodes the image with the VAE before denoising), so SigLIP and the VAE stay on through
      the denoising, and ByT5 (hooked outside the sequence) from the prompt's encoding to the
      end of the call: the transformer's phase holds all four.
    - ``group``: each model in turn, a group at a time (:attr:`Component.group_params`). The
      VAE counts as one group, on the GPU whole while it runs; in diffusers 0.42 its
      block-level group offload hooks only the VAE's ``forward``, which ``encode`` and
      ``decode`` never call, so they would meet weights left on the CPU
      (huggingface/diffusers#12319; the fix there, ``_group_offload_block_modules``, this VAE
      lacks). Unchecked on a GPU.
    - ``sequential``: each module in turn (:attr:`Component.largest_leaf_params`).

    ByT5 runs, and is counted, only for a prompt with quoted text; the worst case is counted.

    ``transformer_bytes``: the transformer's weights as loaded (FRAMECAST_LINEAR=fp8 stores
    most of them at a byte each), counted where the transformer is whole on the GPU (``none``,
    ``model``); None: bf16's. ``group`` and ``sequential`` count its groups and modules in bf16
    (FP8 leaves the modulation layers, the largest module, in bf16; groups over-count).
    """
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
    if text_encoder_resident and offload != "none":
        raise ValueError("the text encoder stays on the GPU only with offload=none")
    width, height = _size(size)
    qwen, byt5 = qwen_encode_bytes(), byt5_encode_bytes()
    images = max(siglip_encode_bytes(), vae_encode_bytes(width, height))
    denoise = transformer_pass_bytes(width, height, num_frames)
    decode = vae_decode_bytes(width, height, num_frames)
    t, te, te2, ie, vae = (c.bytes for c in COMPONENTS)
    if transformer_bytes is not None:
        t = transformer_bytes
    if offload == "none":
        resident = t + vae + ie + te2 + (te if text_encoder_resident else 0)
        weights = {
            "text encoder": t + vae + ie + te2 + te,
            "glyph encoder": t + vae + ie + te2 + te,
            "image encoders": resident,
            "denoise": resident,
            "decode": resident,
        }
    elif offload == "model":
        weights = {
            "text encoder": te + te2,
            "glyph encoder": te + te2,
            "image encoders": te + te2 + ie + vae,
            "denoise": t + te2 + ie + vae,
            "decode": vae,
        }
    elif offload == "group":
        weights = {
            "text encoder": TEXT_ENCODER.group_bytes,
            "glyph encoder": TEXT_ENCODER_2.group_bytes,
            "image encoders": max(IMAGE_ENCODER.group_bytes, VAE.group_bytes),
            "denoise": TRANSFORMER.group_bytes,
            "decode": VAE.group_bytes,
        }
    else:
        weights = {
            "text encoder": TEXT_ENCODER.largest_leaf_bytes,
            "glyph encoder": TEXT_ENCODER_2.largest_leaf_bytes,
            "image encoders": max(IMAGE_ENCODER.largest_leaf_bytes, VAE.largest_leaf_bytes),
            "denoise": TRANSFORMER.largest_leaf_bytes,
            "decode": VAE.largest_leaf_bytes,
        }
    work = {
        "text encoder": qwen,
        "glyph encoder": byt5,
        "image encoders": images,
        "denoise": denoise,
        "decode": decode,
    }
    phases = tuple(Phase(name, weights[name], work[name]) for name in work)
    return Peak(width, height, num_frames, offload, text_encoder_resident, phases)


def peak_bytes(
    size: str | tuple[int, int],
    num_frames: int,
    offload: str = "none",
    text_encoder_resident: bool = False,
) -> int:
    """:attr:`Peak.bytes` of :func:`peak`."""
    return peak(size, num_frames, offload, text_encoder_resident).bytes


def fits(
    total_gpu_bytes: int,
    size: str | tuple[int, int],
    num_frames: int,
    offload: str = "none",
    text_encoder_resident: bool = False,
    transformer_bytes: int | None = None,
) -> bool:
    """Whether a GPU of ``total_gpu_bytes`` (its whole memory, as ``torch.cuda.mem_get_info``'s
    second value) holds the request: :attr:`Peak.required`."""
    need = peak(size, num_frames, offload, text_encoder_resident, transformer_bytes)
    return need.required <= total_gpu_bytes


def refusal(
    total_gpu_bytes: int,
    size: str | tuple[int, int],
    num_frames: int,
    offload: str = "none",
    text_encoder_resident: bool = False,
    transformer_bytes: int | None = None,
) -> str | None:
    """None where the request fits, else one line that says why and what would fit."""
    need = peak(size, num_frames, offload, text_encoder_resident, transformer_bytes)
    if need.required <= total_gpu_bytes:
        return None
    width, height = need.width, need.height
    others = [
        mode
        for mode in OFFLOAD_MODES[OFFLOAD_MODES.index(offload) + 1 :]
        if fits(total_gpu_bytes, (width, height), num_frames, mode, False, transformer_bytes)
    ]
    fewer = next(
        (
            n
            for n in range(num_frames - FRAME_STEP, MIN_FRAMES - 1, -FRAME_STEP)
            if fits(
                total_gpu_bytes,
                (width, height),
                n,
                offload,
                text_encoder_resident,
                transformer_bytes,
            )
        ),
        None,
    )
    ways = []
    if others:
        ways.append(f"FRAMECAST_OFFLOAD={others[0]}")
    if fewer is not None:
        ways.append(f"at most {fewer} frames")
    advice = "; it would fit with " + " or ".join(ways) if ways else ""
    return (
        f"HunyuanVideo 1.5 at {width}x{height}, {num_frames} frames, FRAMECAST_OFFLOAD={offload} "
        f"needs about {need.required / GiB:.1f} GiB of GPU memory and this GPU has "
        f"{total_gpu_bytes / GiB:.1f} GiB (computed: a peak of {need.describe()}, plus allocator "
        f"slack and the CUDA context){advice}"
    )


def worst_size(resolution: str, num_frames: int = MAX_FRAMES) -> tuple[int, int]:
    """The size bucket of ``resolution`` with the largest peak at ``num_frames`` (the most
    tokens, then the most VAE tiles): what a worker serving any aspect ratio must hold."""
    from framecast.models.hunyuan15_i2v import BUCKET_BASE, BUCKETS

    return max(
        BUCKETS.buckets(BUCKET_BASE[resolution]),
        key=lambda s: (peak_bytes(s, num_frames), s),
    )


def text_encoder_headroom(
    size: str | tuple[int, int] = "720p", num_frames: int = MAX_FRAMES
) -> int:
    """The GPU memory that must stay free, once every model is loaded (the text encoder too),
    for a request of ``size`` and ``num_frames`` to run with the text encoder staying on the
    GPU (``offload=none``): the largest working set, and the allocator's slack on the whole
    peak. The engine's ``keep_on_gpu`` compares it with what ``mem_get_info`` reports free,
    which the CUDA context has already taken its share of."""
    need = peak(size, num_frames, "none", text_encoder_resident=True)
    weights = sum(c.bytes for c in COMPONENTS)
    return need.required - CUDA_CONTEXT - weights


# -- The table of docs/performance.md ----------------------------------------------------------

CARDS: Final = (
    ("24 GB", 24_564 * MiB),  # RTX 4090
    ("48 GB", 49_140 * MiB),  # RTX 6000 Ada, A6000 (an L40S reports 46,068 MiB)
    ("80 GB", 81_559 * MiB),  # H100, A100 80GB
    ("141 GB", 143_771 * MiB),  # H200
)
"""Card sizes as ``torch.cuda.mem_get_info`` reports their total."""

TABLE_CASES: Final = tuple((r, n) for r in RESOLUTIONS for n in (DEFAULT_FRAMES, MAX_FRAMES))


def _gib(n: int) -> str:
    return f"{n / GiB:.1f}"


def table() -> str:
    """The markdown of docs/performance.md's "HunyuanVideo 1.5: peak GPU memory, computed"."""
    lines = [
        "| size, frames | `FRAMECAST_OFFLOAD` | peak GiB | at | weights + working set "
        "| " + " | ".join(name for name, _ in CARDS) + " |",
        "|---|---|---|---|---|" + "---|" * len(CARDS),
    ]
    for resolution, frames in TABLE_CASES:
        width, height = SIZES[resolution]
        for offload in OFFLOAD_MODES:
            residents = (False, True) if offload == "none" else (False,)
            for resident in residents:
                p = peak(resolution, frames, offload, resident)
                mode = f"`{offload}`" + (", text encoder resident" if resident else "")
                cards = ["yes" if p.required <= total else "no" for _, total in CARDS]
                lines.append(
                    f"| {resolution} {width}x{height}, {frames} | {mode} | {_gib(p.bytes)} | "
                    f"{p.phase.name} | {_gib(p.phase.weights)} + {_gib(p.phase.work)} | "
                    + " | ".join(cards)
                    + " |"
                )
    return "\n".join(lines)


def parts() -> str:
    """The parts the table is made of, one line each, in GiB."""
    weights = ", ".join(
        f"{c.name} {_gib(c.bytes)} ({c.params / 1e9:.2f}B x {c.bytes_per_param})"
        for c in COMPONENTS
    )
    lines = [f"- weights: {weights}"]
    for resolution, frames in TABLE_CASES:
        width, height = SIZES[resolution]
        lines.append(
            f"- {resolution} {width}x{height}, {frames} frames: "
            f"{tokens(width, height, frames):,} tokens; "
            f"transformer pass {_gib(transformer_pass_bytes(width, height, frames))}; "
            f"VAE decode {_gib(vae_decode_bytes(width, height, frames))}"
        )
    lines.append(
        f"- text encoding: Qwen2.5-VL {_gib(qwen_encode_bytes())}, ByT5 "
        f"{byt5_encode_bytes() / MiB:.0f} MiB; image encoding (VAE, one frame whole) "
        f"{_gib(vae_encode_bytes(*SIZES['720p']))} at 720p"
    )
    for res in RESOLUTIONS:
        most = text_encoder_headroom(worst_size(res), MAX_FRAMES)
        default = text_encoder_headroom(worst_size(res, DEFAULT_FRAMES), DEFAULT_FRAMES)
        lines.append(
            f"- text encoder headroom ({res}, {MAX_FRAMES} frames, the worst bucket): "
            f"{_gib(most)}; at {DEFAULT_FRAMES} frames {_gib(default)}"
        )
    return "\n".join(lines)


def main() -> None:
    print("HunyuanVideo 1.5 image-to-video, one request: peak GPU memory, computed (not measured)")
    print()
    print(parts())
    print()
    print(table())


if __name__ == "__main__":
    main()
