"""The fast path's FP8 linear layers: float8 weights and activations, one scale per row.

Opt-in (``FRAMECAST_LINEAR=fp8``) and labelled in every result, because the video is no
longer the exact model's: e4m3 keeps three mantissa bits, so each product deviates by a few
percent before the sums average it down. On Hopper and Ada GPUs the FP8 tensor cores run these
products at about twice the bf16 rate, and the weights take half the memory.

Why our own module and not torchao's ``Float8DynamicActivationFloat8WeightConfig``: torchao
refuses to build it anywhere but on a CUDA GPU of compute capability 8.9 or later, so none of
it could be tested where our CI runs. Both end in the same kernel, ``torch._scaled_mm`` with
row-wise scales, which torch also implements on the CPU: the tests below run this module's
real arithmetic at tiny scale (tests/unit/test_hunyuan_fp8.py).

Only the blocks' token-wise projections are converted: they carry nearly all the FLOPs. The
modulation layers (``norm*.linear``, one row per call), the embedders, the token refiner and
the final projection stay in bf16.
"""

from __future__ import annotations

from typing import Any

import torch

from framecast.engines.hunyuan.speedups import transformer_blocks

E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)
_ALIGN = 16
"""``_scaled_mm`` needs both dimensions of the weight to be multiples of 16."""


class Fp8Unsupported(RuntimeError):
    """This device cannot run FP8 products."""


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as e4m3 with one float32 scale per row, chosen so the row's largest value fits."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / E4M3_MAX
    return (x / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


class Float8Linear(torch.nn.Module):
    """``nn.Linear`` with its weight stored in e4m3; inputs are cast per token on the way in."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.out_dtype = linear.weight.dtype
        with torch.no_grad():
            weight, scale = _quantize_rows(linear.weight.detach())
        # A parameter, so that offloading (model, group, sequential) moves it like any weight.
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        # [1, out]: the layout _scaled_mm takes for the second operand's row-wise scales.
        self.weight_scale: torch.Tensor
        self.register_buffer("weight_scale", scale.t().contiguous())
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        quantized, scale = _quantize_rows(rows)
        # CUDA's kernel fuses the bias only into bf16/fp16 outputs (float32 is the CPU's).
        fused = self.bias is not None and self.out_dtype != torch.float32
        out = torch._scaled_mm(
            quantized,
            self.weight.t(),  # column-major, as the kernel wants it
            scale_a=scale,
            scale_b=self.weight_scale,
            bias=self.bias if fused else None,
            out_dtype=self.out_dtype,
            # Hopper's faster accumulation; part of the deviation the result is labelled with.
            use_fast_accum=True,
        )
        if self.bias is not None and not fused:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, e4m3 rows"


def check_fp8_supported(device: torch.device) -> None:
    """Raise :class:`Fp8Unsupported` with what to do where FP8 products cannot run."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < (8, 9):
            raise Fp8Unsupported(
                f"FRAMECAST_LINEAR=fp8 needs FP8 tensor cores (compute capability 8.9 or later: "
                f"Ada, Hopper, Blackwell); {torch.cuda.get_device_name(device)} is "
                f"{major}.{minor}. Use FRAMECAST_LINEAR=bf16"
            )
    elif device.type != "cpu":  # the CPU runs them (slowly), which is what the tests use
        raise Fp8Unsupported(f"FRAMECAST_LINEAR=fp8 is not supported on {device.type}")


def _convertible(name: str, module: torch.nn.Module) -> bool:
    if not isinstance(module, torch.nn.Linear) or ".norm" in f".{name}":
        return False
    return module.in_features % _ALIGN == 0 and module.out_features % _ALIGN == 0


def convert_blocks_to_fp8(transformer: Any) -> int:
    """Replace the token-wise linear layers of every transformer block, in place.

    Returns how many were replaced. A block's bf16 weights are freed once the block is done,
    so the peak is one block's worth over the converted size.
    """
    converted = 0
    for block in transformer_blocks(transformer):
        for name, module in list(block.named_modules()):
            if not _convertible(name, module):
                continue
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name) if parent_name else block
            setattr(parent, child, Float8Linear(module))
            converted += 1
    return converted
