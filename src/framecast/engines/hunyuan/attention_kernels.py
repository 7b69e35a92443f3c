"""The attention kernels ``FRAMECAST_ATTENTION`` can choose, as far as they are known without
torch: what each takes and which Python module it comes in. The loaders check the module before
torch (seconds) is imported; speedups.py maps each name to diffusers' backend and runs it."""

from __future__ import annotations

import importlib.util

ATTENTION_HINTS: dict[str, str] = {
    "cudnn": "it needs a CUDA GPU and a torch build with cuDNN attention",
    "flash": "on a GPU it needs one of the Ampere generation or later",
    "flash-attn": "install flash-attn 2.6.3 or later, built for this torch and CUDA",
    "flash-attn-3": (
        "build FlashAttention-3 (the hopper/ folder of Dao-AILab/flash-attention) for this torch"
    ),
    "sage": "install SageAttention 2.1.1 or later (built from source; PyPI's 1.x is too old)",
}
"""What each ``FRAMECAST_ATTENTION`` kernel but ``auto`` takes, said when it cannot run."""

ATTENTION_PACKAGES: dict[str, str] = {
    "flash-attn": "flash_attn",
    "flash-attn-3": "flash_attn_interface",
    "sage": "sageattention",
}
"""The Python module each kernel from outside torch comes in."""


def missing_attention_package(choice: str) -> str | None:
    """Why ``FRAMECAST_ATTENTION=choice`` cannot run for want of its package, or None. A
    module look-up, no import: the engines run it before torch (seconds) is imported, and the
    kernel's own check (speedups.py) once it is."""
    package = ATTENTION_PACKAGES.get(choice)
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return (
        f"FRAMECAST_ATTENTION={choice} needs the Python module {package}, which is not "
        f"installed; {ATTENTION_HINTS[choice]}, or use FRAMECAST_ATTENTION=auto"
    )
