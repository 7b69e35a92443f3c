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
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from framecast.rates import parse_rate

EngineChoice = Literal["auto", "preview", "hunyuan"]
OffloadMode = Literal["none", "model", "sequential", "group"]
AttentionChoice = Literal["auto", "cudnn", "flash", "flash-attn", "flash-attn-3", "sage"]
LinearPrecision = Literal["bf16", "fp8", "fp8-weight"]


def parse_duration(value: str, *, allow_zero: bool = False) -> dt.timedelta:
    """``3600``, ``90m``, ``24h``, ``7d``: seconds, or a number with s, m, h or d."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
    if not match:
        raise ValueError("a duration like 3600, 90m, 24h or 7d")
    seconds = (
        float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    )
    if seconds <= 0 and not allow_zero:
        raise ValueError("must be more than zero")
    return dt.timedelta(seconds=seconds)


PROJECT_DATA_DIR = "framecast-data"
"""Where ``make run`` keeps its data, in the project; any command run where one is finds it."""


def default_data_dir() -> Path:
    """``./framecast-data`` when the working directory has one (``make run``'s, so every command
    run from the project sees the server's data), else the user's data folder for framecast
    (XDG_DATA_HOME/framecast on Linux), the same whatever folder a command is run from."""
    import platformdirs

    project = Path.cwd() / PROJECT_DATA_DIR
    if project.is_dir():
        return project
    return platformdirs.user_data_path("framecast", appauthor=False)


def checked_public_base_url(value: str) -> str:
    """FRAMECAST_PUBLIC_BASE_URL as links start with it (no trailing slash); ValueError when
    it is not an absolute http(s) URL of a host (with a path, if the API is mounted under one)."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"must be an absolute http(s) URL such as https://api.example.com; got {value!r}"
        )
    if parts.query or parts.fragment or parts.username is not None:
        raise ValueError(f"must be a scheme, host and optional path only; got {value!r}")
    return value.strip().rstrip("/")


