"""The dispatcher: claims due deliveries, sends each as one signed attempt, records the outcome.

It runs in the API process of ``framecast serve`` (a thread with its own event loop, so the
API's loop never waits on a slow receiver) and alone as ``framecast webhooks dispatch``. The
API process, not the workers: every node that serves has one whatever its worker count (an
API-only node has no workers), it has the storage and settings that links need, and a GPU
worker's process is better left to rendering. Several dispatchers (several API nodes) share the
outbox safely: each attempt is claimed under a lease (:mod:`.store`).

It wakes at once on a new delivery on PostgreSQL (LISTEN on the outbox's channel) and polls
every FRAMECAST_WEBHOOK_POLL_SECONDS otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass

import anyio
from sqlalchemy import Engine, select

from framecast.admission.keys import KeyStore
from framecast.db import create_db_engine, migrate, request_webhooks, requests
from framecast.queue.jobs import Job
from framecast.queue.views import result_body, wire
from framecast.queue.wakeup import Waiter, waiter_for
from framecast.settings import Settings
from framecast.states import TERMINAL, Status
from framecast.storage import Storage, open_storage
from framecast.webhooks.outbox import WEBHOOK_CHANNEL
from framecast.webhooks.sender import AttemptResult, WebhookSender
from framecast.webhooks.signing import signature_header
from framecast.webhooks.store import Delivery, DeliveryStore, RetryPolicy

log = logging.getLogger("framecast.webhooks")

LEASE_MARGIN = dt.timedelta(seconds=30)
"""A claim outlives the attempt's time limit by this much (database writes, a busy host)."""

SECRETS_TTL_S = 5.0
"""A rotated secret signs deliveries within this long (the previous one keeps signing beside
it during the overlap, so no receiver notices)."""


MAX_REASON_CHARS = 500
"""Of an unexpected exception's text kept as a delivery's ``last_error``."""


def broke_off(exc: BaseException) -> str:
    """A failed attempt's reason for an exception nothing expected."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 3] + "..."
    return f"the attempt broke off: {text}"


@dataclass(frozen=True)
class Outcome:
    delivery: Delivery
    result: AttemptResult


class Dispatcher:
    def __init__(
        self,
        *,
        db: Engine,
        store: DeliveryStore,
        keys: KeyStore,
        storage: Storage,
        sender: WebhookSender,
        link_ttl: int,
        concurrency: int = 32,
        poll_seconds: float = 0.25,
    ) -> None:
        self.db = db
        self.store = store
        self.keys = keys
        self.storage = storage
        self.sender = sender
        self.link_ttl = link_ttl
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self._in_flight = 0
        self._secrets: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._wake: anyio.Event | None = None  # made in run(): an Event needs the running loop

    # -- one attempt --------------------------------------------------------------------------

    def body(self, delivery: Delivery) -> bytes:
        """The payload, as JSON bytes. A terminal delivery is rebuilt from the request now, as
        the result route would answer it (output links valid from this attempt on); an
        intermediate one is the snapshot taken at the change."""
        payload = delivery.payload
        if Status(delivery.event) in TERMINAL:
            with self.db.connect() as conn:
                base_url = conn.execute(
                    select(request_webhooks.c.base_url).where(
                        request_webhooks.c.request_id == delivery.request_id
                    )
                ).scalar_one_or_none()
                row = (
                    conn.execute(select(requests).where(requests.c.id == delivery.request_id))
                    .mappings()
                    .one_or_none()
                )
            if row is not None and base_url is not None:
                job = Job.from_row(row)
                payload = wire(result_body(job, base_url, None, self.storage, self.link_ttl))
        return json.dumps(payload, separators=(",", ":")).encode()

    def secrets(self, owner: str) -> tuple[str, ...]:
        """The owner's signing secrets, read at most every SECRETS_TTL_S (one read per
        delivery would double the database's work at full speed)."""
        now = time.monotonic()
        cached = self._secrets.get(owner)
        if cached is None or cached[0] < now:
            cached = (now + SECRETS_TTL_S, self.keys.webhook_secrets(owner))
            self._secrets[owner] = cached
        return cached[1]

    async def attempt(self, delivery: Delivery) -> Outcome:
        """Send one claimed delivery and record what happened. Whatever breaks the attempt off
        (a bug here or in a library) is a failed attempt with its reason, backed off like any
        other: left to its claim's expiry it would come back at once, fail the same way, and
        never be counted, recorded or given up."""
        try:
            secrets = await anyio.to_thread.run_sync(self.secrets, delivery.owner)
            if not secrets:
                error = f"the key {delivery.owner} has no webhook secret; nothing to sign with"
                await anyio.to_thread.run_sync(self.store.give_up, delivery, error)
                return Outcome(delivery, AttemptResult(None, error))
            body = await anyio.to_thread.run_sync(self.body, delivery)
            timestamp = int(dt.datetime.now(dt.UTC).timestamp())
            headers = {
                "webhook-id": delivery.id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature_header(secrets, delivery.id, timestamp, body),
            }
            result = await self.sender.send(delivery.url, headers, body)
        except Exception as exc:
            result = AttemptResult(None, broke_off(exc))
            # A bug: a warning, with the traceback at the delivery's first attempt only (the
            # later ones fail the same way, in one line each).
            log.warning(
                "webhook %s for request %s (attempt %d) failed: %s",
                delivery.id,
                delivery.request_id,
                delivery.attempts + 1,
                result.error,
                exc_info=delivery.attempts == 0,
            )
        else:
            if not result.ok:
                log.info(
                    "webhook %s for request %s (attempt %d) failed: %s",
                    delivery.id,
                    delivery.request_id,
                    delivery.attempts + 1,
                    result.error,
                )
        if result.ok:
            assert result.status_code is not None
            await anyio.to_thread.run_sync(self.store.delivered, delivery, result.status_code)
        else:
            assert result.error is not None
            await anyio.to_thread.run_sync(
                self.store.attempt_failed, delivery, result.status_code, result.error
            )
        return Outcome(delivery, result)

    async def dispatch_due(self) -> list[Outcome]:
        """Claim what is due now (up to ``concurrency``) and attempt it all at once."""
        claimed = await anyio.to_thread.run_sync(self.store.claim, self.concurrency)
        outcomes: list[Outcome] = []

        async def one(delivery: Delivery) -> None:
            outcomes.append(await self.attempt(delivery))

        async with anyio.create_task_group() as tg:
            for delivery in claimed:
                tg.start_soon(one, delivery)
        return outcomes

    # -- the loop -----------------------------------------------------------------------------

    async def run(self, stop: threading.Event, waiter: Waiter) -> None:
        """Until ``stop``: keep up to ``concurrency`` attempts going, claiming more whenever a
        slot frees up or a delivery may have arrived. Attempts still going at ``stop`` are
        abandoned; their claims expire and another dispatcher (or the next start) repeats
        them: at least once, never lost."""
        self._wake = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._listen, stop, waiter)
            while not stop.is_set():
                free = self.concurrency - self._in_flight
                try:
                    claimed = await anyio.to_thread.run_sync(self.store.claim, free) if free else []
                except Exception:
                    # The database is away (a restart, a failover): keep trying at the poll
                    # interval rather than end the dispatcher; the deliveries wait in it.
                    log.warning("webhook dispatcher: claiming failed; retrying", exc_info=True)
                    claimed = []
                for delivery in claimed:
                    self._in_flight += 1
                    tg.start_soon(self._tracked, delivery)
                if not claimed or len(claimed) == free:
                    await self._wake.wait()
                    self._wake = anyio.Event()
            tg.cancel_scope.cancel()

    async def _tracked(self, delivery: Delivery) -> None:
        try:
            await self.attempt(delivery)
        except Exception:
            # Its claim expires and it is tried again; the loop must outlive any one attempt.
            log.exception("webhook %s: the attempt broke off", delivery.id)
        finally:
            self._in_flight -= 1
            self._wakeup()

    async def _listen(self, stop: threading.Event, waiter: Waiter) -> None:
        # waiter.wait returns on a NOTIFY (PostgreSQL), after poll_seconds, or on stop.
        while not stop.is_set():
            await anyio.to_thread.run_sync(waiter.wait, self.poll_seconds, abandon_on_cancel=True)
            self._wakeup()

    def _wakeup(self) -> None:
        if self._wake is not None:
            self._wake.set()


