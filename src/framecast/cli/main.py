"""The ``framecast`` command: serve, worker, keys, generate, weights, db."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from framecast.cli.common import (
    DataDir,
    configure_cli_logging,
    fail,
    one_line_errors,
    read_database,
    settings_from_flags,
    write_database,
)
from framecast.cli.webhooks import webhooks_app
from framecast.models import ModelSpec
from framecast.settings import Settings

app = typer.Typer(help="framecast: a self-hosted image-to-video API.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
weights_app = typer.Typer(help="Model weights.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(weights_app, name="weights")
app.add_typer(webhooks_app, name="webhooks")

Engine = Annotated[
    str | None, typer.Option(help="FRAMECAST_ENGINE: auto, preview or hunyuan", show_default=False)
]
Parallel = Annotated[
    int | None,
    typer.Option(
        help="FRAMECAST_PARALLEL: run each request across N processes (GPUs 0..N-1, or the CPU "
        "with FRAMECAST_DEVICE=cpu)",
        show_default=False,
    ),
]


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
    settings = settings_from_flags(
        host=host, port=port, workers=workers, engine=engine, data_dir=data_dir
    )
    configure_cli_logging(settings)
    from framecast.cli.serve import serve as run_serve
    from framecast.startup import StartupError

    try:
        run_serve(settings, dev=dev)
    except StartupError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from exc


@app.command()
def worker(
    engine: Engine = None,
    data_dir: DataDir = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            help="FRAMECAST_GPUS: run each request across these GPUs, e.g. 0,1,2,3 "
            "(one model: FRAMECAST_MODELS's, or HunyuanVideo-I2V)",
            show_default=False,
        ),
    ] = None,
    parallel: Parallel = None,
    exit_with_parent: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Start one worker process (no API); with --gpus, one worker made of a process per GPU."""
    settings = settings_from_flags(engine=engine, data_dir=data_dir, gpus=gpus, parallel=parallel)
    configure_cli_logging(settings)
    from framecast.startup import StartupError
    from framecast.worker.loop import run_worker

    if settings.gpus or settings.parallel:
        from framecast.worker.group import GroupError, run_group_worker

        try:
            run_group_worker(settings)
        except GroupError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        return
    try:
        run_worker(settings, exit_with_parent=exit_with_parent)
    except StartupError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from exc


def _key_store(settings: Settings, *, write: bool) -> Any:
    """The keys of ``settings``' database; only a command that writes creates or migrates it.
    Call inside :func:`one_line_errors`."""
    from framecast.admission.keys import KeyStore

    db = write_database(settings) if write else read_database(settings)
    return KeyStore(db, settings.api_keys)


MaxActive = Annotated[
    str | None,
    typer.Option(
        "--max-active",
        help="Most requests the key may have queued or running: a number, unlimited, or "
        "default (FRAMECAST_MAX_ACTIVE_PER_KEY).",
    ),
]
SubmitRate = Annotated[
    str | None,
    typer.Option(
        "--rate",
        help="Most submits per window, e.g. 10/minute or 1000/hour; unlimited, or default "
        "(FRAMECAST_SUBMIT_RATE).",
    ),
]


def _limit_changes(max_active: str | None, rate: str | None) -> dict[str, int | str | None]:
    """The limits given on the command line, checked (exit 2 with the reason otherwise)."""
    from framecast.admission.quotas import limit_value, rate_value

    changes: dict[str, int | str | None] = {}
    try:
        if max_active is not None:
            changes["max_active"] = limit_value(max_active)
        if rate is not None:
            changes["submit_rate"] = rate_value(rate)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return changes


def _quotas(store: Any) -> Any:
    from framecast.admission.quotas import QuotaStore

    # The defaults do not matter here: only a key's own limits are read and written.
    return QuotaStore(store.engine, default_max_active=None, default_rate=None)


