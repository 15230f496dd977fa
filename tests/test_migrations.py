"""The read-model schema is made by Alembic revisions (whistle/migrations), from an empty
database, on SQLite and on PostgreSQL; the revisions and the models never drift apart."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, select, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import whistle.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from whistle.db import (
    BASELINE,
    COMPARE_OPTIONS,
    alembic_config,
    baseline_metadata,
    make_engine,
    migrate,
)

HEADS = set(ScriptDirectory.from_config(alembic_config()).get_heads())
AT = datetime(2026, 9, 30, 7, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def differences(engine: Engine) -> list[Any]:
    """What autogenerate would put in a new revision: the database against the models."""
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts=COMPARE_OPTIONS),
                                SQLModel.metadata)


def revisions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def alembic(engine: Engine, fn: Callable[..., None], *args: str) -> None:
    """An alembic command on the engine, the way whistle.db.migrate runs them."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        fn(config, *args)


def statements(engine: Engine) -> list[str]:
    """Every SQL statement the engine sends from now on (a live list)."""
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: sent.append(statement))
    return sent


def read_model_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_the_revisions_make_exactly_the_models(db: Engine):
    """Fails when a model changes without a revision: run
    `alembic revision --autogenerate --rev-id NNNN -m "..."` and review what it wrote."""
    migrate(db)
    assert revisions(db) == HEADS
    # Nothing is ignored: tables, columns, types, nullability, server defaults, indexes and
    # unique constraints are all compared. SQLite cannot tell some differences apart (a
    # DATETIME with or without time zone, an unnamed UNIQUE dropped); the PostgreSQL run of
    # this test does.
    assert differences(db) == [], "the models changed without a revision (see docstring)"


def test_alembic_version_lives_in_the_connections_schema(db: Engine):
    migrate(db)
    with db.connect() as conn:
        assert inspect(conn).has_table("alembic_version")  # default schema only
        if conn.dialect.name == "postgresql":
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            assert schema.startswith("t_")  # the test's own schema, from its search_path
            where = conn.execute(text(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name IN ('alembic_version', 'case_record') "
                "AND table_schema = current_schema()")).scalars().all()
            assert sorted(where) == [schema, schema]


def test_migrating_twice_changes_nothing(db: Engine):
    migrate(db)
    sent = statements(db)
    migrate(db)
    changes = [s for s in sent if s.lstrip().split(None, 1)[0].upper()
               in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}]
    assert changes == []
    assert revisions(db) == HEADS


def test_downgrade_to_base_then_upgrade_to_head(db: Engine):
    migrate(db)
    alembic(db, command.downgrade, "base")
    assert read_model_tables(db) == set()
    assert revisions(db) == set()
    migrate(db)
    assert revisions(db) == HEADS
    assert differences(db) == []


def test_two_processes_starting_together_migrate_once(database_url: str):
    """The API and the worker start at the same time against an empty database."""
    engines = [make_engine(database_url) for _ in range(2)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def run(engine: Engine) -> None:
        start.wait()
        try:
            migrate(engine)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert revisions(engines[0]) == HEADS
    for engine in engines:
        engine.dispose()


def _legacy_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Rows in a database the old create_all made (no alembic_version), one per table."""
    md = baseline_metadata()
    t = md.tables
    with engine.begin() as conn:
        conn.execute(t["jurisdiction"].insert().values(
            code="jiulong", level="town", name_zh="九龙镇", name_en="Jiulong", parent="boluo",
            path="/huizhou/boluo/jiulong/"))
        conn.execute(t["category"].insert().values(code="environment", name_zh="环境",
                                                   name_en="Environment"))
        conn.execute(t["case_record"].insert().values(
            case_id="c-1", title="noise", description="a factory at night",
            category="environment", status="open", level="town", owner="jiulong",
            location="jiulong", jurisdiction_path="/huizhou/boluo/jiulong/",
            source_channel="hotline", parties=[{"name": "张三"}], departments=["police"],
            overdue=False, unresolved_at_top=False, reopen_count=0, opened_by="clerk",
            opened_at=AT, updated_at=AT, last_seq=2))
        conn.execute(t["summons"].insert().values(
            case_id="c-1", department="police", round=1, status="summoned", lead=True,
            summoned_at=AT, report_in_due=AT, sign_off_due=AT, overdue=False))
        conn.execute(t["case_event"].insert().values(
            case_id="c-1", seq=1, kind="opened", at=AT, actor="clerk", data={"k": "v"}))
        conn.execute(t["outbox"].insert().values(
            case_id="c-1", seq=1, recipient="police", kind="summoned", text="请报到",
            created_at=AT))
    return _rows(engine)


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    md = baseline_metadata()
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(select(table))]
                for name, table in md.tables.items()}


def test_a_database_made_before_migrations_is_stamped_and_upgraded(
        db: Engine, caplog: pytest.LogCaptureFixture):
    baseline_metadata().create_all(db)  # what the create_all of the models made at 0001
    before = _legacy_rows(db)
    assert revisions(db) == set()
    with caplog.at_level(logging.INFO, logger="whistle.db"):
        migrate(db)
    assert f"brought to revision {BASELINE} (it already had that shape)" in caplog.text
    assert revisions(db) == HEADS
    assert _rows(db) == before
    assert differences(db) == []  # the same schema as a database migrated from empty
    migrate(db)
    assert _rows(db) == before


def test_an_older_database_made_before_migrations_gets_what_it_lacks(
        db: Engine, caplog: pytest.LogCaptureFixture):
    """A version older than 0001 had no outbox, no inbox index and no lead column: they are
    added, the rows are kept, then the database is stamped 0001 and upgraded."""
    baseline_metadata().create_all(db)
    with db.begin() as conn:
        conn.execute(text("DROP TABLE outbox"))
        conn.execute(text("DROP INDEX ix_summons_inbox"))
        conn.execute(text("ALTER TABLE summons DROP COLUMN lead"))
        conn.execute(text(
            "INSERT INTO summons (case_id, department, round, status, summoned_at, "
            "report_in_due, sign_off_due, overdue) VALUES "
            "('c-1', 'police', 1, 'summoned', :at, :at, :at, :no)"), {"at": AT, "no": False})
    with caplog.at_level(logging.INFO, logger="whistle.db"):
        migrate(db)
    for done in ("created table outbox", "added column summons.lead",
                 "created index ix_summons_inbox"):
        assert done in caplog.text
    assert revisions(db) == HEADS
    have = inspect(db)
    assert "outbox" in have.get_table_names()
    assert "ix_summons_inbox" in {ix["name"] for ix in have.get_indexes("summons")}
    with db.connect() as conn:
        lead = conn.execute(text("SELECT lead FROM summons WHERE case_id = 'c-1'")).scalar_one()
    assert lead in (False, 0)  # the server default filled the existing row
    assert differences(db) == []
