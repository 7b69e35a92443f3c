"""What differs between the two databases framecast runs on, in one place.

framecast runs on SQLite (one machine) and PostgreSQL (many machines). Every statement elsewhere
is SQLAlchemy Core that both run alike, ``UPDATE ... RETURNING`` and ``INSERT ... RETURNING``
included (SQLite has had RETURNING since 3.35). The rest is here, and nowhere else
(tests/unit/test_db_rules.py holds that):

- :func:`upsert`: ``INSERT ... ON CONFLICT``, which SQLAlchemy builds per dialect only (both
  databases give it the same meaning).
- :func:`skip_locked`: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so that concurrent claimers take
  different rows instead of waiting on each other; SQLite has one writer at a time, which makes
  a claim's single statement atomic without it.
- :func:`write_turns`: on SQLite, one process's writers take turns on a lock.
- :func:`notify` and :class:`Listener`: ``NOTIFY``/``LISTEN`` (PostgreSQL). SQLite has no
  notifications: :func:`listener_for` gives None there, and whoever waits polls instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, Engine, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import GenerativeSelect

from framecast.startup import StartupError

log = logging.getLogger("framecast.db.backend")

POSTGRESQL = "postgresql"
SQLITE = "sqlite"

CONNECT_TIMEOUT_S = 10
"""How long the LISTEN connection's connect may take before it counts as failed."""

_STOP_CHECK_S = 1.0
"""The longest the listener waits before it retries a lost connection or rechecks its work."""

Bind = Engine | Connection
SelectT = TypeVar("SelectT", bound=GenerativeSelect)


def _postgres(bind: Bind) -> bool:
    return bind.dialect.name == POSTGRESQL


def supported_url(url: str) -> URL:
    """``url`` parsed, or :class:`StartupError` in one line unless it is SQLite or PostgreSQL,
    the two databases framecast is written and tested for."""
    example = "sqlite:///path/to/framecast.db or postgresql+psycopg://user:password@host/db"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        # Not echoed: an unparsable URL may still hold a password.
        raise StartupError(
            f"the database URL (FRAMECAST_DATABASE_URL) cannot be parsed; give {example}"
        ) from exc
    if parsed.get_backend_name() not in (SQLITE, POSTGRESQL):
        shown = parsed.render_as_string(hide_password=True)
        raise StartupError(
            f"the database URL (FRAMECAST_DATABASE_URL) {shown} is neither SQLite nor "
            f"PostgreSQL, the two databases framecast runs on; give {example}"
        )
    return parsed


def is_sqlite(url: URL) -> bool:
    """For engine creation: SQLite's file, pragmas and thread rules need their own options."""
    return url.get_backend_name() == SQLITE


# -- statements ---------------------------------------------------------------------------------


def upsert(
    bind: Bind,
    table: Table,
    values: Mapping[str, Any],
    *,
    key: Sequence[Column[Any]],
    update: Mapping[str, Any] | None = None,
) -> Insert:
    """``INSERT values ON CONFLICT (key) DO UPDATE SET update``, or ``DO NOTHING`` when
    ``update`` is None. Add ``.returning(...)`` as with any insert: with DO NOTHING, a conflict
    returns no row."""
    build = postgresql.insert if _postgres(bind) else sqlite.insert
    statement = build(table).values(**values)
    if update is None:
        return statement.on_conflict_do_nothing(index_elements=list(key))
    return statement.on_conflict_do_update(index_elements=list(key), set_=dict(update))


def skip_locked(bind: Bind, query: SelectT) -> SelectT:
    """``query`` (the rows a claim takes) locking them and skipping rows another transaction
    locks, on PostgreSQL; as it is on SQLite (see the module's docstring)."""
    return query.with_for_update(skip_locked=True) if _postgres(bind) else query


def write_turns(engine: Engine) -> contextlib.AbstractContextManager[Any]:
    """A lock for one process's writers to take turns on, on SQLite; nothing on PostgreSQL.

    SQLite has one writer at a time, and a connection that finds the file locked sleeps in
    growing steps before it tries again: many threads writing at once would mostly sleep."""
    if engine.dialect.name == SQLITE:
        return threading.Lock()
    return contextlib.nullcontext()


def notify(conn: Connection, channel: str, payload: str = "") -> None:
    """NOTIFY ``channel`` when ``conn``'s transaction commits (a woken listener then finds what
    it wrote), on PostgreSQL; nothing on SQLite, whose waiters poll."""
    if _postgres(conn):
        conn.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
        )


# -- LISTEN -------------------------------------------------------------------------------------

_CHANNEL = re.compile(r"[a-z_][a-z0-9_]*")


