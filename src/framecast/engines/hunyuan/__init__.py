"""The HunyuanVideo-I2V engine. The only part of framecast that imports torch and diffusers.

Importing this package costs nothing: :mod:`.weights` needs no torch, and :mod:`.engine`,
:mod:`.pipeline` and :mod:`.tiny` are imported only when the engine is built.
"""

from __future__ import annotations


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (imports torch: call it only when choosing this engine)."""
    import torch

    return bool(torch.cuda.is_available())