def _set_limits(store: Any, key_id: str, changes: dict[str, int | str | None]) -> str | None:
    limits = _quotas(store).set_key_limits(key_id, **changes)
    return limits.describe() if limits is not None else None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key, e.g. who uses it.")] = "default",
    max_active: MaxActive = None,
    rate: SubmitRate = None,
    data_dir: DataDir = None,
) -> None:
    """Create a key. It is printed once and only its hash is stored; so is its webhook
    secret (on stderr), which signs its webhook deliveries."""
    changes = _limit_changes(max_active, rate)
    settings = settings_from_flags(data_dir=data_dir)
    with one_line_errors(settings):
        store = _key_store(settings, write=True)
        new = store.create(name)
        limits = _set_limits(store, new.record.id, changes) if changes else None
    typer.echo(f"id:  {new.record.id}", err=True)
    if limits:
        typer.echo(f"limits:  {limits}", err=True)
    typer.echo(f"webhook secret:  {new.webhook_secret}", err=True)
    typer.echo(new.secret)


@keys_app.command("rotate-webhook-secret")
def keys_rotate_webhook_secret(
    key_id: str,
    overlap: Annotated[
        str,
        typer.Option(
            help="How long the old secret keeps signing beside the new one (e.g. 24h, 30m; "
            "0 after a leak: it stops at once).",
        ),
    ] = "24h",
    data_dir: DataDir = None,
) -> None:
    """Give a key a new webhook secret, printed once; deliveries carry both signatures while
    the old one overlaps, so receivers can switch without missing one."""
    from framecast.admission.keys import UnknownKey
    from framecast.settings import parse_duration

    try:
        keep = parse_duration(overlap, allow_zero=True)
    except ValueError as exc:
        typer.echo(f"--overlap: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = settings_from_flags(data_dir=data_dir)
    try:
        with one_line_errors(settings):
            fresh = _key_store(settings, write=True).rotate_webhook_secret(key_id, keep)
    except UnknownKey as exc:
        typer.echo(str(exc.args[0]), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"the old secret keeps signing beside it for {overlap}", err=True)
    typer.echo(fresh)


@keys_app.command("env-webhook-secrets")
def keys_env_webhook_secrets(data_dir: DataDir = None) -> None:
    """The webhook secret of each FRAMECAST_API_KEYS key (derived from the server's secret, so
    run this with the server's FRAMECAST_SECRET_KEY or data folder)."""
    from framecast.admission.keys import env_webhook_secrets

    settings = settings_from_flags(data_dir=data_dir)
    if not settings.api_keys:
        fail("FRAMECAST_API_KEYS is not set: there are no environment keys to show secrets of")
    secret_file = settings.data_dir / "secret_key"
    if settings.secret_key is None and not secret_file.is_file():
        # signing_key() would make a new secret here, which the server does not have.
        fail(
            f"no server secret at {secret_file}: the server makes it when it first starts "
            "(make run); or set FRAMECAST_SECRET_KEY (or --data-dir) as the server has it"
        )
    for prefix, secret in env_webhook_secrets(settings.signing_key(), settings.api_keys):
        typer.echo(f"{prefix}...\t{secret}")


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List keys (never their secrets), with their own limits."""
    settings = settings_from_flags(data_dir=data_dir)
    with one_line_errors(settings):
        store = _key_store(settings, write=False)
        quotas = _quotas(store)
        records = [(rec, quotas.key_limits(rec.id)) for rec in store.list()]
    if not records and not settings.api_keys:
        typer.echo(
            f"no keys in {settings.data_dir.resolve()} yet: `framecast keys create`", err=True
        )
    for rec, limits in records:
        state = f"revoked {rec.revoked_at:%Y-%m-%d %H:%M}" if rec.revoked_at else "active"
        typer.echo(
            f"{rec.id}\t{rec.prefix}...\t{rec.name}\t{rec.created_at:%Y-%m-%d %H:%M}\t{state}"
            f"\t{limits.describe() if limits is not None else ''}"
        )


@keys_app.command("set-limits")
def keys_set_limits(
    key_id: str, max_active: MaxActive = None, rate: SubmitRate = None, data_dir: DataDir = None
) -> None:
    """Set a key's own limits (those not given stay as they are); `default` gives it the
    server's again. Takes effect on its next submit, on every API node."""
    changes = _limit_changes(max_active, rate)
    settings = settings_from_flags(data_dir=data_dir)
    with one_line_errors(settings):
        limits = _set_limits(_key_store(settings, write=True), key_id, changes)
    if limits is None:
        typer.echo(f"no key with id {key_id} (see `framecast keys list`)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{key_id}: {limits}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key by its id (from `keys list`)."""
    settings = settings_from_flags(data_dir=data_dir)
    with one_line_errors(settings):
        revoked = _key_store(settings, write=True).revoke(key_id)
    if not revoked:
        typer.echo(f"no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply database migrations (serve and worker also do this at start)."""
    from framecast.db import describe_database

    settings = settings_from_flags(data_dir=data_dir)
    with one_line_errors(settings):
        write_database(settings).dispose()
    typer.echo(f"database {describe_database(settings.resolved_database_url)} is up to date")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def generate(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Input image file.")],
    prompt: Annotated[str, typer.Option(help="What should happen in the video.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the MP4.")] = Path(
        "out.mp4"
    ),
    model: Annotated[
        str | None,
        typer.Option(
            help="The model's id, as in the API's route (`framecast models`); default: the "
            "first one listed there.",
            show_default=False,
        ),
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
    hunyuan15_model: Annotated[
        str | None, typer.Option(help="FRAMECAST_HUNYUAN15_MODEL", show_default=False)
    ] = None,
    offload: Annotated[
        str | None,
        typer.Option(
            help="FRAMECAST_OFFLOAD: none, model, group or sequential", show_default=False
        ),
    ] = None,
    parallel: Parallel = None,
) -> None:
    """Run an engine locally on one image, with a progress bar; no server needed.

    Every input of the model is a flag too, named as the API's field with dashes and with the
    same defaults and limits, e.g. --seed 7 --aspect-ratio 9:16 --num-frames 65
    --no-i2v-stability. `framecast models` lists each model's inputs.
    """
    # Before anything slow: a video rendered for minutes must have somewhere to go.
    problem = _output_problem(output)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)

    from pydantic import ValidationError
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from framecast.cli.model_flags import FlagError, lora_flag, parse_flags
    from framecast.engines.base import Engine as EngineType
    from framecast.engines.hunyuan.loras import LoraFolder
    from framecast.engines.selection import load_engine
    from framecast.errors import FramecastError
    from framecast.images import decode_image
    from framecast.models import UnknownModel, all_models, get_model
    from framecast.video import encode_mp4
    from framecast.worker.group import GroupError, check_group_models

    try:
        settings = settings_from_flags(
            engine=engine,
            hunyuan_model=hunyuan_model,
            hunyuan15_model=hunyuan15_model,
            offload=offload,
            lora_dir=lora_dir,
            parallel=parallel,
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from exc
    configure_cli_logging(settings)
    try:
        spec = get_model(model, settings) if model else all_models(settings)[0]
        if settings.gpus or settings.parallel:
            check_group_models(
                [spec.id], "run it without --parallel (FRAMECAST_PARALLEL, FRAMECAST_GPUS)"
            )
        fields = parse_flags(spec.input, ctx.args)
        if lora:
            fields["loras"] = [lora_flag(flag) for flag in lora]
        params = spec.input.model_validate(
            {"prompt": prompt, spec.input.image_field: "file:" + str(image), **fields}
        )
        unknown = LoraFolder(settings.lora_dir).unknown(params.lora_choices)
        if unknown is not None:
            raise unknown
        decoded = decode_image(image.read_bytes(), max_pixels=settings.max_image_pixels)
        if settings.gpus or settings.parallel:
            from framecast.worker.group import group_engine

            # Closed (the other ranks told to exit) when the command ends.
            eng: EngineType = ctx.with_resource(group_engine(settings, model_id=spec.id))
        else:
            eng = load_engine(settings, spec.id)
    except (UnknownModel, FlagError, GroupError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
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


def _output_problem(output: Path) -> str | None:
    """Why the video cannot be written to ``output``, or None."""
    folder = output.parent
    if output.is_dir():
        return f"--output {output} is a folder; give a file name, e.g. {output / 'out.mp4'}"
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        return f"the folder {folder} {what}; create it, or give -o a path in an existing folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable; give -o a path in a folder you can write to"
    return None


@app.command("models")
def models_command() -> None:
    """List the models this server serves, with every input `generate` and `submit` take as
    an argument or a flag."""
    from framecast.cli.model_flags import describe
    from framecast.models import all_models

    for spec in all_models(settings_from_flags()):
        for line in describe(spec):
            typer.echo(line)


@weights_app.command("list")
def weights_list() -> None:
    """The checkpoints each model can run, and the setting that selects them."""
    from framecast.models import all_models

    for spec in all_models(settings_from_flags()):
        if spec.real_engine is None:
            continue
        typer.echo(f"{spec.id} ({spec.real_engine.setting}):")
        for i, (name, repo_id) in enumerate(spec.real_engine.checkpoints.items()):
            typer.echo(f"  {name:<24} {repo_id}{'  (default)' if i == 0 else ''}")


@weights_app.command("download")
def weights_download(
    to: Annotated[
        Path | None,
        typer.Option(
            help="Directory to put the weights in; default: the Hugging Face cache.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="The model's id (`framecast weights list`); default: the first one.",
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="A checkpoint's name or hub id (`framecast weights list`); default: the "
            "model's first.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Fetch a model's weights (tens of GB) once, before starting workers."""
    from framecast.engines.hunyuan.weights import WeightsError
    from framecast.models import UnknownModel, all_models, get_model

    settings = settings_from_flags()
    try:
        spec = get_model(model, settings) if model else all_models(settings)[0]
    except UnknownModel as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    real = spec.real_engine
    if real is None:
        typer.echo(f"error: {spec.id} has no weights to download", err=True)
        raise typer.Exit(2)
    try:
        repo_id = _checkpoint_repo(spec.id, real.checkpoints, checkpoint, all_models(settings))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"downloading {repo_id} ...")
    try:
        path = real.download(repo_id, to)
    except WeightsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    # An SR checkpoint (repo:version) is found by FRAMECAST_HUNYUAN15_SR_MODEL, whose default
    # is the official repo in the Hugging Face cache.
    setting, name = (
        ("FRAMECAST_HUNYUAN15_SR_MODEL", repo_id.partition(":")[0])
        if ":" in repo_id
        else (real.setting, repo_id)
    )
    typer.echo(f"complete: {path}\nuse it with {setting}={path if to is not None else name}")


def _checkpoint_repo(
    model_id: str, names: Mapping[str, str], checkpoint: str | None, models: list[ModelSpec]
) -> str:
    """The hub id ``weights download --checkpoint`` names for a model: one of its checkpoints
    (by name or hub id), or another hub id (a fine-tune, a mirror); ValueError for a name it
    does not have, or another model's checkpoint (its weights would not load as this model)."""
    if checkpoint is None:
        return next(iter(names.values()))
    if checkpoint in names.values():
        return checkpoint
    if checkpoint in names:
        return names[checkpoint]
    for other in models:
        theirs = other.real_engine.checkpoints if other.real_engine is not None else {}
        if checkpoint in theirs or checkpoint in theirs.values():
            raise ValueError(
                f"{checkpoint} is a checkpoint of {other.id}, not of {model_id}; "
                f"give --model {other.id}"
            )
    if checkpoint.count("/") == 1:
        return checkpoint
    raise ValueError(
        f"{model_id} has no checkpoint {checkpoint!r}; its checkpoints: {', '.join(names)} "
        "(`framecast weights list`), or give a hub id (owner/name)"
    )


# submit, status, result, cancel, list: a running server's API (framecast.cli.remote).
from framecast.cli.remote import register as _register_remote  # noqa: E402

_register_remote(app)


def main() -> None:  # pragma: no cover
    app(prog_name="framecast")


if __name__ == "__main__":  # pragma: no cover
    main()
