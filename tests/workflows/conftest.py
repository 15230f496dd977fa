"""Fixtures of the case workflow tests: `cases` starts cases and, after the test, terminates
any still running so their timers do not linger on the session's time-skipping server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.helpers import case_state, start_case
from whistle.domain import Level


class Cases:
    def __init__(self, env: WorkflowEnvironment, engine: Engine) -> None:
        self.env = env
        self.engine = engine
        self.handles: list[WorkflowHandle] = []

    async def start(self, worker: Worker, departments: list[str], *,
                    category: str = "neighbour", level: Level = Level.TOWN) -> WorkflowHandle:
        """Open a case at jiulong (owned by the xiaojinkou centre unless `level` says)."""
        s = case_state(self.engine, departments, category=category, level=level)
        h = await start_case(self.env.client, worker, s)
        self.handles.append(h)
        return h


@pytest.fixture
async def cases(time_env: WorkflowEnvironment, engine: Engine) -> AsyncIterator[Cases]:
    c = Cases(time_env, engine)
    yield c
    for h in c.handles:
        with contextlib.suppress(Exception):  # most have completed already
            await h.terminate("test over")
