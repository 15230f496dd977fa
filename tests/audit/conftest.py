"""Fixtures of the audit tests: committed histories and a read model projected from them
(offline), the API with the audit routes on the session's dev server, and a dev server
that continues cases as new early."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.case import CaseActivities
from audit.history import CaseHistory, load_export
from tests.conftest import start_dev_server
from tests.helpers import POLICY
from whistle.db import make_engine, migrate
from whistle.domain import ActivityName, Projection
from whistle.settings import Settings

HISTORIES = Path(__file__).resolve().parent.parent / "replay" / "histories"


def history_file(name: str) -> str:
    return (HISTORIES / f"{name}.json").read_text(encoding="utf-8")


def committed(name: str) -> CaseHistory:
    """A committed replay fixture as one case."""
    [case] = load_export(history_file(name))
    return case


def continue_as_new_files() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(HISTORIES.glob("continue_as_new.*"))]


def project(engine: Engine, case: CaseHistory, upto_event: int | None = None) -> int:
    """Write the read model of `case` as its worker did: run the projection activity on
    every projection input history holds (of the last run, only those before event
    `upto_event`). Returns how many projections ran."""
    acts = CaseActivities(engine, POLICY)
    ran = 0
    for i, run in enumerate(case.runs, start=1):
        for e in run.events:
            if upto_event is not None and i == len(case.runs) and e.event_id >= upto_event:
                break
            a = e.activity_task_scheduled_event_attributes
            if (e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                    and a.activity_type.name == ActivityName.PROJECT_CASE):
                [p] = pydantic_data_converter.payload_converter.from_payloads(
                    a.input.payloads, [Projection])
                acts.project_case(p)
                ran += 1
    return ran


@pytest.fixture
def read_model(database_url: str) -> Iterator[Engine]:
    """An empty read model (SQLite, then PostgreSQL)."""
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


# --- editing a history export (what a forger would have to do) ----------------------------


def edit_update_args(doc: dict[str, Any], update: str, edit: Callable[[dict[str, Any]], None],
                     nth: int = 0) -> None:
    """Apply `edit` to the argument of the `nth` accepted Update called `update`."""
    accepted = [e for e in doc["events"]
                if e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED"
                and e["workflowExecutionUpdateAcceptedEventAttributes"]["acceptedRequest"]
                ["input"]["name"] == update]
    payload = (accepted[nth]["workflowExecutionUpdateAcceptedEventAttributes"]
               ["acceptedRequest"]["input"]["args"]["payloads"][0])
    arg = json.loads(base64.b64decode(payload["data"]))
    edit(arg)
    payload["data"] = base64.b64encode(json.dumps(arg).encode()).decode()


# --- on a dev server ----------------------------------------------------------------------


@pytest.fixture
async def audit_api(api: httpx.AsyncClient, settings: Settings
                    ) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    """The API (audit routes included) with a worker, and an engine on its read model (for
    editing rows as an auditor's test would)."""
    engine = make_engine(settings.database_url)
    yield api, engine
    engine.dispose()


@pytest.fixture(scope="session")
async def short_history_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after 30 history events, so a worked
    example spans several runs."""
    env = await start_dev_server("--dynamic-config-value",
                                 "limit.historyCount.suggestContinueAsNew=30")
    yield env
    await env.shutdown()

