"""The fast path's FP8 linear layers: e4m3 weights with one scale per row, for both Hunyuan
models (which layers are converted is each model's :class:`~.blocks.TransformerSpec`: the
linear layers of its repeated blocks, its modulation layers for ``fp8-weight`` only).

Two modes, both opt-in and labelled in every result, because the video is no longer the exact
model's: e4m3 keeps three mantissa bits, so each weight (and, with ``fp8``, each activation)
deviates by a few percent before the sums average it down.

- ``FRAMECAST_LINEAR=fp8`` (:class:`Float8Linear`): weights and activations in e4m3, each
  token's activations cast with their own scale, the product on the FP8 tensor cores of Ada,
  Hopper and Blackwell GPUs. Converts the blocks' token-wise projections: 9.06B of the
  HunyuanVideo-I2V transformer's 12.82B parameters, so its weights go from 23.9 to 15.4 GiB
  (HunyuanVideo 1.5: 5.44B of 8.33B, 15.5 to 10.4 GiB, its modulation layers being a third of
  its weights). The engines always compile the blocks in this mode: eagerly the per-token cast
  costs more memory traffic than the FP8 product saves; compiled, it joins the kernel that
  makes its input (the layer norm, concatenation or activation before it; checked on the CPU's
  generated code for HunyuanVideo-I2V's blocks, see docs/performance.md), though q, k and v
  each still write their own e4m3 copy.
- ``FRAMECAST_LINEAR=fp8-weight`` (:class:`Float8WeightLinear`): weights stored in e4m3 and
  upcast to the compute dtype layer by layer at each call, as the official code's
  ``--use-fp8``; the products stay bf16. Memory, not speed, on any CUDA GPU. Converts every
  linear layer of the blocks, the modulation too (12.46B parameters): 23.9 to 12.3 GiB
  (1.5: 8.15B, 15.5 to 7.9 GiB).

Why our own module and not torchao's ``Float8DynamicActivationFloat8WeightConfig``: torchao
refuses to build it anywhere but on a CUDA GPU of compute capability 8.9 or later, so none of
it could be tested where our CI runs. Both end in the same kernel, ``torch._scaled_mm`` with
row-wise scales, which torch also implements on the CPU: the tests run this module's real
arithmetic at tiny scale (tests/unit/test_hunyuan_fp8.py).

The embedders, the token refiner and the final projection stay in bf16 in both modes. ``fp8``
also leaves the modulation layers (``norm*.linear`` in both models) alone: they see one row per
call, which gains nothing from FP8 products.

LoRAs work on both (loras.py): both classes are ``nn.Linear`` subclasses with a ``compute_dtype``,
so PEFT wraps them in its own ``lora.Linear`` and keeps the adapters in the compute dtype; the
LoRA's delta is added to the FP8 layer's output, never merged into the e4m3 weight.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from framecast.engines.hunyuan.blocks import spec_of

E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)
_ALIGN = 16
"""``_scaled_mm`` needs both dimensions of the weight to be multiples of 16."""


class Fp8Unsupported(RuntimeError):
    """This device cannot run FP8 products."""


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as e4m3 with one float32 scale per row, chosen so the row's largest value fits.

    Eagerly this moves 13 bytes per bf16 element (it was 25); compiled alone, it is one kernel
    that reads ``x`` once and writes the e4m3 bytes (in a compiled block it joins the kernel
    that makes ``x``). The result is bitwise that of the plain
    ``(x / scale).clamp(-448, 448).to(e4m3)`` with ``scale = |x|.amax() / 448`` (tested).
    """
    # The largest magnitude without the temporary copy x.abs() makes; a maximum is exact in
    # any dtype.
    amax = torch.linalg.vector_norm(x, ord=math.inf, dim=-1, keepdim=True)
    scale = amax.float().clamp(min=1e-12) / E4M3_MAX
    # Divided in float32: with the scale rounded to bf16, or multiplied by its reciprocal, some
    # values round to another e4m3 neighbour. No clamp to +-448 before the cast: x / scale
    # exceeds 448 by at most one float32 rounding, and the cast rounds anything under 464 to
    # 448 anyway, so a clamp would only cost another pass over a float32 copy.
    return (x / scale).to(E4M3), scale


