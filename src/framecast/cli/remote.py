"""``framecast submit|status|result|cancel|list``: the API of a running server (framecast's, or
RunComfy's) from the command line, through :mod:`framecast.client`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import JsonValue

from framecast.cli.progress import ProgressView
from framecast.client import APIError, Client, ModelCard
from framecast.client.core import DEFAULT_MODEL, DEFAULT_SERVER
from framecast.client.inputs import image_reference, is_url

Server = Annotated[
    str,
    typer.Option(
        "--server", envvar="FRAMECAST_SERVER", help="The API's base URL (FRAMECAST_SERVER)."
    ),
]
Key = Annotated[
    str | None,
    typer.Option(
        "--key", envvar="FRAMECAST_KEY", help="The API key (FRAMECAST_KEY).", show_default=False
    ),
]
RequestId = Annotated[str, typer.Argument(help="The request's id, as submit printed it.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


@contextmanager
def _client(server: str, key: str | None) -> Iterator[Client]:
    """A client whose every error ends the command with the server's message on one line."""
    try:
        with Client(server, key) as client:
            yield client
    except APIError as exc:
        if exc.status_code == 401 and not key:  # --key takes FRAMECAST_KEY too
            # The server's own advice is for HTTP clients (an Authorization header).
            raise _fail(
                f"{server} wants an API key: give --key KEY or set FRAMECAST_KEY (`framecast "
                "keys create` makes one; `make run` prints a development key)"
            ) from exc
        raise _fail(exc.message) from exc


def _print_json(value: JsonValue) -> None:
    typer.echo(json.dumps(value, indent=2))


def _models(client: Client) -> list[ModelCard]:
    """The server's models (framecast's ``GET /v1/models``); none where it has no such route
    (RunComfy): the options then go up as given."""
    try:
        return client.models()
    except APIError as exc:
        if exc.status_code in {404, 405}:
            return []
        raise


def _image_field(model_id: str, card: ModelCard | None) -> str:
    if card is not None and card.image_field:
        return card.image_field
    from framecast.models import UnknownModel, builtin_models, find_model

    try:
        return find_model(model_id, builtin_models()).input.image_field
    except UnknownModel:
        return "image_url"  # RunComfy's name for it on most image-to-video models


def _parse_value(text: str, kind: JsonValue) -> JsonValue:
    """A flag's text as the schema's type says; JSON where the schema says nothing."""
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "string":
            return text
    except ValueError as exc:
        raise _fail(f"{text!r} is not a {kind}", 2) from exc
    try:
        value: JsonValue = json.loads(text)
    except ValueError:
        return text
    return value


def _schema_types(card: ModelCard | None) -> dict[str, JsonValue]:
    """Field -> its JSON schema type ("boolean", "integer", ...), from the model's card."""
    properties = card.input_schema.get("properties") if card is not None else None
    if not isinstance(properties, dict):
        return {}
    types: dict[str, JsonValue] = {}
    for name, prop in properties.items():
        if not isinstance(prop, dict):
            continue
        options = prop.get("anyOf")
        kinds = [prop.get("type")] + [
            option.get("type")
            for option in (options if isinstance(options, list) else [])
            if isinstance(option, dict)
        ]
        types[name] = next((k for k in kinds if isinstance(k, str) and k != "null"), None)
    return types


def _extra_fields(
    args: list[str], pairs: list[str], card: ModelCard | None, skip: set[str]
) -> dict[str, JsonValue]:
    """``--field-name VALUE`` (``--flag``/``--no-flag`` for booleans) for each input of the
    model's schema, and ``--set name=value`` for anything (RunComfy's models included)."""
    types = _schema_types(card)
    fields: dict[str, JsonValue] = {}
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        name = flag.removeprefix("--").replace("-", "_")
        negated = name.startswith("no_") and types.get(name[3:]) == "boolean"
        name = name[3:] if negated else name
        if not flag.startswith("--") or name not in types or name in skip:
            known = ", ".join("--" + f.replace("_", "-") for f in types if f not in skip)
            hint = f"; this model's options: {known}" if known else ""
            raise _fail(f"no option {flag}{hint}; or give any field as --set NAME=VALUE", 2)
        if types[name] == "boolean":
            fields[name] = not negated
            continue
        if not rest:
            raise _fail(f"{flag} needs a value", 2)
        fields[name] = _parse_value(rest.pop(0), types[name])
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise _fail(f"--set takes NAME=VALUE, got {pair!r}", 2)
        fields[name.strip()] = _parse_value(text, types.get(name.strip()))
    return fields


def _output_problem(output: Path) -> str | None:
    if output.is_dir():
        return f"-o {output} is a folder; give a file name, e.g. {output / 'out.mp4'}"
    if not output.parent.is_dir() or not os.access(output.parent, os.W_OK):
        return f"the folder {output.parent} does not exist or is not writable; give -o another path"
    return None


