"""Shared fixtures: one time-skipping Temporal server per session, a fresh SQLite read
model per test with the sample reference data loaded."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from whistle import search_attributes
from whistle.db import create_tables, make_engine
from whistle.reference import load_reference
from whistle.settings import DATA_DIR

BIN = Path(sys.executable).parent


def _binary(name: str) -> str:
    path = shutil.which(name) or str(BIN / name)
    if not Path(path).exists():
        pytest.exit(f"{name} not found: install the dev extras (make venv)", returncode=2)
    return path


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: clocks of days pass in milliseconds."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await search_attributes.register(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite read model with the Huizhou sample reference data."""
    engine = make_engine(f"sqlite:///{tmp_path / 'whistle.db'}")
    create_tables(engine)
    load_reference(engine, DATA_DIR / "reference.yaml")
    yield engine
    engine.dispose()
