"""Database tables, engine creation and migrations.

The tables are SQLAlchemy Core objects: every status change is a single guarded UPDATE written
in :mod:`framecast.queue.jobs`, which reads more plainly in Core than through an ORM unit of work.
What differs between SQLite and PostgreSQL (upserts, row locks, NOTIFY/LISTEN) is in
:mod:`framecast.db.backend`, and in this module's engine and migration set-up only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
    false,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from framecast.db.backend import is_sqlite, supported_url
from framecast.states import Status

MIGRATIONS = Path(__file__).parents[1] / "migrations"
"""Alembic's script folder (beside this package, where it was before db became one)."""


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use framecast.db.utcnow()")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing rowid, not BIGINT.
BigInt = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

STATUS_CHECK = "ck_requests_status"


def status_check_sql(values: Iterable[str]) -> str:
    """The CHECK that keeps ``requests.status`` to the state machine's states."""
    return "status IN ({})".format(", ".join(f"'{value}'" for value in values))


requests = Table(
    "requests",
    metadata,
    # seq orders the queue (oldest first); id is the public, unguessable request_id.
    Column("seq", BigInt, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("owner", String(64), nullable=False),
    Column("model", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", JSON, nullable=False),
    Column("image_key", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker_id", String(64)),
    Column("lease_token", String(64)),
    Column("lease_expires_at", UTCDateTime),
    Column("cancel_requested_at", UTCDateTime),
    Column("phase", String(32)),
    Column("step", Integer),
    Column("total_steps", Integer),
    Column("progress", Float),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("result", JSON),
    Column("data_removed_at", UTCDateTime),
    # Still queued at this time: cancelled with outcome "expired", never claimed (0008).
    Column("start_deadline", UTCDateTime),
    # Deleted by its owner (DELETE /v1/videos/{id}): every route answers 404 for it (0008).
    Column("deleted_at", UTCDateTime),
    Index("ix_requests_status_model_seq", "status", "model", "seq"),
    Index("ix_requests_owner", "owner"),
    # A key's listing, newest first, and its count of active requests.
    Index("ix_requests_owner_seq", "owner", "seq"),
    Index("ix_requests_finished_at", "finished_at"),
    Index("ix_requests_status_start_deadline", "status", "start_deadline"),
    CheckConstraint(status_check_sql(Status), name=STATUS_CHECK),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    # Signs this key's webhook deliveries (whsec_...); the previous one keeps signing beside it
    # until previous_webhook_secret_until, so receivers can switch without losing a delivery.
    Column("webhook_secret", String(100)),
    Column("previous_webhook_secret", String(100)),
    Column("previous_webhook_secret_until", UTCDateTime),
    # This key's own limits (NULL: the server's FRAMECAST_MAX_ACTIVE_PER_KEY and
    # FRAMECAST_SUBMIT_RATE); max_active 0 and submit_rate "unlimited" lift them.
    Column("max_active", Integer),
    Column("submit_rate", String(32)),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    # One row per (owner, Idempotency-Key): which request it made and a hash of what was sent.
    # The primary key is what makes concurrent submits with one key agree on one request.
    Column("owner", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("body_hash", String(64), nullable=False),
    Column("request_id", String(36), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

submit_counters = Table(
    "submit_counters",
    metadata,
    # The submit rate limit's fixed window per owner, in the database so that every API node
    # counts the same submits; its row also serialises one owner's quota checks.
    Column("owner", String(64), primary_key=True),
    Column("window_start", BigInteger, nullable=False),
    Column("submits", Integer, nullable=False),
)

request_webhooks = Table(
    "request_webhooks",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("url", Text, nullable=False),
    # The API root the client used at submit: the links in a completed delivery start with it.
    Column("base_url", Text, nullable=False),
    Column("intermediate", Boolean, nullable=False, server_default=false()),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    # The outbox: one row per status change to report, written in that change's transaction.
    Column("seq", BigInt, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("request_id", String(36), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_token", String(64)),
    Column("lease_expires_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_request", "request_id"),
    CheckConstraint(
        "state IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_state"
    ),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("engine", String(32)),
    Column("model", String(200)),
    Column("state", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("current_request", String(36)),
    # The API models (e.g. tencent/hunyuan/image-to-video) this worker claims requests for.
    Column("serves", JSON),
    # Why it is not ready, in words for /readyz: a failed engine load, a retry in progress.
    Column("reason", Text),
    # Model id -> the optional stages (e.g. 720p_sr) this worker runs for it; null while loading.
    Column("stages", JSON),
)

# The history /metrics reports, kept as totals by the status change that adds to them
# (framecast.queue.request_totals), in that change's transaction: a scrape reads these few rows, not
# every request ever finished.
request_totals = Table(
    "request_totals",
    metadata,
    # Finished requests per model, final status and error code ("" unless failed).
    Column("model", String(100), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("error_code", String(64), primary_key=True),
    Column("requests", BigInteger, nullable=False),
)

request_histograms = Table(
    "request_histograms",
    metadata,
    # One bucket of a /metrics histogram: how many values fell in (the bound below, le], and
    # their sum. Not cumulative: a value adds to one row.
    Column("histogram", String(16), primary_key=True),
    Column("model", String(100), primary_key=True),
    Column("status", String(16), primary_key=True),  # "run": the final status; else ""
    Column("le", String(32), primary_key=True),  # the bucket's upper bound, e.g. "5.0", "+Inf"
    Column("observations", BigInteger, nullable=False),
    Column("total", Float, nullable=False),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes; busy_timeout makes concurrent writers wait
    # for each other instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_db_engine(url: str, *, create: bool = True) -> Engine:
    """An engine on ``url``; ``create=False`` leaves a missing SQLite file's folder uncreated
    (see :func:`open_existing_database`). :class:`framecast.startup.StartupError` (one line)
    unless it is a SQLite or PostgreSQL URL."""
    parsed = supported_url(url)
    if is_sqlite(parsed):
        if create and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


_MIGRATION_LOCK = 0x6672616D65  # "frame"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``, by default the newest (idempotent, safe to run
    concurrently); an older revision is for testing a migration against the data before it."""
    from alembic import command

    # Most starts find the schema current: they take no lock and log nothing.
    if revision == "head" and schema_revision(engine) == head_revision():
        return
    config = _alembic_config()
    with _sqlite_file_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Many processes start at once on a fleet: one migrates, the others wait for it
            # (the lock ends with this transaction) and then find nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock file beside a SQLite database while it is migrated (the API and the
    workers of `serve` may start together); other backends need none."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class DatabaseUnavailable(Exception):
    """A database a command that only reads cannot use as it is, as one line saying what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest migration this framecast has."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def schema_revision(engine: Engine) -> str | None:
    """The migration the database is at; None for one with no framecast tables yet."""
    from sqlalchemy import inspect

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def is_sqlite_url(url: str) -> bool:
    """Whether ``url`` is a SQLite database (a file in the data folder, usually)."""
    return is_sqlite(make_url(url))


def describe_database(url: str) -> str:
    """Where a database is, for a message: a SQLite file's path, else the URL without password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)


def open_existing_database(url: str) -> Engine:
    """An engine on a database that exists at this framecast's schema, for commands that only
    read: nothing is created, migrated or locked (a read-only data folder reads as well as any).
    :class:`DatabaseUnavailable` says what to run otherwise."""
    where = describe_database(url)
    start = "start the server once (make run, or framecast serve) or run `framecast db upgrade`"
    parsed = make_url(url)
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file and file != ":memory:" and not Path(file).is_file():
        raise DatabaseUnavailable(
            f"no database yet at {where}: {start}; or point --data-dir (FRAMECAST_DATA_DIR) "
            "at the folder that has one"
        )
    engine = create_db_engine(url, create=False)
    current, head = schema_revision(engine), head_revision()
    if current is None:
        engine.dispose()
        raise DatabaseUnavailable(f"no framecast tables yet in {where}: {start}")
    if current != head:
        engine.dispose()
        raise DatabaseUnavailable(
            f"the database at {where} is at schema revision {current}, this framecast's is "
            f"{head}: run `framecast db upgrade` (or use the framecast that serves it)"
        )
    return engine
