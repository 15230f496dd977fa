"""The SQL engine and sessions of the read model (SQLite by default, PostgreSQL in
production)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, MetaData, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateColumn
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

log = logging.getLogger(__name__)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back time-zone aware (SQLite drops it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: read-model timestamps must carry a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(url: str, *, wait_seconds: float = 30.0,
                statement_seconds: float | None = None) -> Engine:
    """An engine for `url`; SQLite gets WAL so the worker and the API can share the file.

    `wait_seconds` bounds how long a connection waits for the database: SQLite's busy
    timeout (the write lock), PostgreSQL's connect timeout. `statement_seconds`, on
    PostgreSQL, cancels a statement (a lock wait included) that runs longer. The worker's
    activities may wait long, since they are retried anyway; the API keeps both short so a
    user gets a 503 in seconds rather than a request that hangs."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": wait_seconds})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, object] = {}
    if "connect_timeout=" not in url:
        connect_args["connect_timeout"] = max(1, round(wait_seconds))
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                           pool_timeout=wait_seconds, connect_args=connect_args)
    if statement_seconds is not None and engine.dialect.name == "postgresql":
        ms = int(statement_seconds * 1000)

        @event.listens_for(engine, "connect")
        def _timeouts(conn: Any, _record: object) -> None:
            # Set per connection, not in the URL's `options`, which may carry search_path.
            with conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = {ms}")
            conn.commit()
    return engine


def _sqlite_pragmas(conn: object, _record: object) -> None:
    cur = conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"  # the revision a database made by the pre-Alembic create_all is stamped at
# How autogenerate and the drift test compare the database with the models: types and server
# defaults too, not only tables, columns and indexes.
COMPARE_OPTIONS = {"compare_type": True, "compare_server_default": True}


def alembic_config() -> Config:
    """Alembic's configuration for the read model, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the read model to the newest revision; a database already there is left as is.

    One transaction holds it all: on PostgreSQL a transaction-level advisory lock (per
    schema) makes a second process starting at the same time wait, then find nothing to do;
    on SQLite BEGIN IMMEDIATE takes the file's write lock for the same effect. A database
    made before Alembic (read-model tables, no alembic_version) is first brought to the
    shape of revision 0001 by adding what it lacks, then stamped 0001."""
    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    heads = set(script.get_heads())
    with engine.begin() as conn:
        _lock(conn)
        config.attributes["connection"] = conn
        current = set(MigrationContext.configure(conn).get_current_heads())
        if current == heads:
            log.debug("read model at %s: nothing to migrate", ", ".join(sorted(heads)))
            return
        if not current and _is_legacy(conn, script):
            _adopt_legacy(conn, script)
            command.stamp(config, BASELINE)
            current = {BASELINE}
            if current == heads:
                return
        command.upgrade(config, "heads")
        log.info("read model migrated from %s to %s",
                 ", ".join(sorted(current)) or "an empty database", ", ".join(sorted(heads)))


_PG_LOCK_KEY = 0x574849  # "WHI"; the second half of the key is the schema's hash


def _lock(conn: Connection) -> None:
    """Serialize migrators on this database until the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))"),
                      {"key": _PG_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits out the busy timeout, then fails


def baseline_metadata() -> MetaData:
    """The read model as revision 0001 makes it, which is what the create_all of the models
    made before there were migrations."""
    return _baseline(ScriptDirectory.from_config(alembic_config()))


def _baseline(script: ScriptDirectory) -> MetaData:
    rev = script.get_revision(BASELINE)
    assert rev is not None and rev.module is not None
    return rev.module.tables()


def _is_legacy(conn: Connection, script: ScriptDirectory) -> bool:
    have = inspect(conn)
    if have.has_table("alembic_version"):
        return False
    return any(have.has_table(name) for name in _baseline(script).tables)


def _adopt_legacy(conn: Connection, script: ScriptDirectory) -> None:
    """The old additive upgrade, up to revision 0001 and no further: create the tables and
    indexes that are missing, add the missing columns (each must be nullable or carry a
    server default). Nothing is altered or dropped; rows are kept."""
    have = inspect(conn)
    done: list[str] = []
    for table in _baseline(script).sorted_tables:
        if not have.has_table(table.name):
            table.create(conn)
            done.append(f"created table {table.name}")
            continue
        existing = {c["name"] for c in have.get_columns(table.name)}
        for column in table.columns:
            if column.name not in existing:
                ddl = CreateColumn(column).compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
                done.append(f"added column {table.name}.{column.name}")
        indexes = {ix["name"] for ix in have.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
                done.append(f"created index {index.name}")
    log.warning("read model made before migrations: brought to revision %s (%s) and stamped",
                BASELINE, "; ".join(done) or "it already had that shape")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
