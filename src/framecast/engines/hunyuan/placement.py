"""Where a Hunyuan pipeline's models live: the device, the offload mode and whether the text
encoder stays on the GPU between requests. Shared by the HunyuanVideo-I2V and 1.5 engines,
which each choose their own precisions and how much GPU memory the text encoder must leave."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

import torch

from framecast.engines.base import PEAK_GPU_MEMORY_KEY, EngineOutOfMemory, EngineUnavailable

if TYPE_CHECKING:
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline


class Placement(Protocol):
    """What these functions read of an engine's own ``Placement``."""

    @property
    def device(self) -> torch.device: ...

    @property
    def offload(self) -> str: ...

    @property
    def text_encoder_resident(self) -> bool: ...


def choose_device(device_spec: str) -> torch.device:
    """The device ``FRAMECAST_DEVICE`` names (``auto``: the GPU if torch sees one), or an
    :class:`EngineUnavailable` that says why it cannot be used."""
    if device_spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device_spec)
    except RuntimeError as exc:
        raise EngineUnavailable(f"FRAMECAST_DEVICE={device_spec}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineUnavailable(
            f"FRAMECAST_DEVICE={device_spec} but torch sees no CUDA GPU "
            f"(torch {torch.__version__}); install a CUDA build of torch or use cpu"
        )
    return device


def copy_out_of_mmap(parts: Iterable[torch.nn.Module]) -> None:
    """Give every weight of ``parts`` memory of its own.

    from_pretrained leaves CPU weights memory-mapped from the safetensors files, 8-byte aligned;
    some CPU matmul kernels then round differently than on aligned memory, so the same model
    would give (slightly) different videos depending on how it was loaded. On a GPU the copy to
    the device does this anyway.
    """
    with torch.no_grad():
        for part in parts:
            for tensor in [*part.parameters(), *part.buffers()]:
                tensor.data = tensor.data.clone()


def place(pipe: DiffusionPipeline, placement: Placement, parts: Iterable[torch.nn.Module]) -> None:
    """Put ``pipe`` on the device as ``placement`` says. Without offloading, each of ``parts``
    moves there, the text encoder only if it is resident."""
    device = placement.device
    if placement.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif placement.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif placement.offload == "group":
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=True,
        )
    else:
        for part in parts:
            if part is not pipe.text_encoder or placement.text_encoder_resident:
                part.to(device)


def weight_bytes(module: torch.nn.Module) -> int:
    """The bytes of ``module``'s weights as they are now (FP8 ones at one byte each)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


def fits_beside(module: torch.nn.Module, device: torch.device, headroom: int) -> bool:
    """Whether ``module``'s weights fit on the GPU ``device`` and leave ``headroom`` bytes free."""
    free, _total = torch.cuda.mem_get_info(device)
    return bool(free - weight_bytes(module) >= headroom)


def keep_on_gpu(module: torch.nn.Module, placement: Placement, headroom: int) -> bool:
    """Move ``module`` to the device to stay, where that is a GPU used without offloading and
    ``module`` fits there beside ``headroom``; whether it moved."""
    device = placement.device
    if device.type != "cuda" or placement.offload != "none":
        return False
    if not fits_beside(module, device, headroom):
        return False
    module.to(device)
    return True


@contextlib.contextmanager
def visiting(text_encoder: torch.nn.Module, placement: Placement) -> Iterator[None]:
    """The text encoder on the device for the block where, used without offloading, it is not
    resident; it leaves afterwards so denoising has the GPU's memory to itself."""
    visit = placement.offload == "none" and not placement.text_encoder_resident
    if visit:
        text_encoder.to(placement.device)
    try:
        yield
    finally:
        if visit:
            text_encoder.to("cpu")


@contextlib.contextmanager
def out_of_memory_as_engine_error() -> Iterator[None]:
    """torch's out-of-memory error (CUDA's, or another accelerator's) as
    :class:`EngineOutOfMemory`, the worker's to tell apart from other failures."""
    try:
        yield
    except torch.OutOfMemoryError as exc:  # torch.cuda.OutOfMemoryError is the same class
        raise EngineOutOfMemory(exc) from exc


def tidy(pipe: DiffusionPipeline, placement: Placement) -> None:
    """Put everything back after a request: a cancel or an error leaves the last model of
    ``offload="model"`` on the GPU."""
    if placement.offload == "model":
        pipe.maybe_free_model_hooks()  # type: ignore[no-untyped-call]
    if placement.device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak_memory(placement: Placement) -> None:
    """Start measuring one request's peak GPU memory (a no-op off the GPU)."""
    if placement.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(placement.device)


def peak_memory(placement: Placement) -> dict[str, int]:
    """The most GPU memory torch held for tensors since :func:`reset_peak_memory` (not the
    allocator's cache around them), as result metadata; nothing off the GPU."""
    if placement.device.type != "cuda":
        return {}
    return {PEAK_GPU_MEMORY_KEY: int(torch.cuda.max_memory_allocated(placement.device))}