def submit(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="An image file, or an http(s):// or data: URL.")],
    prompt: Annotated[str, typer.Option(help="What should happen in the video.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the MP4.")] = Path(
        "out.mp4"
    ),
    model: Annotated[
        str | None,
        typer.Option(help="The model's id; default: the server's first.", show_default=False),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Any input field: NAME=VALUE (JSON values parsed).", show_default=False
        ),
    ] = None,
    webhook: Annotated[
        str | None, typer.Option(help="A URL the server calls when it ends.", show_default=False)
    ] = None,
    server: Server = DEFAULT_SERVER,
    key: Key = None,
    poll_interval: Annotated[float, typer.Option(hidden=True)] = 1.0,
) -> None:
    """Generate a video on a server: submit, follow it with a progress bar, download it.

    The model's inputs are flags too, as `framecast generate` takes them (--seed 7
    --aspect-ratio 9:16 --no-i2v-stability); --set NAME=VALUE sends any field as it is.
    Ctrl-C cancels the request on the server.
    """
    problem = _output_problem(output)
    if problem is not None:
        raise _fail(problem, 2)
    if not is_url(image) and not Path(image).is_file():
        raise _fail(f"{image} is not a file, nor an http(s):// or data: URL", 2)
    with _client(server, key) as client:
        cards = _models(client)
        card = next((c for c in cards if c.id == model), None) if model else None
        model_id = model or (cards[0].id if cards else DEFAULT_MODEL)
        card = card or next((c for c in cards if c.id == model_id), None)
        image_field = _image_field(model_id, card)
        fields = _extra_fields(ctx.args, set_ or [], card, {"prompt", image_field})
        body: dict[str, JsonValue] = {
            "prompt": prompt,
            image_field: image_reference(image),
            **fields,
        }
        submitted = client.submit(model_id, body, webhook=webhook)
        rid = submitted.request_id
        typer.echo(f"request {rid} submitted to {client.base_url} ({model_id})", err=True)
        view = ProgressView(sys.stderr)
        try:
            with view:
                result = client.wait(rid, on_progress=view.update, poll_interval=poll_interval)
        except KeyboardInterrupt:
            _cancel_after_interrupt(client, rid)
            raise typer.Exit(130) from None
        path = client.download(result, output)
    meta = result.metadata or {}
    size = f"{meta.get('width')}x{meta.get('height')}, " if meta.get("width") else ""
    frames = f"{meta.get('num_frames')} frames, " if meta.get("num_frames") else ""
    engine = f"engine {meta.get('engine')}" if meta.get("engine") else "done"
    typer.echo(f"wrote {path} ({size}{frames}{engine}; request {rid})")


def _cancel_after_interrupt(client: Client, request_id: str) -> None:
    typer.echo(f"\ninterrupted: cancelling request {request_id} on the server ...", err=True)
    try:
        answer = client.cancel(request_id)
    except APIError as exc:
        raise _fail(f"could not cancel request {request_id}: {exc.message}", 130) from exc
    said = {
        "cancelled": "cancelled; it will not run",
        "cancel_requested": "cancel requested; it stops at its next step",
    }.get(answer.outcome or "", f"not cancelled: it is already {answer.status}")
    typer.echo(f"request {request_id}: {said}", err=True)


def status(request_id: RequestId, server: Server = DEFAULT_SERVER, key: Key = None) -> None:
    """A request's state, as JSON."""
    with _client(server, key) as client:
        _print_json(client.status(request_id).model_dump(mode="json", exclude_none=True))


def result(
    request_id: RequestId,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Also download the video here.", show_default=False),
    ] = None,
    server: Server = DEFAULT_SERVER,
    key: Key = None,
) -> None:
    """A request's result (its current state while it runs), as JSON; -o downloads the video."""
    with _client(server, key) as client:
        answer = client.result(request_id)
        _print_json(answer.model_dump(mode="json", exclude_none=True))
        if output is not None:
            if not answer.succeeded:
                raise _fail(f"request {request_id} is {answer.status}; there is no video yet")
            typer.echo(f"wrote {client.download(answer, output)}", err=True)


def cancel(request_id: RequestId, server: Server = DEFAULT_SERVER, key: Key = None) -> None:
    """Cancel a request: a queued one never runs, a running one stops at its next step."""
    with _client(server, key) as client:
        answer = client.cancel(request_id)
    if answer.outcome == "not_cancellable":
        raise _fail(f"request {request_id} is already {answer.status} and cannot be cancelled")
    said = "cancel requested" if answer.outcome == "cancel_requested" else "cancelled"
    typer.echo(f"request {request_id}: {said}")


def list_requests(
    status: Annotated[
        str | None, typer.Option(help="Only this status.", show_default=False)
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="The next page, as printed.", show_default=False)
    ] = None,
    server: Server = DEFAULT_SERVER,
    key: Key = None,
) -> None:
    """This key's requests, newest first: id, status, created."""
    with _client(server, key) as client:
        try:
            page = client.list_requests(status=status, model=model, limit=limit, cursor=cursor)
        except APIError as exc:
            if exc.status_code in {404, 405} and exc.code != "request_not_found":
                raise _fail(
                    f"{client.base_url} has no request listing (GET /v1/requests); it needs a "
                    "newer framecast (RunComfy has none)"
                ) from exc
            raise
    for item in page.requests:
        typer.echo(f"{item.request_id}\t{item.status}\t{item.created_at or ''}")
    if page.next_cursor:
        typer.echo(f"more: framecast list --cursor {page.next_cursor}", err=True)


def register(app: typer.Typer) -> None:
    """Add the remote commands to the ``framecast`` command."""
    app.command(
        "submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(submit)
    app.command("status")(status)
    app.command("result")(result)
    app.command("cancel")(cancel)
    app.command("list")(list_requests)
