"""LoRAs: the adapter files in ``FRAMECAST_LORA_DIR``, and the ones a worker keeps loaded.

A LoRA's name is its file name without ``.safetensors``. Which files a model reads is its own
(the ``lora_loader`` of its :class:`~framecast.engines.hunyuan.blocks.TransformerSpec`):
HunyuanVideo-I2V's are whatever diffusers' ``HunyuanVideoLoraLoaderMixin.load_lora_weights``
reads, plus kohya/musubi-tuner's ``lora_unet_*`` layout (lora_formats.py); HunyuanVideo 1.5's,
for which diffusers has no loader, are read and injected with PEFT by
engines/hunyuan15/lora_formats.py. Everything else here, the cache, the switching and the
compiled slots, works on the transformer alone (its PEFT layers and diffusers'
``PeftAdapterMixin``), the same for both models. The folder is read afresh on
every look-up, so a file copied in later is usable at once, and a file replaced under the same
name is loaded again (the cache keys on size and modification time).

A request names up to :data:`MAX_LORAS` LoRAs with a scale each. A worker keeps the last
``FRAMECAST_LORA_CACHE`` it used loaded and unloads the least recently used beyond that. How a
request switches between them depends on whether the transformer blocks are compiled:

- Eager: each LoRA is its own PEFT adapter, switched with diffusers' ``set_adapters(names,
  weights)``; a request without LoRAs runs with ``disable_lora()``, which is the base model to the
  bit (tests/unit/test_hunyuan_loras.py).
- Compiled (:meth:`LoraAdapters.prepare_for_compile`, called by the engine before it compiles):
  any change to the modules, the active adapter list or a float scaling recompiles. So before
  compiling, every linear layer of the transformer gets :data:`MAX_LORAS` adapter *slots* of rank
  ``FRAMECAST_LORA_MAX_RANK`` with their scalings turned into tensors (PEFT's
  ``prepare_model_for_compiled_hotswap``). A request's LoRAs are copied into slots 0..k-1, and
  their scales written into the scaling tensors, in place: one graph per k (0 to 3), never a
  recompile for another LoRA, rank or scale. The cache then holds each LoRA's weights ready to
  copy. Why not diffusers' ``load_lora_weights(hotswap=True)`` + ``set_adapters``: its
  ``set_adapters`` writes each scaling back as a float (a recompile on any new weight: measured
  on the tiny model), computed from the rank and alpha of the slot's *first* adapter (PEFT's
  ``set_scale``: a wrong scale after swapping in another), and its hot swap refuses an adapter
  whose dropout or alpha pattern differs from the slot's first one
  (``check_hotswap_configs_compatible``). The copy below is PEFT's hot swap (zero padding,
  zeroing what the new LoRA does not target) with the scale kept per layer.

Both FP8 modes (``FRAMECAST_LINEAR=fp8`` and ``fp8-weight``) take LoRAs, eager and compiled,
through all of the above unchanged. Their layers are ``nn.Linear`` subclasses that name a
``compute_dtype`` (fp8.py), so PEFT wraps them in its own ``lora.Linear`` as it does any linear
layer and keeps the adapters in the compute dtype: a layer returns its FP8 output plus
``scale * B(A(x))`` computed in bf16 (float32 on the CPU) from its input. Why not the
alternatives: PEFT's registry of custom layers (``LoraConfig._register_custom_module``) lives on
each config, and diffusers' loader builds a config of its own for every file, so our classes
could only be registered by patching diffusers; a LoRA applied outside PEFT would need its own
loading, switching, disabling and slots beside PEFT's. Merging (diffusers' ``fuse_lora``) is
never used: added to e4m3 rows that carry their own scales it would be wrong, and PEFT's merge
fails on a float8 weight anyway (torch refuses to promote float8).

No torch at import: the API and the CLI list and check names with :class:`LoraFolder`.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framecast.errors import InputError
from framecast.models.request import MAX_LORAS, LoraChoice

if TYPE_CHECKING:
    import torch

    from framecast.settings import Settings

log = logging.getLogger("framecast.engines.hunyuan.loras")

LORA_SUFFIX = ".safetensors"
_STAGING = "framecast_staging"
_SLOT = "framecast_slot{}"


@dataclass(frozen=True)
class LoraSettings:
    folder: Path | None = None
    cache: int = 4
    max_rank: int = 128

    @classmethod
    def of(cls, settings: Settings) -> LoraSettings:
        return cls(settings.lora_dir, settings.lora_cache, settings.lora_max_rank)

    def __post_init__(self) -> None:
        # A request's own LoRAs must fit in the cache together.
        if self.cache < MAX_LORAS:
            raise ValueError(f"the LoRA cache must hold at least {MAX_LORAS}, got {self.cache}")


class LoraError(InputError):
    """A LoRA a request names cannot be used (HTTP 422 at submit, a failed request later)."""


@dataclass(frozen=True)
class LoraFile:
    name: str
    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class AppliedLora:
    """What a result records about one LoRA it used."""

    name: str
    scale: float
    sha256: str

    def as_metadata(self) -> dict[str, Any]:
        return {"path": self.name, "scale": self.scale, "sha256": self.sha256}


class LoraFolder:
    """The LoRA files in one folder, read afresh on every call."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._hashes: dict[LoraFile, str] = {}

    def names(self) -> list[str]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(
            p.name.removesuffix(LORA_SUFFIX)
            for p in self.folder.iterdir()
            if p.name.endswith(LORA_SUFFIX) and not p.name.startswith(".") and p.is_file()
        )

    def file(self, name: str) -> LoraFile:
        path = self._path(name)
        try:
            stat = path.stat() if path is not None else None
        except OSError:
            stat = None
        if path is None or stat is None:
            raise LoraError(
                f"no LoRA named '{name}' in FRAMECAST_LORA_DIR; available: "
                f"{', '.join(self.names()) or 'none'}",
                field="loras",
            )
        return LoraFile(name, path, stat.st_size, stat.st_mtime_ns)

    def sha256(self, file: LoraFile) -> str:
        """The file's SHA-256, computed once per version of the file."""
        if file not in self._hashes:
            digest = hashlib.sha256()
            with file.path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            self._hashes[file] = digest.hexdigest()
        return self._hashes[file]

    def unknown(self, choices: Sequence[LoraChoice]) -> InputError | None:
        """The 422 for the first name not in the folder (in the API's validation-error
        shape, listing what is there), or None if all are."""
        available = self.names()
        for i, choice in enumerate(choices):
            if choice.name in available:
                continue
            where = f"loras.{i}.path"
            have = (
                f"available: {', '.join(available)}"
                if available
                else "this server has no LoRAs"
                + ("" if self.folder is not None else " (FRAMECAST_LORA_DIR is not set)")
            )
            message = f"{where}: no LoRA named '{choice.name}'; {have}"
            detail = {"field": where, "message": message, "allowed": available}
            return InputError(message, details=[detail])
        return None

    def _path(self, name: str) -> Path | None:
        # Only names the folder lists: a name is never joined into a path unchecked.
        if self.folder is None or name not in self.names():
            return None
        return self.folder / f"{name}{LORA_SUFFIX}"


