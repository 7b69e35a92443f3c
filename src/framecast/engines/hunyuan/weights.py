"""Where the HunyuanVideo-I2V weights come from, and whether they are all there.

No torch here: ``framecast weights download`` and the engine choice at start-up use this
module without paying for a torch import.

``FRAMECAST_HUNYUAN_MODEL`` is one of:

- ``tiny-random``: a tiny randomly initialised model built in memory (tests, smoke runs);
- a local directory in diffusers format: loaded as it is, never touching the network;
- a hub id (``hunyuanvideo-community/HunyuanVideo-I2V``): loaded from the Hugging Face cache.
  A worker never downloads the ~40 GB itself: several workers starting together would all
  fetch it, and a start-up that takes an hour looks like a hang. ``framecast weights download``
  fetches it once, beforehand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from framecast.contract.errors import ErrorCode
from framecast.errors import FramecastError
from framecast.models.hunyuan_i2v import SETTING

TINY_RANDOM = "tiny-random"
COMPONENTS = (
    "transformer",
    "vae",
    "scheduler",
    "text_encoder",
    "text_encoder_2",
    "tokenizer",
    "tokenizer_2",
    "image_processor",
)
"""What ``HunyuanVideoImageToVideoPipeline`` is made of (its model_index.json lists them)."""

LABEL = "HunyuanVideo-I2V"

# What each component folder must hold, for this pipeline and the others that pass their own
# `components` (HunyuanVideo 1.5 adds a guider and a SigLIP image encoder).
_MODELS = {"transformer", "vae", "text_encoder", "text_encoder_2", "image_encoder"}
_CONFIG_FILE = {
    "scheduler": ("scheduler_config.json",),
    "tokenizer": ("tokenizer.json", "tokenizer_config.json"),
    "tokenizer_2": ("tokenizer.json", "tokenizer_config.json", "vocab.json"),
    "image_processor": ("preprocessor_config.json",),
    "feature_extractor": ("preprocessor_config.json",),
    "guider": ("guider_config.json",),
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


class WeightsError(FramecastError):
    """The configured weights cannot be used; the message says what to do."""

    code = ErrorCode.WEIGHTS_UNAVAILABLE
    status = 503


@dataclass(frozen=True)
class ModelSource:
    kind: str
    """``tiny-random``, ``directory`` or ``hub``."""
    name: str
    """What the user configured (the hub id, the directory, or ``tiny-random``)."""
    path: Path | None
    """The directory to load from (``None`` for ``tiny-random``)."""

    @property
    def is_tiny(self) -> bool:
        return self.kind == TINY_RANDOM


def resolve_model(
    spec: str,
    components: Sequence[str] = COMPONENTS,
    *,
    setting: str = SETTING,
    label: str = LABEL,
    download_command: str = "framecast weights download",
) -> ModelSource:
    """Turn ``FRAMECAST_HUNYUAN_MODEL`` into a complete local directory, or say what is wrong.

    Other pipelines pass their own ``components``, and the ``setting``, ``label`` and
    ``download_command`` that the messages name.
    """
    spec = spec.strip()
    if spec == TINY_RANDOM:
        return ModelSource(TINY_RANDOM, spec, None)
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        missing = missing_files(path, components)
        if missing:
            raise WeightsError(
                f"{setting}={spec} is not a complete diffusers-format "
                f"{label} directory; missing: {', '.join(missing)}. "
                f"Fetch it with `{download_command} --to DIR`."
            )
        return ModelSource("directory", spec, path.resolve())
    if spec.count("/") != 1:
        raise WeightsError(
            f"{setting}={spec} is neither an existing directory, a hub id "
            f"(owner/name) nor {TINY_RANDOM!r}"
        )
    cached = cached_snapshot(spec)
    if cached is None:
        raise WeightsError(
            f"the weights of {spec} are not in the Hugging Face cache "
            f"(HF_HOME or ~/.cache/huggingface); run `{download_command}` first, or set "
            f"{setting} to a directory that holds them"
        )
    missing = missing_files(cached, components)
    if missing:
        raise WeightsError(
            f"the cached copy of {spec} at {cached} is incomplete (missing: "
            f"{', '.join(missing)}); run `{download_command}` again to finish it"
        )
    return ModelSource("hub", spec, cached)


def missing_files(path: Path, components: Sequence[str] = COMPONENTS) -> list[str]:
    """What a diffusers-format HunyuanVideo-I2V directory (or, given its ``components``, another
    pipeline's) lacks; empty when it is complete."""
    if not path.is_dir():
        return [f"the directory {path} itself"]
    index = path / "model_index.json"
    if not index.is_file():
        return ["model_index.json"]
    try:
        listed = json.loads(index.read_text())
    except (OSError, ValueError):
        return ["a readable model_index.json"]
    missing: list[str] = []
    for name in components:
        entry = listed.get(name)
        if not (isinstance(entry, list) and len(entry) == 2 and entry[1]):
            missing.append(f"{name} (not listed in model_index.json)")
            continue
        folder = path / name
        if not folder.is_dir():
            missing.append(f"{name}/")
        elif name in _MODELS:
            missing.extend(f"{name}/{m}" for m in _missing_model_files(folder))
        elif not any((folder / f).is_file() for f in _CONFIG_FILE[name]):
            missing.append(f"{name}/{_CONFIG_FILE[name][0]}")
    return missing


def _missing_model_files(folder: Path) -> list[str]:
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    indexes = sorted(folder.glob("*.index.json"))
    if indexes:
        for index in indexes:
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError):
                missing.append(f"a readable {index.name}")
                continue
            missing.extend(sorted(s for s in shards if not (folder / s).is_file()))
    elif not any(p.suffix in _WEIGHT_SUFFIXES for p in folder.iterdir()):
        missing.append("weights (*.safetensors)")
    return missing


def cached_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - a dependency of the hunyuan extra
        raise WeightsError(
            "huggingface_hub is not installed; install framecast with the hunyuan extra"
        ) from exc
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        return None


def download(
    repo_id: str,
    to: Path | None = None,
    components: Sequence[str] = COMPONENTS,
    *,
    setting: str = SETTING,
) -> Path:
    """Fetch ``repo_id`` (into the Hugging Face cache, or into ``to``) and check it is complete
    (as a HunyuanVideo-I2V pipeline, or one made of ``components``)."""
    path = fetch_snapshot(repo_id, to, setting)
    missing = missing_files(path, components)
    if missing:
        raise WeightsError(f"downloaded {repo_id} to {path} but it lacks: {', '.join(missing)}")
    return path


def fetch_snapshot(
    repo_id: str, to: Path | None, setting: str, allow_patterns: list[str] | None = None
) -> Path:
    """Download ``repo_id`` (only the files ``allow_patterns`` match, if given) into the Hugging
    Face cache or ``to``; a WeightsError that says what to do when it cannot."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    local_dir = str(to) if to is not None else None
    try:
        if allow_patterns is None:  # the whole repository: one complete pipeline
            return Path(snapshot_download(repo_id, local_dir=local_dir))
        return Path(snapshot_download(repo_id, local_dir=local_dir, allow_patterns=allow_patterns))
    except OfflineModeIsEnabled as exc:
        raise WeightsError(
            f"cannot download {repo_id}: HF_HUB_OFFLINE is set; unset it on a machine with "
            f"network access, or copy a downloaded directory here and point {setting} at it"
        ) from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise WeightsError(
            f"cannot download {repo_id} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). Check this machine's "
            "network access (and HF_ENDPOINT / HF_TOKEN if you use a mirror), or download on "
            "another machine and copy the directory here"
        ) from exc
