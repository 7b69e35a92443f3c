"""What the routes work with, built once per app: the one way a route reaches the database,
the store, the fetcher and the settings (``AppServices``, read off ``app.state``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated

import anyio
from fastapi import Depends, Request
from sqlalchemy import Engine

from framecast.admission.idempotency import IdempotencyStore, submit_deadline
from framecast.admission.keys import KeyStore
from framecast.admission.quotas import QuotaStore
from framecast.api.node_metrics import NodeCounters
from framecast.api.public_url import base_url
from framecast.api.scrape_cache import ScrapeCache
from framecast.api.wait_slots import WaitSlots
from framecast.db import create_db_engine
from framecast.engines.hunyuan.loras import LoraFolder
from framecast.fetch import UrlFetcher
from framecast.models import ModelSpec, all_models
from framecast.queue.jobs import JobStore
from framecast.queue.registry import WorkerRegistry
from framecast.queue.status_watch import StatusWatch
from framecast.settings import Settings
from framecast.storage import Storage, open_storage
from framecast.webhooks.job_stores import build_job_store


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Engine
    jobs: JobStore
    keys: KeyStore
    registry: WorkerRegistry
    storage: Storage
    fetcher: UrlFetcher
    # The threads that decode images and data: URIs: at most FRAMECAST_DECODE_CONCURRENCY.
    decode_limiter: anyio.CapacityLimiter
    loras: LoraFolder
    models: tuple[ModelSpec, ...]
    """The models this API takes requests for, in the order /v1/models lists them."""
    watch: StatusWatch
    """Waits for a request to change: status streams and ``Prefer: wait``."""
    waits: WaitSlots
    """Caps those waits: FRAMECAST_MAX_STREAMS_PER_KEY and FRAMECAST_MAX_STREAMS."""
    quotas: QuotaStore
    idempotency: IdempotencyStore
    metrics_cache: ScrapeCache
    """This process's last /metrics scrape, reused for FRAMECAST_METRICS_CACHE_SECONDS."""
    node_counters: NodeCounters = field(default_factory=NodeCounters)
    """What this process counts in memory (slow bodies cut off), for ``/metrics``."""

    @property
    def heartbeat_window(self) -> dt.timedelta:
        """A worker silent for longer than this is taken for gone (three missed heartbeats)."""
        return dt.timedelta(seconds=3 * self.settings.heartbeat_seconds)

    async def aclose(self) -> None:
        await self.fetcher.aclose()
        self.watch.close()
        self.db.dispose()


def build_services(settings: Settings) -> Services:
    """The services ``settings`` describe; the database is not migrated here."""
    db = create_db_engine(settings.resolved_database_url)
    decode_limiter = anyio.CapacityLimiter(settings.decode_concurrency)
    return Services(
        settings=settings,
        db=db,
        jobs=build_job_store(db, settings),
        keys=KeyStore(db, settings.api_keys, server_key=settings.signing_key()),
        registry=WorkerRegistry(db),
        storage=open_storage(
            settings.storage_url, local_root=settings.media_dir, secret=settings.signing_key()
        ),
        fetcher=UrlFetcher(
            allow_private=settings.allow_private_urls,
            max_bytes=settings.max_image_bytes,
            timeout=settings.fetch_timeout_seconds,
            decode_limiter=decode_limiter,
        ),
        decode_limiter=decode_limiter,
        loras=LoraFolder(settings.lora_dir),
        models=tuple(all_models(settings)),
        watch=StatusWatch(
            db, settings.poll_seconds, dt.timedelta(seconds=3 * settings.heartbeat_seconds)
        ),
        waits=WaitSlots(settings.max_streams_per_key, settings.max_streams),
        quotas=QuotaStore(
            db,
            default_max_active=settings.max_active_per_key,
            default_rate=settings.submit_rate,
        ),
        idempotency=IdempotencyStore(db, submit_deadline(settings.fetch_timeout_seconds)),
        metrics_cache=ScrapeCache(settings.metrics_cache_seconds),
    )


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


AppServices = Annotated[Services, Depends(get_services)]


async def get_base_url(request: Request, services: AppServices) -> str:
    """The root of the URLs handed out: FRAMECAST_PUBLIC_BASE_URL, else what the client used
    (a Host header that is no host is a 400, never echoed: :mod:`framecast.api.public_url`)."""
    return base_url(request, services.settings.public_base_url)


BaseUrl = Annotated[str, Depends(get_base_url)]
