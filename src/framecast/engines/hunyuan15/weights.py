"""Which HunyuanVideo 1.5 image-to-video checkpoint to load, and whether all of it is there.

No torch here. ``FRAMECAST_HUNYUAN15_MODEL`` is, as for HunyuanVideo-I2V
(:mod:`framecast.engines.hunyuan.weights`, which does the work): ``tiny-random``, a local
diffusers-format directory, or a hub id already in the Hugging Face cache (a worker never
downloads; ``framecast weights download`` does, once).

Tencent publishes five image-to-video transformers for 1.5; hunyuanvideo-community converts each
into a complete diffusers pipeline, whose scheduler and guider configs carry that checkpoint's
official flow shift and guidance scale (:data:`CHECKPOINTS` lists them with the step counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from framecast.engines.hunyuan import weights as i2v_weights
from framecast.engines.hunyuan.weights import TINY_RANDOM, ModelSource, WeightsError

__all__ = [
    "CHECKPOINTS",
    "COMPONENTS",
    "DEFAULT_MODEL",
    "SETTING",
    "TINY_RANDOM",
    "Checkpoint",
    "ModelSource",
    "WeightsError",
    "checkpoint",
    "download",
    "missing_files",
    "resolve_model",
]

SETTING: Final = "FRAMECAST_HUNYUAN15_MODEL"
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


@dataclass(frozen=True)
class Checkpoint:
    """One of Tencent's 1.5 image-to-video transformers and how the official code runs it
    (``hyvideo/commons/__init__.py`` ``PIPELINE_CONFIGS``; README "Optimal Inference
    Configurations")."""

    version: str
    """The official ``transformer_version`` (the subfolder of ``tencent/HunyuanVideo-1.5``)."""
    repo_id: str
    """The diffusers-format copy on the Hugging Face hub."""
    resolution: str
    distilled: str | None
    """``"cfg"``: guidance distilled into the weights (guidance 1, still 50 steps); ``"step"``:
    also steps (8 or 12); None: the base model."""
    num_inference_steps: int
    guidance_scale: float
    flow_shift: float

    @property
    def name(self) -> str:
        """Short name, for `framecast weights download`: ``480p``, ``720p_distilled``, ..."""
        return self.version.replace("_i2v", "")


CHECKPOINTS: Final = (
    Checkpoint(
        "480p_i2v", "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v",
        "480p", None, 50, 6.0, 5.0,
    ),
    Checkpoint(
        "720p_i2v", "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_i2v",
        "720p", None, 50, 6.0, 7.0,
    ),
    Checkpoint(
        "480p_i2v_distilled",
        "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v_distilled",
        "480p", "cfg", 50, 1.0, 5.0,
    ),
    Checkpoint(
        "720p_i2v_distilled",
        "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_i2v_distilled",
        "720p", "cfg", 50, 1.0, 7.0,
    ),
    Checkpoint(
        # Official: "8 or 12 (recommended)" steps; PIPELINE_CONFIGS defaults to 12.
        "480p_i2v_step_distilled",
        "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v_step_distilled",
        "480p", "step", 12, 1.0, 7.0,
    ),
)  # fmt: skip

DEFAULT_MODEL: Final = CHECKPOINTS[0].repo_id
"""The default ``FRAMECAST_HUNYUAN15_MODEL``: the 480p base model, as diffusers' docs use."""


def checkpoint(repo_id: str) -> Checkpoint | None:
    """The official checkpoint published as ``repo_id``, or None for any other."""
    return next((c for c in CHECKPOINTS if c.repo_id == repo_id), None)


def resolve_model(spec: str) -> ModelSource:
    """Turn ``FRAMECAST_HUNYUAN15_MODEL`` into a complete local directory, or say what is wrong."""
    return i2v_weights.resolve_model(spec, COMPONENTS, setting=SETTING, label=LABEL)


def missing_files(path: Path) -> list[str]:
    """What a diffusers-format 1.5 image-to-video directory lacks (empty when it is complete)."""
    return i2v_weights.missing_files(path, COMPONENTS)


def download(repo_id: str, to: Path | None = None) -> Path:
    """Fetch ``repo_id`` (into the Hugging Face cache, or into ``to``) and check it is complete."""
    return i2v_weights.download(repo_id, to, COMPONENTS, setting=SETTING)