class Subscription:
    """One subscriber's interest in one channel of a :class:`Listener`; :meth:`close` ends it.

    Its callbacks run on the listener's thread: they must be quick and must not close a
    subscription of the same listener other than their own."""

    def __init__(
        self,
        listener: Listener,
        channel: str,
        on_notify: Callable[[str], None],
        on_listening: Callable[[bool], None] | None,
    ) -> None:
        self.channel = channel
        self._listener = listener
        self._on_notify = on_notify
        self._on_listening = on_listening
        self.listening = False
        """Whether LISTEN is in effect for it now (only the listener's thread changes it)."""
        self._tried = threading.Event()

    def wait_tried(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) until the listener has tried to LISTEN for it; whether it
        listens now."""
        self._tried.wait(timeout)
        return self.listening

    def close(self) -> None:
        self._listener._unsubscribe(self)


class Listener:
    """One LISTEN connection and one thread per process and database, whatever the number of
    subscribers: each is handed the payloads of its channel's notifications.

    The thread starts with the first subscription and ends, closing the connection, after the
    last one closes. A lost connection is retried every second; meanwhile each subscriber hears
    ``on_listening(False)``, then ``on_listening(True)`` once it listens again. Notifications
    sent in between are lost: whoever waits on them also polls."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._thread: threading.Thread | None = None
        self._wake_fds: tuple[int, int] | None = None  # a pipe, while the thread runs
        self.backend_pid: int | None = None
        """The LISTEN connection's server process, while it is connected (for tests)."""

    @property
    def channels(self) -> set[str]:
        """The channels its subscribers want."""
        with self._lock:
            return {s.channel for s in self._subscriptions}

    def subscribe(
        self,
        channel: str,
        on_notify: Callable[[str], None],
        on_listening: Callable[[bool], None] | None = None,
    ) -> Subscription:
        """Hand ``channel``'s notifications to ``on_notify`` (the payload) from now on, and
        whether it is listening to ``on_listening``. Returns at once: the thread connects."""
        if not _CHANNEL.fullmatch(channel):
            # LISTEN takes no bound parameter: the name goes into the statement as it is.
            raise ValueError(f"'{channel}' is not a channel name: lower-case letters, digits, _")
        subscription = Subscription(self, channel, on_notify, on_listening)
        with self._lock:
            self._subscriptions.append(subscription)
            if self._thread is None:
                read, write = os.pipe()
                os.set_blocking(read, False)
                os.set_blocking(write, False)
                self._wake_fds = (read, write)
                self._thread = threading.Thread(
                    target=self._run, args=(read,), name="framecast-listen", daemon=True
                )
                self._thread.start()
            else:
                self._wake()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            last = self._thread if not self._subscriptions else None
            self._wake()
        if last is not None and last is not threading.current_thread():
            last.join(timeout=_STOP_CHECK_S * 3)

    def _wake(self) -> None:
        """Have the thread look at the subscriptions now (called holding the lock)."""
        if self._wake_fds is not None:
            with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
                os.write(self._wake_fds[1], b"x")

    # -- the thread ---------------------------------------------------------------------------

    def _run(self, wake: int) -> None:
        conn: Any = None
        listening: set[str] = set()
        failing = False
        while True:
            with self._lock:
                subscriptions = list(self._subscriptions)
                if not subscriptions:
                    # Under the lock: a subscription from here on starts a thread of its own.
                    self._thread = None
                    fds, self._wake_fds = self._wake_fds, None
                    _closed(conn)
                    self.backend_pid = None
                    break
            try:
                if conn is None:
                    conn, listening = self._connect(), set()
                wanted = {s.channel for s in subscriptions}
                for channel in sorted(wanted - listening):
                    conn.execute(f"LISTEN {channel}")
                    listening.add(channel)
                for channel in sorted(listening - wanted):
                    conn.execute(f"UNLISTEN {channel}")
                    listening.discard(channel)
                if failing:
                    log.info("listening again on %s", ", ".join(sorted(listening)))
                    failing = False
                self._tell_listening(subscriptions, listening)
                for note in conn.notifies(timeout=0):
                    self._deliver(note.channel, note.payload)
                _wait_readable((conn.fileno(), wake), _STOP_CHECK_S)
            except Exception:
                # Once per outage, not once a second while the database is away.
                if not failing:
                    log.warning("LISTEN connection failed; polling until it is back", exc_info=True)
                failing = True
                _closed(conn)
                conn, self.backend_pid = None, None
                self._tell_lost()
                _wait_readable((wake,), _STOP_CHECK_S)
            _drain(wake)
        if fds is not None:
            for fd in fds:
                os.close(fd)

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        self.backend_pid = conn.info.backend_pid
        return conn

    def _tell_listening(self, subscriptions: list[Subscription], listening: set[str]) -> None:
        for subscription in subscriptions:
            if subscription.channel in listening and not subscription.listening:
                subscription.listening = True
                self._call(subscription._on_listening, True)
            subscription._tried.set()

    def _tell_lost(self) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            if subscription.listening:
                subscription.listening = False
                self._call(subscription._on_listening, False)
            subscription._tried.set()

    def _deliver(self, channel: str, payload: str) -> None:
        with self._lock:
            subscribers = [s for s in self._subscriptions if s.channel == channel]
        for subscription in subscribers:
            self._call(subscription._on_notify, payload)

    @staticmethod
    def _call(callback: Callable[[Any], None] | None, value: Any) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:  # one subscriber's bug must not cut the others off
            log.exception("a LISTEN subscriber failed on %r", value)


def _wait_readable(fds: tuple[int, ...], timeout: float) -> None:
    # selectors, not select.select: an API process serving many clients has descriptors past
    # select's limit of 1024.
    with selectors.DefaultSelector() as selector:
        for fd in fds:
            selector.register(fd, selectors.EVENT_READ)
        selector.select(timeout)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def _closed(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # already broken; nothing to release
            log.debug("closing the LISTEN connection failed", exc_info=True)


_listeners: dict[str, Listener] = {}
_listeners_lock = threading.Lock()


def listener_for(url: str | URL) -> Listener | None:
    """This process's one :class:`Listener` of ``url``'s database; None on SQLite, which has no
    notifications (wait by polling instead)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != POSTGRESQL:
        return None
    # psycopg itself, whichever driver the URL names: SQLAlchemy's pool has no LISTEN loop.
    dsn = parsed.set(drivername=POSTGRESQL).render_as_string(hide_password=False)
    with _listeners_lock:
        listener = _listeners.get(dsn)
        if listener is None or listener.pid != os.getpid():  # a forked child starts its own
            listener = _listeners[dsn] = Listener(dsn)
    return listener
