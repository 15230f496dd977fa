"""Fixtures for tests through the API on the real Temporal dev server: one server per
session, a worker and a fresh read model per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tests.conftest import _binary
from whistle import search_attributes
from whistle.db import create_tables, make_engine
from whistle.reference import load_reference
from whistle.settings import DATA_DIR, Settings
from worker import build_worker


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
    engine = make_engine(url)
    create_tables(engine)
    load_reference(engine, DATA_DIR / "reference.yaml")
    engine.dispose()
    return Settings(env="test", database_url=url, task_queue=f"tq-{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, settings: Settings
              ) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, with a worker running on the test's task queue."""
    app = create_app(settings, client=dev_env.client)
    engine = make_engine(settings.database_url)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with (
            build_worker(dev_env.client, settings, executor, engine),
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                              base_url="http://whistle") as client,
        ):
            yield client
    engine.dispose()
