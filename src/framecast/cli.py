"""The ``framecast`` command: serve, worker, keys, generate, weights, db."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from framecast.settings import DEFAULT_HUNYUAN_MODEL, Settings, get_settings

app = typer.Typer(help="framecast: a self-hosted image-to-video API.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
weights_app = typer.Typer(help="HunyuanVideo-I2V weights.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(weights_app, name="weights")

DataDir = Annotated[Path | None, typer.Option(help="FRAMECAST_DATA_DIR", show_default=False)]
Engine = Annotated[
    str | None, typer.Option(help="FRAMECAST_ENGINE: auto, preview or hunyuan", show_default=False)
]


def _settings(**flags: Any) -> Settings:
    """Settings from the environment, with the flags given on the command line on top.

    Flags are written to the environment (as FRAMECAST_*) so worker processes started from
    here see exactly the same configuration.
    """
    for name, value in flags.items():
        if value is not None:
            os.environ[f"FRAMECAST_{name.upper()}"] = str(value)
    get_settings.cache_clear()
    return get_settings()


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="FRAMECAST_HOST", show_default=False)] = None,
    port: Annotated[int | None, typer.Option(help="FRAMECAST_PORT", show_default=False)] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="FRAMECAST_WORKERS: worker processes (0: API only)", show_default=False),
    ] = None,
    engine: Engine = None,
    data_dir: DataDir = None,
    dev: Annotated[
        bool, typer.Option("--dev", help="Print a development key and a curl example.")
    ] = False,
) -> None:
    """Start the API and its worker processes."""
    settings = _settings(host=host, port=port, workers=workers, engine=engine, data_dir=data_dir)
    _logging(settings)
    if dev:
        from framecast.devkey import print_dev_banner

        print_dev_banner(settings)
    from framecast.serve import serve as run_serve

    run_serve(settings)


@app.command()
def worker(
    engine: Engine = None,
    data_dir: DataDir = None,
    exit_with_parent: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Start one worker process (no API)."""
    settings = _settings(engine=engine, data_dir=data_dir)
    _logging(settings)
    from framecast.worker import run_worker

    run_worker(settings, exit_with_parent=exit_with_parent)