class _E4m3Linear(torch.nn.Linear):
    """``nn.Linear`` with its weight stored in e4m3, one float32 scale per row; the subclasses
    say how they compute with it.

    A subclass of ``nn.Linear`` (built without its ``__init__``, which would allocate a weight in
    the compute dtype) so that PEFT adapts it as a linear layer: its ``lora.Linear`` calls this
    module and adds ``scale * B(A(x))`` to the output. PEFT puts the adapters in the base
    layer's ``compute_dtype`` when it has one (as for bitsandbytes' 4-bit layers), not in the
    dtype of ``weight``: without it they would be cast to e4m3. PEFT's merge fails on the e4m3
    weight (torch refuses to promote float8), and nothing here asks for one.
    """

    weight_scale: torch.Tensor

    def __init__(self, linear: torch.nn.Linear) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = linear.weight.dtype
        with torch.no_grad():
            weight, scale = _quantize_rows(linear.weight.detach())
        # A parameter, so that offloading (model, group, sequential) moves it like any weight.
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.register_buffer("weight_scale", self._scale_layout(scale))
        self.bias = linear.bias

    @staticmethod
    def _scale_layout(scale: torch.Tensor) -> torch.Tensor:
        """The row scales ([out, 1], float32) as this layer keeps them."""
        return scale


class Float8Linear(_E4m3Linear):
    """``nn.Linear`` with its weight stored in e4m3; inputs are cast per token on the way in."""

    @staticmethod
    def _scale_layout(scale: torch.Tensor) -> torch.Tensor:
        # [1, out]: the layout _scaled_mm takes for the second operand's row-wise scales.
        return scale.t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        quantized, scale = _quantize_rows(rows)
        # CUDA's kernel fuses the bias only into bf16/fp16 outputs (float32 is the CPU's).
        fused = self.bias is not None and self.compute_dtype != torch.float32
        out = torch._scaled_mm(
            quantized,
            self.weight.t(),  # column-major, as the kernel wants it
            scale_a=scale,
            scale_b=self.weight_scale,
            bias=self.bias if fused else None,
            out_dtype=self.compute_dtype,
            # Hopper's faster accumulation; part of the deviation the result is labelled with.
            use_fast_accum=True,
        )
        if self.bias is not None and not fused:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, e4m3 rows"


