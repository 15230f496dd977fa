"""Fixtures for tests through the API on the real Temporal dev server: one server per
session, a worker and a fresh read model per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from whistle.db import make_engine
from whistle.settings import Settings
from worker import build_worker


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
