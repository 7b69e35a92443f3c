"""``framecast webhooks``: a dispatcher on its own, and a look at the outbox."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from framecast.cli.common import (
    DataDir,
    configure_cli_logging,
    one_line_errors,
    read_database,
    settings_from_flags,
)

webhooks_app = typer.Typer(
    help="Webhook deliveries: send them, or see what was sent.", no_args_is_help=True
)


@webhooks_app.command("dispatch")
def dispatch(data_dir: DataDir = None) -> None:
    """Send webhook deliveries until SIGTERM/SIGINT (for fleets: as many as you like, on any
    host that reaches the database; `framecast serve` runs one already)."""
    from framecast.webhooks.dispatcher import run_dispatcher

    settings = settings_from_flags(data_dir=data_dir)
    configure_cli_logging(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo("dispatching webhook deliveries (Ctrl-C stops)", err=True)
    run_dispatcher(settings, stop)


@webhooks_app.command("list")
def list_deliveries(
    request: Annotated[
        str | None, typer.Option(help="Only this request's deliveries.", show_default=False)
    ] = None,
    state: Annotated[
        str | None, typer.Option(help="pending, delivered or failed.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    data_dir: DataDir = None,
) -> None:
    """Deliveries, newest first: id, request, status reported, state, attempts, last error."""
    import datetime as dt

    from framecast.webhooks.store import DeliveryState, DeliveryStore, RetryPolicy

    try:
        wanted = DeliveryState(state) if state else None
    except ValueError:
        typer.echo(f"--state must be one of {', '.join(DeliveryState)}", err=True)
        raise typer.Exit(2) from None
    settings = settings_from_flags(data_dir=data_dir)
    # Only read: the lease and retry policy do not matter here.
    never = dt.timedelta(0)
    with one_line_errors(settings):
        store = DeliveryStore(
            read_database(settings), lease=never, retry=RetryPolicy(never, never, never)
        )
        deliveries = store.recent(request_id=request, state=wanted, limit=limit)
    for d in deliveries:
        when = d.finished_at or d.next_attempt_at
        error = f"\t{d.last_status_code or '-'} {d.last_error}" if d.last_error else ""
        typer.echo(
            f"{d.id}\t{d.request_id}\t{d.event}\t{d.state}\t{d.attempts} attempt(s)"
            f"\t{when:%Y-%m-%d %H:%M:%S}\t{d.url}{error}"
        )