def build_dispatcher(settings: Settings, db: Engine | None = None) -> Dispatcher:
    """A dispatcher for ``settings``; ``db``: an engine to share (default: its own)."""
    db = db or create_db_engine(settings.resolved_database_url)
    retry = RetryPolicy(
        base=dt.timedelta(seconds=settings.webhook_retry_base_seconds),
        cap=dt.timedelta(seconds=settings.webhook_retry_max_seconds),
        give_up_after=settings.webhook_retry_window,
    )
    return Dispatcher(
        db=db,
        store=DeliveryStore(
            db,
            lease=dt.timedelta(seconds=settings.webhook_timeout_seconds) + LEASE_MARGIN,
            retry=retry,
        ),
        keys=KeyStore(db, settings.api_keys, server_key=settings.signing_key()),
        storage=open_storage(
            settings.storage_url, local_root=settings.media_dir, secret=settings.signing_key()
        ),
        sender=WebhookSender(
            allow_private=settings.allow_private_urls, timeout=settings.webhook_timeout_seconds
        ),
        link_ttl=settings.link_ttl_seconds,
        concurrency=settings.webhook_concurrency,
        poll_seconds=settings.webhook_poll_seconds,
    )


def run_dispatcher(settings: Settings, stop: threading.Event, *, migrated: bool = False) -> None:
    """Dispatch until ``stop`` is set (blocking; its own event loop)."""
    dispatcher = build_dispatcher(settings)
    if not migrated:
        migrate(dispatcher.db)
    waiter = waiter_for(settings.resolved_database_url, stop, channel=WEBHOOK_CHANNEL)

    async def main() -> None:
        try:
            await dispatcher.run(stop, waiter)
        finally:
            await dispatcher.sender.aclose()

    try:
        anyio.run(main)
    finally:
        waiter.close()
        dispatcher.db.dispose()


class DispatcherThread:
    """``run_dispatcher`` in a background thread, for ``framecast serve``."""

    def __init__(self, settings: Settings) -> None:
        self.stop_event = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(settings,), name="webhook-dispatcher", daemon=True
        )

    def _run(self, settings: Settings) -> None:
        try:
            run_dispatcher(settings, self.stop_event, migrated=True)
        except Exception:
            log.exception("the webhook dispatcher stopped; deliveries wait for the next start")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout)
