"""The read model's waits are bounded: SQLite's busy timeout and PostgreSQL's statement
timeout end a wait with an error the API answers as 503, instead of a hanging request."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from api import main as api_main
from api.errors import DATABASE_UNAVAILABLE
from api.main import create_app
from tests.conftest import empty_read_model, prepare_read_model
from whistle.db import make_engine


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    with empty_read_model("postgresql", tmp_path) as url:
        yield url


def test_a_postgresql_statement_is_cancelled_after_its_timeout_and_keeps_its_schema(
        postgres_url):
    engine = make_engine(postgres_url, wait_seconds=2, statement_seconds=0.5)
    try:
        with engine.connect() as conn:
            schema = postgres_url.rsplit("%3D", 1)[1]
            assert conn.execute(text("SELECT current_schema()")).scalar() == schema
            began = time.monotonic()
            with pytest.raises(OperationalError, match="statement timeout"):
                conn.execute(text("SELECT pg_sleep(5)"))
            assert time.monotonic() - began < 3
    finally:
        engine.dispose()


def test_a_locked_sqlite_file_fails_a_write_after_the_wait(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with make_engine(url).begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    engine = make_engine(url, wait_seconds=0.5)
    try:
        began = time.monotonic()
        with pytest.raises(OperationalError, match="locked"), engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert time.monotonic() - began < 3
    finally:
        holder.close()
        engine.dispose()


async def test_a_table_locked_on_postgresql_is_a_prompt_503(dev_env, postgres_url, settings,
                                                            users, monkeypatch):
    """Someone holds an exclusive lock on the cases table (a long migration, a stuck
    session): listing cases answers 503 database_unavailable after the statement timeout."""
    prepare_read_model(postgres_url)
    monkeypatch.setattr(api_main, "DB_STATEMENT_SECONDS", 1.0)
    settings.database_url = postgres_url
    users.engine.dispose()
    users.engine = make_engine(postgres_url)
    app = create_app(settings, client=dev_env.client)
    locker = create_engine(postgres_url)
    async with app.router.lifespan_context(app), users.client(app) as api:
        assert (await api.get("/api/v1/cases")).status_code == 200
        with locker.connect() as conn:
            conn.execute(text("LOCK TABLE case_record IN ACCESS EXCLUSIVE MODE"))
            began = time.monotonic()
            r = await api.get("/api/v1/cases")
            took = time.monotonic() - began
            conn.rollback()
        assert (await api.get("/api/v1/cases")).status_code == 200
    locker.dispose()
    assert r.status_code == 503, r.text
    assert r.json() == {"code": "database_unavailable", "message": DATABASE_UNAVAILABLE}
    assert took < 5