def _key_store(data_dir: Path | None) -> Any:
    from framecast.db import create_db_engine, migrate
    from framecast.keys import KeyStore

    settings = _settings(data_dir=data_dir)
    db = create_db_engine(settings.resolved_database_url)
    migrate(db)
    return KeyStore(db)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key, e.g. who uses it.")] = "default",
    data_dir: DataDir = None,
) -> None:
    """Create a key. It is printed once and only its hash is stored."""
    new = _key_store(data_dir).create(name)
    typer.echo(f"id:  {new.record.id}", err=True)
    typer.echo(new.secret)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List keys (never their secrets)."""
    for rec in _key_store(data_dir).list():
        state = f"revoked {rec.revoked_at:%Y-%m-%d %H:%M}" if rec.revoked_at else "active"
        typer.echo(
            f"{rec.id}\t{rec.prefix}...\t{rec.name}\t{rec.created_at:%Y-%m-%d %H:%M}\t{state}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key by its id (from `keys list`)."""
    if not _key_store(data_dir).revoke(key_id):
        typer.echo(f"no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply database migrations (serve and worker also do this at start)."""
    from framecast.db import create_db_engine, migrate

    settings = _settings(data_dir=data_dir)
    migrate(create_db_engine(settings.resolved_database_url))
    typer.echo("database is up to date")


@app.command()
def generate(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Input image file.")],
    prompt: Annotated[str, typer.Option(help="What should happen in the video.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the MP4.")] = Path(
        "out.mp4"
    ),
    seed: int = 99271155,
    aspect_ratio: Annotated[str, typer.Option(help="16:9 or 9:16")] = "16:9",
    resolution: Annotated[str, typer.Option(help="720p, 540p or 360p")] = "720p",
    num_frames: Annotated[int, typer.Option(help="4n+1 from 5 to 129")] = 129,
    i2v_stability: Annotated[
        bool, typer.Option("--i2v-stability/--no-i2v-stability", help="Official stability init.")
    ] = True,
    flow_shift: Annotated[
        float | None,
        typer.Option(help="Default 7 with i2v stability, 17 without.", show_default=False),
    ] = None,
    num_inference_steps: int = 50,
    cfg_scale: Annotated[float, typer.Option(help="True CFG; >1 uses the negative prompt.")] = 1.0,
    negative_prompt: Annotated[str | None, typer.Option(show_default=False)] = None,
    step_cache: Annotated[
        str | None,
        typer.Option(
            help="first_block: skip blocks of passes that barely change (faster, fast path).",
            show_default=False,
        ),
    ] = None,
    step_cache_threshold: Annotated[
        float | None,
        typer.Option(help="Only with --step-cache; default 0.06.", show_default=False),
    ] = None,
    lora: Annotated[
        list[str] | None,
        typer.Option(
            "--lora",
            help="NAME or NAME:SCALE of a LoRA in --lora-dir (repeat for up to 3).",
            show_default=False,
        ),
    ] = None,
    lora_dir: Annotated[
        Path | None, typer.Option(help="FRAMECAST_LORA_DIR", show_default=False)
    ] = None,
    engine: Engine = None,
    hunyuan_model: Annotated[
        str | None, typer.Option(help="FRAMECAST_HUNYUAN_MODEL", show_default=False)
    ] = None,
    offload: Annotated[
        str | None,
        typer.Option(
            help="FRAMECAST_OFFLOAD: none, model, group or sequential", show_default=False
        ),
    ] = None,
) -> None:
    """Run an engine locally on one image, with a progress bar; no server needed.

    Every input of the API is a flag here, with the same names, defaults and limits.
    """
    from pydantic import ValidationError
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from framecast.engines import load_engine
    from framecast.engines.hunyuan.loras import LoraFolder
    from framecast.errors import FramecastError
    from framecast.images import decode_image
    from framecast.schemas import ImageToVideoInput
    from framecast.video import encode_mp4

    try:
        settings = _settings(
            engine=engine, hunyuan_model=hunyuan_model, offload=offload, lora_dir=lora_dir
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from exc
    _logging(settings)
    try:
        params = ImageToVideoInput.model_validate(
            {
                "prompt": prompt,
                "image_url": "file:" + str(image),
                "seed": seed,
                "aspect_ratio": aspect_ratio,
                "resolution": resolution,
                "num_frames": num_frames,
                "i2v_stability": i2v_stability,
                "flow_shift": flow_shift,
                "num_inference_steps": num_inference_steps,
                "cfg_scale": cfg_scale,
                "negative_prompt": negative_prompt,
                "step_cache": step_cache,
                "step_cache_threshold": step_cache_threshold,
                "loras": [_lora_flag(flag) for flag in lora or []],
            }
        )
        unknown = LoraFolder(settings.lora_dir).unknown(params.lora_choices)
        if unknown is not None:
            raise unknown
        decoded = decode_image(image.read_bytes(), max_pixels=settings.max_image_pixels)
        eng = load_engine(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        typer.echo(f"error: {where}: {first['msg']}", err=True)
        raise typer.Exit(2) from exc
    except FramecastError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    request = params.generation_request(decoded.image)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task(f"{eng.name}", total=None)

        class _BarHooks:
            def progress(self, step: int, total: int, phase: str) -> None:
                bar.update(task, completed=step, total=total, description=f"{eng.name}: {phase}")

            def raise_if_cancelled(self) -> None:
                return None

        info = encode_mp4(
            eng.generate(request, _BarHooks()),
            output,
            width=request.width,
            height=request.height,
            fps=request.fps,
            crf=settings.x264_crf,
            preset=settings.x264_preset,
        )
    # As the worker records it: what this request used (a step cache) over the engine's own.
    meta = {**eng.metadata(), **eng.describe(request)}
    fast = " on the fast path" if meta.get("path") == "fast" else ""
    passes = meta.get("transformer_passes")
    if passes:
        total = passes["computed"] + passes["skipped"]
        fast += f", {passes['skipped']} of {total} transformer passes skipped"
    typer.echo(
        f"wrote {output} ({info.width}x{info.height}, {info.num_frames} frames, {info.fps} fps, "
        f"engine {eng.name}, model {eng.model}{fast})"
    )
    warning = meta.get("warning")
    if warning:
        typer.echo(f"warning: {warning}", err=True)


def _lora_flag(flag: str) -> dict[str, Any]:
    """``--lora NAME`` or ``--lora NAME:SCALE`` as the API's ``{"path", "scale"}``."""
    name, sep, scale = flag.rpartition(":")
    if sep:
        try:
            return {"path": name, "scale": float(scale)}
        except ValueError:
            pass  # a name with a colon in it
    return {"path": flag}


@weights_app.command("download")
def weights_download(
    to: Annotated[
        Path | None,
        typer.Option(
            help="Directory to put the weights in; default: the Hugging Face cache.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="Hub id to fetch.")] = DEFAULT_HUNYUAN_MODEL,
) -> None:
    """Fetch the HunyuanVideo-I2V weights (~40 GB) once, before starting workers."""
    from framecast.engines.hunyuan.weights import WeightsError, download

    typer.echo(f"downloading {model} ...")
    try:
        path = download(model, to)
    except WeightsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    hint = (
        f"FRAMECAST_HUNYUAN_MODEL={path}" if to is not None else f"FRAMECAST_HUNYUAN_MODEL={model}"
    )
    typer.echo(f"complete: {path}\nuse it with {hint}")


def main() -> None:  # pragma: no cover
    app(prog_name="framecast")


if __name__ == "__main__":  # pragma: no cover
    main()
