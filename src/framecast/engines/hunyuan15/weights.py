"""Which HunyuanVideo 1.5 image-to-video checkpoint to load, and whether all of it is there.

No torch here. ``FRAMECAST_HUNYUAN15_MODEL`` is, as for HunyuanVideo-I2V
(:mod:`framecast.engines.hunyuan.weights`, which does the work): ``tiny-random``, a local
diffusers-format directory, or a hub id already in the Hugging Face cache (a worker never
downloads; ``framecast weights download`` does, once).

Which checkpoints there are, and their official defaults, the model's declaration says
(:data:`framecast.models.hunyuan15_i2v.CHECKPOINTS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from framecast.engines.hunyuan import weights as i2v_weights
from framecast.engines.hunyuan.weights import TINY_RANDOM, ModelSource, WeightsError
from framecast.models.hunyuan15_i2v import (
    MODEL_ID,
    SETTING,
    SR_CHECKPOINTS,
    SR_REPO,
    SrCheckpoint,
)

__all__ = [
    "COMPONENTS",
    "TINY_RANDOM",
    "ModelSource",
    "WeightsError",
    "download",
    "missing_files",
    "resolve_model",
    "resolve_sr",
    "sr_missing_files",
]

LABEL: Final = "HunyuanVideo 1.5 image-to-video"

COMPONENTS: Final = (
    "transformer",
    "vae",
    "scheduler",
    "text_encoder",
    "text_encoder_2",
    "tokenizer",
    "tokenizer_2",
    "guider",
    "image_encoder",
    "feature_extractor",
)
"""What ``HunyuanVideo15ImageToVideoPipeline`` is made of (its model_index.json lists them)."""


def resolve_model(spec: str) -> ModelSource:
    """Turn ``FRAMECAST_HUNYUAN15_MODEL`` into a complete local directory, or say what is wrong."""
    return i2v_weights.resolve_model(
        spec,
        COMPONENTS,
        setting=SETTING,
        label=LABEL,
        download_command=f"framecast weights download --model {MODEL_ID}",
    )


def missing_files(path: Path) -> list[str]:
    """What a diffusers-format 1.5 image-to-video directory lacks (empty when it is complete)."""
    return i2v_weights.missing_files(path, COMPONENTS)


SR_SETTING: Final = "FRAMECAST_HUNYUAN15_SR_MODEL"
"""The setting that says where the official SR checkpoints are."""
SR_OFF: Final = "off"


def download(repo_id: str, to: Path | None = None) -> Path:
    """Fetch ``repo_id`` (into the Hugging Face cache, or into ``to``) and check it is complete;
    ``tencent/HunyuanVideo-1.5:<sr version>`` (an SR checkpoint, as ``framecast weights list``
    names it) fetches only that checkpoint's transformer and upsampler folders."""
    repo, _, version = repo_id.partition(":")
    sr = next((c for c in SR_CHECKPOINTS if c.version == version), None)
    if repo != SR_REPO or sr is None:
        return i2v_weights.download(repo_id, to, COMPONENTS, setting=SETTING)
    folders = [f"{kind}/{sr.version}/*" for kind in ("transformer", "upsampler")]
    path = i2v_weights.fetch_snapshot(SR_REPO, to, SR_SETTING, allow_patterns=folders)
    missing = sr_missing_files(path, sr)
    if missing:
        raise WeightsError(f"downloaded {repo_id} to {path} but it lacks: {', '.join(missing)}")
    return path


def sr_missing_files(root: Path, sr: SrCheckpoint) -> list[str]:
    """What an official-layout folder lacks of one SR checkpoint (empty when it has it all)."""
    missing = []
    for kind in ("transformer", "upsampler"):
        folder = root / kind / sr.version
        if not (folder / "config.json").is_file():
            missing.append(f"{kind}/{sr.version}/config.json")
        if not folder.is_dir() or not any(folder.glob("*.safetensors")):
            missing.append(f"{kind}/{sr.version}/*.safetensors")
    return missing


def resolve_sr(spec: str) -> Path | None:
    """Where ``FRAMECAST_HUNYUAN15_SR_MODEL`` points: a local folder in the official layout, or
    the hub repo in the Hugging Face cache; None when it is ``off`` or not there (no SR
    stage on this worker, which then says so: requests for one are refused at submit)."""
    spec = spec.strip()
    if spec == SR_OFF:
        return None
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        return path.resolve() if path.is_dir() else None
    return i2v_weights.cached_snapshot(spec) if spec.count("/") == 1 else None
