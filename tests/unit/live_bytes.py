"""Peak tensor memory on any device, the CPU and ``meta`` included (neither has an allocator
that counts): a dispatch mode that adds up the storages operations create while they live."""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary


class LiveBytes(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """The bytes of the tensors alive, and the most of them at any moment, counting every
    storage an operation creates until it is freed (none that existed before: the weights).
    What a GPU's ``max_memory_allocated`` counts, less the kernels' own scratch."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.seen: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.now = 0
        self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.now -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                if storage not in self.seen:
                    nbytes = storage.nbytes()
                    self.seen[storage] = nbytes
                    self.now += nbytes
                    weakref.finalize(storage, self._free, nbytes)
        self.peak = max(self.peak, self.now)
        return out