@dataclass
class _Loaded:
    """One cached LoRA: a PEFT adapter (eager) or its weights ready to copy (compiled)."""

    file: LoraFile
    sha256: str
    adapter: str | None = None
    weights: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = field(default_factory=dict)
    """Compiled mode: per LoRA layer, (A [r, in], B [out, r], alpha / r)."""


@dataclass
class _Slot:
    holds: LoraFile | None = None
    scale: float | None = None


class LoraAdapters:
    """The LoRAs loaded into one pipeline's transformer, switched per request."""

    def __init__(self, pipe: Any, settings: LoraSettings) -> None:
        """``pipe``: a pipeline of either Hunyuan model; its transformer's spec says how a LoRA
        file is read into it."""
        from framecast.engines.hunyuan.blocks import spec_of

        self.pipe = pipe
        self.transformer = pipe.transformer
        self.spec = spec_of(self.transformer)
        self.settings = settings
        self.folder = LoraFolder(settings.folder)
        if settings.folder is not None and not settings.folder.is_dir():
            log.warning("FRAMECAST_LORA_DIR=%s is not a folder (yet)", settings.folder)
        self._cache: OrderedDict[str, _Loaded] = OrderedDict()
        self._slots: list[_Slot] | None = None  # set once prepared for compile
        self._layers: dict[str, Any] = {}
        self._active_k: int | None = None
        self._counter = 0

    def loaded(self) -> list[str]:
        """Names in the cache, least recently used first."""
        return list(self._cache)

    # -- compile ------------------------------------------------------------------------------

    def prepare_for_compile(self) -> None:
        """Give every linear layer its adapter slots; call before compiling the blocks."""
        if self.settings.folder is None or self._slots is not None:
            return
        import torch
        from peft import LoraConfig
        from peft.tuners.lora import LoraLayer
        from peft.utils.hotswap import prepare_model_for_compiled_hotswap

        transformer = self.transformer
        if self._cache:
            transformer.unload_lora()
            self._cache.clear()
        rank = self.settings.max_rank
        # The FP8 layers too: they subclass nn.Linear for PEFT (see the module's doc).
        linears = [n for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)]
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=linears)
        for i in range(MAX_LORAS):
            transformer.add_adapter(config, adapter_name=_SLOT.format(i))
        prepare_model_for_compiled_hotswap(transformer, target_rank=rank)
        self._layers = {n: m for n, m in transformer.named_modules() if isinstance(m, LoraLayer)}
        with torch.no_grad():
            for layer in self._layers.values():
                for i in range(MAX_LORAS):
                    layer.lora_B[_SLOT.format(i)].weight.zero_()
                    layer.scaling[_SLOT.format(i)].fill_(0.0)
        self._slots = [_Slot() for _ in range(MAX_LORAS)]
        self._activate_slots(0)

    # -- per request --------------------------------------------------------------------------

    def use(self, choices: Sequence[LoraChoice]) -> list[AppliedLora]:
        """Make the transformer compute with exactly these LoRAs at these scales."""
        if len(choices) > MAX_LORAS:
            raise LoraError(f"at most {MAX_LORAS} LoRAs per request", field="loras")
        entries = [self._load(c.name, keep={c.name for c in choices}) for c in choices]
        if self._slots is not None:
            self._use_slots(entries, [c.scale for c in choices])
        elif entries:
            # Both every time (milliseconds): a request that failed half way through loading
            # leaves the layers in a state nothing else records.
            self.transformer.enable_lora()
            adapters = [e.adapter for e in entries if e.adapter is not None]
            self.transformer.set_adapters(adapters, [c.scale for c in choices])
        elif getattr(self.transformer, "peft_config", None):
            # Not weight 0: disabled layers run the base layer alone, the base model to the bit.
            self.transformer.disable_lora()
        return [
            AppliedLora(c.name, c.scale, e.sha256) for c, e in zip(choices, entries, strict=True)
        ]

    def recorded(self, choices: Sequence[LoraChoice]) -> dict[str, Any]:
        """What a result records of ``choices``: ``{"loras": [{"path", "scale", "sha256"}]}``,
        nothing for a request without LoRAs."""
        if not choices:
            return {}
        return {"loras": [applied.as_metadata() for applied in self.describe(choices)]}

    def describe(self, choices: Sequence[LoraChoice]) -> list[AppliedLora]:
        """What :meth:`use` would record for ``choices`` (hashing the files if need be)."""
        out = []
        for choice in choices:
            loaded = self._cache.get(choice.name)
            sha = loaded.sha256 if loaded else self.folder.sha256(self.folder.file(choice.name))
            out.append(AppliedLora(choice.name, choice.scale, sha))
        return out

    # -- loading ------------------------------------------------------------------------------

    def _load(self, name: str, keep: set[str]) -> _Loaded:
        file = self.folder.file(name)
        cached = self._cache.get(name)
        if cached is not None and cached.file == file:
            self._cache.move_to_end(name)
            return cached
        if cached is not None:  # replaced on disk under the same name
            self._forget(name)
        while len(self._cache) >= self.settings.cache:
            oldest = next(n for n in self._cache if n not in keep)
            log.info("LoRA %s unloaded (least recently used)", oldest)
            self._forget(oldest)
        started = time.perf_counter()
        sha256 = self.folder.sha256(file)
        if self._slots is not None:
            loaded = _Loaded(file, sha256, weights=self._stage(file))
        else:
            loaded = _Loaded(file, sha256, adapter=self._load_adapter(file))
        self._cache[name] = loaded
        log.info(
            "LoRA %s loaded in %.2f s (sha256 %s)", name, time.perf_counter() - started, sha256
        )
        return loaded

    def _load_adapter(self, file: LoraFile) -> str:
        self._counter += 1
        adapter = f"framecast_{self._counter}"
        self._load_weights(file, adapter)
        try:
            rank = max(layer.r[adapter] for layer in self._adapter_layers(adapter))
            self._check_rank(file, rank)
        except LoraError:
            self.transformer.delete_adapters(adapter)
            raise
        return adapter

    def _stage(self, file: LoraFile) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
        # Loaded as an ordinary adapter, so diffusers reads every format, alpha and per-layer
        # rank, then copied out and deleted: the modules are as they were, nothing recompiles.
        self._load_weights(file, _STAGING)  # cleans up after itself if it fails
        try:
            weights = {}
            for name, layer in self._adapter_layers(_STAGING, named=True):
                if name not in self._layers:
                    raise LoraError(
                        f"LoRA '{file.name}' adapts {name}, which is not a linear layer; a "
                        "compiled worker can only swap LoRAs on linear layers",
                        field="loras",
                    )
                if layer.lora_B[_STAGING].bias is not None:
                    raise LoraError(
                        f"LoRA '{file.name}' has bias terms, which a compiled worker cannot swap",
                        field="loras",
                    )
                a = layer.lora_A[_STAGING].weight.detach().clone()
                b = layer.lora_B[_STAGING].weight.detach().clone()
                self._check_rank(file, a.shape[0])
                weights[name] = (a, b, float(layer.scaling[_STAGING]))
        finally:
            with warnings.catch_warnings():
                # PEFT activates the new adapter on some layers and says so as it goes.
                warnings.filterwarnings("ignore", message=f"Adapter {_STAGING} was active")
                self.transformer.delete_adapters(_STAGING)
            self._active_k = None  # so the next request sets the active slots again
        return weights

    def _load_weights(self, file: LoraFile, adapter: str) -> None:
        transformer = self.transformer
        try:
            self.spec.lora_loader(self.pipe, file.path, adapter)
        except Exception as exc:  # a bad file fails in many ways; all mean "not this LoRA"
            if adapter in getattr(transformer, "peft_config", {}):
                transformer.delete_adapters(adapter)
            reason = (str(exc).strip().splitlines() or [""])[0][:300]
            raise LoraError(
                f"LoRA '{file.name}' could not be loaded: {type(exc).__name__}: {reason}",
                field="loras",
            ) from exc
        if adapter not in getattr(transformer, "peft_config", {}):
            raise LoraError(
                f"LoRA '{file.name}' has no weights for the {self.spec.model} transformer "
                "(is it a LoRA for another model?)",
                field="loras",
            )

    def _check_rank(self, file: LoraFile, rank: int) -> None:
        if rank > self.settings.max_rank:
            raise LoraError(
                f"LoRA '{file.name}' has rank {rank}, above FRAMECAST_LORA_MAX_RANK="
                f"{self.settings.max_rank}; raise that setting on the workers to use it",
                field="loras",
            )

    def _adapter_layers(self, adapter: str, named: bool = False) -> list[Any]:
        from peft.tuners.lora import LoraLayer

        return [
            (n, m) if named else m
            for n, m in self.transformer.named_modules()
            if isinstance(m, LoraLayer) and adapter in m.lora_A
        ]

    def _forget(self, name: str) -> None:
        loaded = self._cache.pop(name)
        if loaded.adapter is not None:
            self.transformer.delete_adapters(loaded.adapter)
        if self._slots is not None:
            for slot in self._slots:
                if slot.holds == loaded.file:
                    slot.holds = None  # its weights stay until overwritten; inactive anyway

    # -- compiled slots -----------------------------------------------------------------------

    def _use_slots(self, entries: list[_Loaded], scales: list[float]) -> None:
        import torch

        assert self._slots is not None
        k = len(entries)
        # Order does not change the sum: keep a LoRA in the slot it already occupies.
        placed: dict[int, int] = {}
        for i, entry in enumerate(entries):
            for s in range(k):
                if s not in placed and self._slots[s].holds == entry.file:
                    placed[s] = i
                    break
        rest = iter(i for i in range(k) if i not in placed.values())
        for s in range(k):
            if s not in placed:
                placed[s] = next(rest)
        with torch.no_grad():
            for s, i in placed.items():
                self._fill_slot(s, entries[i], scales[i])
        self._activate_slots(k)

    def _fill_slot(self, s: int, entry: _Loaded, scale: float) -> None:
        assert self._slots is not None
        slot, adapter = self._slots[s], _SLOT.format(s)
        swap = slot.holds != entry.file
        if not swap and slot.scale == scale:
            return
        for name, layer in self._layers.items():
            got = entry.weights.get(name)
            if got is None:
                if swap:
                    layer.lora_B[adapter].weight.zero_()
                    layer.scaling[adapter].fill_(0.0)
                continue
            a, b, base_scale = got
            if swap:
                rank = a.shape[0]
                lora_a, lora_b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
                lora_a.zero_()
                lora_a[:rank].copy_(a)
                lora_b.zero_()
                lora_b[:, :rank].copy_(b)
            layer.scaling[adapter].fill_(scale * base_scale)
        slot.holds, slot.scale = entry.file, scale

    def _activate_slots(self, k: int) -> None:
        # Always slots 0..k-1: one compiled graph per k, whichever LoRAs they hold.
        if k == self._active_k:
            return
        self._active_k = k
        active = [_SLOT.format(i) for i in range(k)]
        for layer in self._layers.values():
            if k == 0:
                layer.enable_adapters(False)
            else:
                layer.enable_adapters(True)
                layer.set_adapter(active, inference_mode=True)