def _default_decode_concurrency() -> int:
    # On 2 cores, two decode threads left /healthz waiting up to ~190 ms for the GIL and a core
    # under eight 67 MB data: URI submits, one thread under 100 ms (docs/performance.md).
    return 1 if (os.cpu_count() or 1) <= 2 else 2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMECAST_", extra="ignore")

    # Where things live
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="SQLite database, media files, the generated secret key and workers' scratch folders; default: ./framecast-data when the working directory has one (make run's), else the user's data folder (e.g. ~/.local/share/framecast).",
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
        description="Base URL used in returned links (e.g. https://api.example.com); default: taken from each request (its Host header, refused with a 400 when it is not a host and port). Set it behind a proxy or load balancer: then no Host header a client sends reaches a link.",
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
    metrics_token: str | None = Field(
        None,
        description="When set, GET /metrics needs 'Authorization: Bearer <token>' (401 otherwise); unset, it is open to anyone who can reach the API.",
    )
    metrics_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long each API process serves the same rendered /metrics scrape before reading the database again; 0: read it at every scrape.",
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
        default_factory=_default_decode_concurrency,
        ge=1,
        description="Image decodes, base64 decodes of data: URIs and parses of large bodies the API runs at once, each in a thread; with FRAMECAST_MAX_DECODE_BYTES this bounds the API's memory. Default: 2, or 1 on a machine with 2 cores or fewer, so that one core is left to the event loop.",
    )
    max_body_bytes: int | None = Field(
        None,
        gt=0,
        description="Largest request body; a larger one is answered 413 before it is read. Default: 1.5 x FRAMECAST_MAX_IMAGE_BYTES + 1 MiB, room for the largest image as a base64 data: URI.",
    )
    max_inflight_body_bytes: int = Field(
        192 * 1024 * 1024,
        gt=0,
        description="Bytes of request bodies the API holds at once (each reserves its Content-Length before it is read, until it is answered); a request that finds no room within 30 s is answered 503 with Retry-After. Bounds the API's memory under many large data: URI submits.",
    )
    max_inflight_body_bytes_per_key: int | None = Field(
        None,
        gt=0,
        description="Bytes of request bodies one API key holds at once, out of FRAMECAST_MAX_INFLIGHT_BODY_BYTES (a key holding none may always send one body); a request over it that finds no room within 30 s is answered 429 with Retry-After. Default: half the budget, so one key cannot starve the others: the other half (96 MiB by default) always has room for a body at the cap.",
    )
    body_timeout_seconds: float = Field(
        1800.0,
        gt=0,
        description="Longest a request body may take to arrive (the time spent waiting for its bytes); a slower one is answered 408 and its connection closed. Default: 30 minutes, in which a 67 MB body (a 50 MB image as a data: URI) arrives at 300 kbit/s.",
    )
    body_min_bytes_per_second: float = Field(
        8192.0,
        gt=0,
        description="Slowest a request body may arrive on average, after its first 10 s; a slower one is answered 408 and its connection closed. Each byte buys time, so a stall after a good start is tolerated. Default: 8 KiB/s (64 kbit/s), well under any link that can send a large body within FRAMECAST_BODY_TIMEOUT_SECONDS.",
    )

    # Limits per API key (a key's own, from `framecast keys set-limits`, replace these)
    max_active_per_key: int | None = Field(
        None,
        ge=1,
        description="Most requests one key may have queued or running at once; one more is answered 429 with Retry-After. Default: no limit.",
    )
    submit_rate: str | None = Field(
        None,
        description="Most submits per key in each fixed window, e.g. 60/minute, 10/second or 1000/hour; counted in the database, so it holds across API nodes. One more is answered 429 with Retry-After (the seconds until the window ends). Default: no limit.",
    )
    # Waits: counted by each API process in memory (api/wait_slots.py), not per key in the DB.
    max_streams_per_key: int = Field(
        16,
        ge=1,
        description="Most status streams and `Prefer: wait` answers one key may have open at once on one API process; one more is answered 429 `too_many_streams` with Retry-After (framecast's client then polls instead).",
    )
    max_streams: int = Field(
        1000,
        ge=1,
        description="Most status streams and `Prefer: wait` answers one API process holds open at once, all keys together; one more is answered 429 `server_streams_full` with Retry-After.",
    )

    # Workers and the queue
    engine: EngineChoice = Field(
        "auto", description="auto: hunyuan when its weights and a GPU are there, else preview."
    )
    # The weights' defaults are the model declarations' (models/): None here means "the
    # declaration's default", so settings, below the declarations, need not import them.
    hunyuan_model: str | None = Field(
        None,
        description="HunyuanVideo-I2V weights: a local diffusers-format directory, a hub id already in the Hugging Face cache (`framecast weights download`), or `tiny-random` (a tiny random model for tests; its videos are noise); default: the model's own checkpoint (hunyuanvideo-community/HunyuanVideo-I2V).",
    )
    hunyuan15_model: str | None = Field(
        None,
        description="HunyuanVideo 1.5 image-to-video weights, as FRAMECAST_HUNYUAN_MODEL (which, set to `tiny-random`, selects the tiny model for every Hunyuan model); default: the 480p checkpoint.",
    )
    hunyuan15_sr_model: str | None = Field(
        None,
        description="Where HunyuanVideo 1.5's super-resolution checkpoints are (the `super_resolution` request field): a local folder in the official layout (transformer/720p_sr_distilled, upsampler/720p_sr_distilled, ...), the official hub repo already in the Hugging Face cache (`framecast weights download --checkpoint 720p_sr`), or `off`. Without them the worker runs no SR stage and says so; the API then refuses such requests. With the tiny model, a tiny SR stage is built in memory. Default: the official repo, tencent/HunyuanVideo-1.5.",
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated model ids a worker serves (e.g. tencent/hunyuan/image-to-video); default: every model this worker can run (see the README).",
    )
    model_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Python modules that each declare one more model (a module-level SPEC = framecast.models.ModelSpec(...)); it gets its route, /v1/models entry and the preview engine.",
    )
    default_model: str | None = Field(
        None,
        description="The model POST /v1/videos (OpenAI's videos API) uses when a request names none; default: the first model GET /v1/models lists.",
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
        description="Attention kernel of both Hunyuan models once the mask is dropped: auto (PyTorch's SDPA chooses), cudnn, flash (PyTorch's own), flash-attn (the flash-attn package), flash-attn-3 (Hopper, built from source), or sage (SageAttention 2: INT8, the fast path, labelled in results). Checked at start-up.",
    )
    memory_check: bool = Field(
        True,
        description="Refuse, before they start, HunyuanVideo 1.5 requests whose computed peak GPU memory (docs/performance.md) exceeds the GPU's, and a GPU too small for any; false runs them anyway (the figures are computed, not measured).",
    )
    linear: LinearPrecision = Field(
        "bf16",
        description="Precision of the hunyuan transformer's linear layers: bf16 (exact); fp8 (faster: e4m3 weights and activations with row-wise scales, GPUs of compute capability 8.9 or later, always compiled, transformer weights 23.9 -> 15.4 GiB, HunyuanVideo 1.5's 15.5 -> 10.4); or fp8-weight (less memory, not faster: e4m3 weights upcast to bf16 layer by layer, any CUDA GPU, 23.9 -> 12.3 GiB, 1.5's 15.5 -> 7.9). Both fp8 modes are the fast path: results are labelled path=fast. Both models. See docs/performance.md.",
    )
    lora_dir: Path | None = Field(
        None,
        description="Folder of LoRA files (.safetensors: diffusers/PEFT keys, the original HunyuanVideo keys, or musubi-tuner/kohya `lora_unet_*` keys) that requests may name in `loras`; a LoRA's name is its file name without .safetensors. Read afresh for every request, so a file added later is usable at once. Every API node and hunyuan worker must see the same folder. Both models take LoRAs; HunyuanVideo 1.5 also reads Tencent's, musubi-tuner's and ComfyUI's layouts (README).",
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
    no_worker_submit: Literal["queue", "refuse"] = Field(
        "queue",
        description="A submit for a model no live worker serves: `queue` it (as RunComfy does; its answer and status carry a `note`), or `refuse` it with a 503 `no_worker_for_model` and Retry-After.",
    )

    # One request on several GPUs (docs/performance.md)
    gpus: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated GPU indices (e.g. 0,1,2,3) that one `framecast worker` runs each request across, one process per GPU (hunyuan engine; one model, FRAMECAST_MODELS's, or HunyuanVideo-I2V when unset). Default: one GPU per worker.",
    )
    parallel: int | None = Field(
        None,
        ge=1,
        description="Processes one request runs across, as FRAMECAST_GPUS but on GPUs 0..N-1 (or on the CPU with FRAMECAST_DEVICE=cpu, for tests).",
    )
    ulysses_degree: int | None = Field(
        None,
        ge=1,
        description="Ulysses degree of a multi-GPU worker; default: all processes when they divide the model's attention heads (24 for HunyuanVideo-I2V, 16 for 1.5), else Ring.",
    )
    ring_degree: int | None = Field(
        None,
        ge=1,
        description="Ring-attention degree of a multi-GPU worker; default: see FRAMECAST_ULYSSES_DEGREE.",
    )
    parallel_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="A multi-GPU worker stops (exit code 4) when one of its processes waits this long for the others.",
    )

    retention: dt.timedelta | None = Field(
        None,
        description="Delete the input and output files of requests finished longer ago than this: seconds, or a number with s, m, h or d (e.g. 7d). The requests stay, marked as removed. Default: keep forever.",
    )
    retention_sweep_seconds: float = Field(
        600.0, gt=0, description="How often an idle worker runs the retention sweep."
    )
    orphan_grace_seconds: float = Field(
        3600.0,
        gt=0,
        description="A stored input image with no request (its API died between storing it and recording the request) is deleted by the sweep once it is this old.",
    )
    engine_load_attempts: int = Field(
        3,
        ge=1,
        description="Times a worker tries to load its engine before it stops, saying why (its reason shows in /readyz).",
    )
    engine_load_backoff_seconds: float = Field(
        5.0,
        ge=0,
        description="Wait before a worker's second try at loading its engine; doubled for each later one.",
    )

    # Webhooks (README: Webhooks)
    webhook_dispatcher: bool = Field(
        True,
        description="Run a webhook dispatcher inside `framecast serve`'s API process. Several dispatchers share the outbox safely; turn this off where `framecast webhooks dispatch` processes do the sending.",
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a webhook receiver gets to answer one delivery attempt."
    )
    webhook_retry_base_seconds: float = Field(
        5.0,
        gt=0,
        description="Wait before a failed webhook delivery's second attempt; doubled for each later one.",
    )
    webhook_retry_max_seconds: float = Field(
        3600.0, gt=0, description="Longest wait between two attempts of a webhook delivery."
    )
    webhook_retry_window: dt.timedelta = Field(
        dt.timedelta(hours=24),
        description="How long a webhook delivery is retried after its status change (seconds, or a number with s, m, h or d); then it is marked failed and kept (`framecast webhooks list --state failed`).",
    )
    webhook_concurrency: int = Field(
        32, ge=1, description="Webhook deliveries one dispatcher has in flight at once."
    )
    webhook_poll_seconds: float = Field(
        0.25,
        gt=0,
        description="How often a dispatcher looks for due webhook deliveries (with PostgreSQL it is also woken at once by a new one).",
    )

    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: one readable line per record; json: one JSON object per line, with the request id on every line about a request.",
    )

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

    @field_validator("retention", "webhook_retry_window", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, value: str | None) -> str | None:
        return checked_public_base_url(value) if value else None

    @field_validator("submit_rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        return str(parse_rate(value)) if value else None

    @field_validator("gpus", mode="before")
    @classmethod
    def _split_gpus(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(g) for g in value.split(",") if g.strip()]
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
    def inflight_body_share(self) -> int:
        """FRAMECAST_MAX_INFLIGHT_BODY_BYTES_PER_KEY, or half the in-flight budget."""
        if self.max_inflight_body_bytes_per_key is not None:
            return self.max_inflight_body_bytes_per_key
        return self.max_inflight_body_bytes // 2

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