class Float8WeightLinear(_E4m3Linear):
    """``nn.Linear`` with its weight stored in e4m3, upcast to the compute dtype at each call.

    Saves memory, not time: the product is the ordinary one, in the compute dtype.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # e4m3 -> float32 is exact, so the weight is rounded once, to the compute dtype; torch
        # does not promote float8 with float32 by itself. Compiled, this is one kernel.
        weight = self.weight.float().mul_(self.weight_scale).to(self.compute_dtype)
        return torch.nn.functional.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"e4m3 weight rows, {str(self.compute_dtype).removeprefix('torch.')} products"
        )


Fp8Mode = Literal["fp8", "fp8-weight"]
FP8_MODES: tuple[Fp8Mode, ...] = ("fp8", "fp8-weight")
"""The ``FRAMECAST_LINEAR`` values that convert the blocks (the other one, ``bf16``, does not)."""

_MODULES: dict[str, type[torch.nn.Module]] = {
    "fp8": Float8Linear,
    "fp8-weight": Float8WeightLinear,
}


def check_fp8_supported(device: torch.device, linear: str = "fp8") -> None:
    """Raise :class:`Fp8Unsupported` with what to do where ``linear`` (one of
    :data:`FP8_MODES`) cannot run."""
    if device.type == "cuda":
        if linear == "fp8-weight":  # no FP8 products: any CUDA GPU casts e4m3 to bf16
            return
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < (8, 9):
            raise Fp8Unsupported(
                f"FRAMECAST_LINEAR=fp8 needs FP8 tensor cores (compute capability 8.9 or later: "
                f"Ada, Hopper, Blackwell); {torch.cuda.get_device_name(device)} is "
                f"{major}.{minor}. Use FRAMECAST_LINEAR=fp8-weight (FP8 storage only, for "
                f"memory) or bf16"
            )
    elif device.type != "cpu":  # the CPU runs them (slowly), which is what the tests use
        raise Fp8Unsupported(f"FRAMECAST_LINEAR={linear} is not supported on {device.type}")


def _convertible(
    name: str, module: torch.nn.Module, linear: str, modulation: tuple[str, ...]
) -> bool:
    # Our own layers are nn.Linear too (for PEFT): never convert a layer twice.
    if not isinstance(module, torch.nn.Linear) or isinstance(module, tuple(_MODULES.values())):
        return False
    if linear == "fp8-weight":
        return True
    if any(part.startswith(modulation) for part in name.split(".")):
        return False
    return module.in_features % _ALIGN == 0 and module.out_features % _ALIGN == 0


def convert_blocks_to_fp8(
    transformer: Any, linear: str = "fp8", device: torch.device | None = None
) -> int:
    """Replace the linear layers of every transformer block that ``linear`` (one of
    :data:`FP8_MODES`) converts, in place.

    With ``device``, each block is converted there and then put back where it was: a GPU
    quantises the model in seconds where a CPU takes minutes, and one block at a time fits
    beside whatever else is there. Returns how many layers were replaced. A layer's bf16 weight
    is freed once it is replaced, so the peak is one layer's worth over the converted size.
    """
    if linear not in _MODULES:
        raise ValueError(f"linear={linear!r} is not one of {', '.join(FP8_MODES)}")
    module_type = _MODULES[linear]
    spec = spec_of(transformer)
    converted = 0
    for block in spec.blocks(transformer):
        home = next(block.parameters()).device
        if device is not None:
            block.to(device)
        for name, module in list(block.named_modules()):
            if not _convertible(name, module, linear, spec.modulation):
                continue
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name) if parent_name else block
            setattr(parent, child, module_type(module))
            converted += 1
        block.to(home)
    return converted


def convert_at_load(transformer: Any, linear: str, device: torch.device, offload: str) -> None:
    """What an engine does with a freshly loaded transformer for ``FRAMECAST_LINEAR=linear``:
    nothing for bf16; else convert its blocks on ``device`` (the caller has checked it can run
    them, :func:`check_fp8_supported`), before the offload hooks, which capture the modules
    they move, are put on."""
    if linear not in FP8_MODES:
        return
    if offload == "none":
        transformer.to(device)
    # Quantised on the GPU block by block (seconds, not minutes), also where the blocks then
    # live on the CPU.
    convert_blocks_to_fp8(transformer, linear, device)


def linear_mode(transformer: Any) -> str:
    """Which ``FRAMECAST_LINEAR`` made ``transformer``'s layers: read off the modules, so a
    pipeline converted elsewhere (the benchmark does) is labelled right too."""
    kinds = {type(m) for m in transformer.modules()}
    for mode, module_type in _MODULES.items():
        if module_type in kinds:
            return mode
    return "bf16"


def linear_label(mode: str, dtype: torch.dtype) -> str:
    """What result metadata says for ``linear``: the mode and how its products are made."""
    compute = str(dtype).removeprefix("torch.")
    if mode == "fp8":
        return "fp8 (e4m3, row-wise scales)"
    if mode == "fp8-weight":
        return f"fp8-weight (e4m3 weights, row-wise scales; {compute} products)"
    return compute
