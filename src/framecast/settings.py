"""All configuration in one place: ``FRAMECAST_*`` environment variables (and CLI flags that set them).

Nothing is read at import time: call :func:`get_settings`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from framecast.engines.hunyuan15.weights import DEFAULT_MODEL as DEFAULT_HUNYUAN15_MODEL

EngineChoice = Literal["auto", "preview", "hunyuan"]
OffloadMode = Literal["none", "model", "sequential", "group"]
AttentionChoice = Literal["auto", "cudnn", "flash", "flash-attn", "flash-attn-3", "sage"]
LinearPrecision = Literal["bf16", "fp8", "fp8-weight"]
DEFAULT_HUNYUAN_MODEL = "hunyuanvideo-community/HunyuanVideo-I2V"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMECAST_", extra="ignore")

    # Where things live
    data_dir: Path = Field(
        Path("./framecast-data"),
        description="SQLite database, media files and the generated secret key.",
    )
    database_url: str | None = Field(
        None, description="Any SQLAlchemy URL; default: SQLite in data_dir."
    )

    storage_url: str | None = Field(
        None,
        description="Where inputs and outputs are kept: s3://bucket/prefix (AWS S3, R2, MinIO; endpoint, region and credentials from the usual AWS_* settings); default: data_dir/media.",
    )

    # HTTP
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the API listens on.")
    public_base_url: str | None = Field(
        None,
        description="Base URL used in returned links (e.g. https://api.example.com); default: taken from each request.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys accepted besides those created with `framecast keys create`.",
    )
    secret_key: str | None = Field(
        None,
        description="Secret that signs output links; default: generated once and kept in data_dir/secret_key. Set the same value on every API node.",
    )
    link_ttl_seconds: int = Field(
        24 * 3600, gt=0, description="How long an output link stays valid."
    )

    # Inputs
    allow_private_urls: bool = Field(
        False,
        description="Let image_url reach loopback/private addresses. For local development and tests only.",
    )
    max_image_bytes: int = Field(
        50 * 1024 * 1024, gt=0, description="Largest input image download."
    )
    max_image_pixels: int = Field(
        40_000_000, gt=0, description="Largest input image in pixels (decompression-bomb guard)."
    )
    fetch_timeout_seconds: float = Field(
        20.0, gt=0, description="Time limit for downloading image_url, redirects included."
    )
    max_decode_bytes: int = Field(
        128 * 1024 * 1024,
        gt=0,
        description="Largest input image once decoded: width x height x channels x bytes per channel (WebP: 8 bytes per pixel), read from the image's header before anything is decoded. The default admits a 40 MP 8-bit RGB photo, not a 6300x6300 16-bit RGBA PNG.",
    )
    decode_concurrency: int = Field(
        2,
        ge=1,
        description="Image decodes (and base64 decodes of data: URIs) the API runs at once, each in a thread; with FRAMECAST_MAX_DECODE_BYTES this bounds the API's memory.",
    )
    max_body_bytes: int | None = Field(
        None,
        gt=0,
        description="Largest request body; a larger one is answered 413 before it is read. Default: 1.5 x FRAMECAST_MAX_IMAGE_BYTES + 1 MiB, room for the largest image as a base64 data: URI.",
    )

    # Workers and the queue
    engine: EngineChoice = Field(
        "auto", description="auto: hunyuan when its weights and a GPU are there, else preview."
    )
    hunyuan_model: str = Field(
        DEFAULT_HUNYUAN_MODEL,
        description="HunyuanVideo-I2V weights: a local diffusers-format directory, a hub id already in the Hugging Face cache (`framecast weights download`), or `tiny-random` (a tiny random model for tests; its videos are noise).",
    )
    hunyuan15_model: str = Field(
        DEFAULT_HUNYUAN15_MODEL,
        description="HunyuanVideo 1.5 image-to-video weights, as FRAMECAST_HUNYUAN_MODEL (which, set to `tiny-random`, selects the tiny model for every Hunyuan model).",
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated model ids a worker serves (e.g. tencent/hunyuan/image-to-video); default: every model this worker can run (see the README).",
    )
    model_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Python modules that each declare one more model (a module-level SPEC = framecast.models.ModelSpec(...)); it gets its route, /v1/models entry and the preview engine.",
    )
    device: str = Field(
        "auto",
        description="Torch device for the hunyuan engine: auto (cuda if present), cuda, cuda:N or cpu.",
    )
    offload: OffloadMode = Field(
        "none",
        description="GPU memory mode of the hunyuan engine: none (fastest; the text encoder leaves the GPU while denoising unless there is room), model, group or sequential (least memory, slowest). See docs/performance.md.",
    )
    compile: Literal["off", "on", "auto"] = Field(
        "off",
        description="torch.compile every transformer block of the hunyuan engine at start-up (auto: on a GPU). Same output, minutes of compiling once per worker; off until measured on a GPU.",
    )
    attention: AttentionChoice = Field(
        "auto",
        description="Attention kernel of the hunyuan engine once the mask is dropped: auto (PyTorch's SDPA chooses), cudnn, flash (PyTorch's own), flash-attn (the flash-attn package), flash-attn-3 (Hopper, built from source), or sage (SageAttention 2: INT8, the fast path, labelled in results). Checked at start-up.",
    )
    linear: LinearPrecision = Field(
        "bf16",
        description="Precision of the hunyuan transformer's linear layers: bf16 (exact); fp8 (faster: e4m3 weights and activations with row-wise scales, GPUs of compute capability 8.9 or later, always compiled, transformer weights 23.9 -> 15.4 GiB); or fp8-weight (less memory, not faster: e4m3 weights upcast to bf16 layer by layer, any CUDA GPU, 23.9 -> 12.3 GiB). Both fp8 modes are the fast path: results are labelled path=fast. See docs/performance.md.",
    )
    lora_dir: Path | None = Field(
        None,
        description="Folder of LoRA files (.safetensors: diffusers/PEFT keys, the original HunyuanVideo keys, or musubi-tuner/kohya `lora_unet_*` keys) that requests may name in `loras`; a LoRA's name is its file name without .safetensors. Read afresh for every request, so a file added later is usable at once. Every API node and hunyuan worker must see the same folder. HunyuanVideo-I2V only (the 1.5 pipeline has no LoRA support).",
    )
    lora_cache: int = Field(
        4,
        ge=3,  # a request's up to 3 LoRAs must fit together
        description="LoRAs a hunyuan worker keeps loaded; beyond this the least recently used is unloaded.",
    )
    lora_max_rank: int = Field(
        128,
        ge=1,
        le=1024,
        description="Highest LoRA rank a worker accepts. With FRAMECAST_COMPILE every linear layer carries 3 adapter slots of this rank (1.4 GiB each at 128 in bf16 on the full model), so that switching LoRAs never recompiles; lower it if your LoRAs are smaller.",
    )
    workers: int = Field(
        1, ge=0, description="Worker processes started by `framecast serve` (0: API only)."
    )
    lease_seconds: float = Field(
        30.0, gt=0, description="A worker's claim on a request lasts this long unless renewed."
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="Times a request is tried before it fails when its workers keep vanishing.",
    )
    poll_seconds: float = Field(0.5, gt=0, description="How often an idle worker looks for work.")
    heartbeat_seconds: float = Field(5.0, gt=0, description="How often a worker says it is alive.")

    retention: dt.timedelta | None = Field(
        None,
        description="Delete the input and output files of requests finished longer ago than this: seconds, or a number with s, m, h or d (e.g. 7d). The requests stay, marked as removed. Default: keep forever.",
    )
    retention_sweep_seconds: float = Field(
        600.0, gt=0, description="How often an idle worker runs the retention sweep."
    )

    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING or ERROR.")

    # Video
    x264_preset: str = Field("medium", description="libx264 preset for output videos.")
    x264_crf: int = Field(
        18, ge=0, le=51, description="libx264 constant rate factor for output videos."
    )
    preview_step_seconds: float = Field(
        0.0,
        ge=0,
        description="Extra delay per frame in the preview engine, to watch progress and try cancel.",
    )

    @field_validator("retention", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
            if not match:
                raise ValueError("a duration like 3600, 90m, 24h or 7d")
            seconds = (
                float(match.group(1))
                * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
            )
            if seconds <= 0:
                raise ValueError("must be more than zero")
            return dt.timedelta(seconds=seconds)
        return value

    @field_validator("api_keys", "models", "model_plugins", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'framecast.db').resolve()}"

    @property
    def body_limit(self) -> int:
        """FRAMECAST_MAX_BODY_BYTES, or room for the largest image as a data: URI (base64 is
        4/3 of the image; the rest allows for JSON escapes and the other fields)."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return self.max_image_bytes * 3 // 2 + 1024 * 1024

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    def signing_key(self) -> bytes:
        """The key that signs output links, created once per data_dir if none is configured."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # O_EXCL: when the API and a worker start together only one of them writes it.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
