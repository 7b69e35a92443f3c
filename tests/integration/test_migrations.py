from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

import framecast.db
from framecast.db import create_db_engine, metadata, migrate, requests, utcnow
from framecast.states import Status


def _head() -> str | None:
    return ScriptDirectory(str(framecast.db.MIGRATIONS)).get_current_head()


def _row(request_id: str, status: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": request_id,
        "owner": "o",
        "model": "m",
        "status": status,
        "input": {"prompt": "p"},
        "image_key": "inputs/x",
        "created_at": now,
        "updated_at": now,
        "attempts": 0,
    }


def test_migrations_build_exactly_the_declared_schema(db: Engine) -> None:
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrate_is_idempotent(db: Engine) -> None:
    with db.begin() as conn:
        conn.execute(insert(requests).values(_row("kept", Status.IN_QUEUE)))
    migrate(db)
    migrate(db)
    with db.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head()
        assert conn.execute(select(requests.c.id)).scalars().all() == ["kept"]


def test_processes_starting_together_on_an_empty_database_all_succeed(db_url: str) -> None:
    import threading

    engines = [create_db_engine(db_url) for _ in range(4)]
    errors: list[BaseException] = []

    def run(engine: Engine) -> None:
        try:
            migrate(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    assert errors == []


def _refused(engine: Engine, statement: Any) -> None:
    refusal = r"ck_requests_status|CHECK constraint"  # PostgreSQL's words | SQLite's
    with pytest.raises(IntegrityError, match=refusal), engine.begin() as conn:
        conn.execute(statement)


def test_the_database_holds_exactly_the_states_of_the_state_machine(db: Engine) -> None:
    with db.begin() as conn:
        for status in Status:  # a status added without a migration fails here
            conn.execute(insert(requests).values(_row(f"r-{status}", status)))
    _refused(db, insert(requests).values(_row("bogus", "done")))
    _refused(db, update(requests).where(requests.c.id == "r-in_queue").values(status="running"))
    with db.connect() as conn:
        stored = conn.execute(select(requests.c.status).order_by(requests.c.seq)).scalars().all()
    assert stored == [s.value for s in Status]


def test_the_status_check_migration_keeps_existing_requests(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        migrate(engine, "0002")
        with engine.begin() as conn:
            conn.execute(insert(requests).values(_row("kept", Status.COMPLETED)))
            conn.execute(update(requests).values(result={"video_key": "v", "metadata": {}}))
        with engine.begin() as conn:  # before the migration nothing checked the status
            conn.execute(insert(requests).values(_row("was-allowed", "done")))
            conn.execute(requests.delete().where(requests.c.id == "was-allowed"))
        migrate(engine)
        with engine.connect() as conn:
            row = conn.execute(select(requests).where(requests.c.id == "kept")).mappings().one()
        assert (row["status"], row["input"], row["result"]) == (
            "completed",
            {"prompt": "p"},
            {"video_key": "v", "metadata": {}},
        )
        _refused(engine, update(requests).values(status="done"))
        # SQLite rebuilt the table: its other constraints came along.
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(requests).values(_row("kept", Status.IN_QUEUE)))
    finally:
        engine.dispose()
