"""The one way to build the :class:`JobStore` a process uses: with every listener a status
change must carry (today, the webhook outbox), so no worker or API node can change a status
without recording what it owes to others."""

from __future__ import annotations

from sqlalchemy import Engine

from framecast.queue.jobs import JobStore
from framecast.settings import Settings
from framecast.webhooks.outbox import record_change


def build_job_store(engine: Engine, settings: Settings) -> JobStore:
    return JobStore(
        engine,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        listeners=[record_change],
    )
