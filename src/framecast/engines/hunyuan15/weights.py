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
from framecast.models.hunyuan15_i2v import MODEL_ID, SETTING

__all__ = [
    "COMPONENTS",
    "TINY_RANDOM",
    "ModelSource",
    "WeightsError",
    "download",
    "missing_files",
    "resolve_model",
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


def download(repo_id: str, to: Path | None = None) -> Path:
    """Fetch ``repo_id`` (into the Hugging Face cache, or into ``to``) and check it is complete."""
    return i2v_weights.download(repo_id, to, COMPONENTS, setting=SETTING)
