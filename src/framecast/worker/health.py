"""``python -m framecast.worker.health``: whether a worker on this machine is alive, for the
GPU image's ``HEALTHCHECK`` (Dockerfile.cuda).

A worker listens on no port, so there is nothing to ask over HTTP; what shows it alive is its
heartbeat in the queue's database, every ``FRAMECAST_HEARTBEAT_SECONDS`` from a thread of its
own, also while it loads its engine or renders. Healthy: a worker registered from this host
name (a container's own) has beaten within three heartbeats (the window ``/readyz`` uses) and
has neither stopped nor given up. Exit 0 then; else 1, with one line saying why.

What a heartbeat cannot show: a worker whose loop is stuck while its heartbeat thread still
beats. Its lease then stops being renewed and its request goes to another worker
(``FRAMECAST_LEASE_SECONDS``); this check does not see that.
"""

from __future__ import annotations

import datetime as dt
import socket
import sys

from framecast.db import create_db_engine
from framecast.queue.registry import WorkerRegistry
from framecast.settings import Settings

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
"""Docker's HEALTHCHECK reads 0 as healthy and 1 as unhealthy (and reserves 2)."""


def why_unhealthy(settings: Settings, hostname: str) -> str | None:
    """None if a worker on ``hostname`` is alive, else why this check thinks not."""
    window = dt.timedelta(seconds=3 * settings.heartbeat_seconds)
    db = create_db_engine(settings.resolved_database_url)
    try:
        live = WorkerRegistry(db).live(window)
    except Exception as exc:
        # SQLAlchemy's message runs to the SQL and a link: the driver's own first line says it.
        cause = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return f"cannot read the workers' heartbeats (FRAMECAST_DATABASE_URL): {cause}"
    finally:
        db.dispose()
    if any(worker.hostname == hostname for worker in live):
        return None
    return (
        f"no worker on {hostname} has sent a heartbeat in the last "
        f"{window.total_seconds():g} s (or it stopped, or gave up loading its engine)"
    )


def main() -> int:
    try:
        why = why_unhealthy(Settings(), socket.gethostname())
    except Exception as exc:  # a setting that does not parse, say: one line, not a traceback
        why = f"{type(exc).__name__}: {exc}"
    if why is None:
        return EXIT_HEALTHY
    print(f"unhealthy: {why}", file=sys.stderr)
    return EXIT_UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
