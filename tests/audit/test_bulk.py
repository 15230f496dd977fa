"""Bulk audit and the CLI on real dev servers: a tampered read-model row and a divergence
fail the audit; a case that continued as new is audited once, every run replayed; a
history exported by the real `temporal` CLI is accepted."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from audit.bulk import audit_query
from audit.replay import CaseReplayer
from tests.conftest import _binary
from tests.helpers import case_state, start_case
from tests.replay.test_replay import ReorderedCaseWorkflow
from tests.workflows import support as s
from whistle.db import make_engine
from whistle.domain import Satisfaction
from whistle.models import CaseEventRecord
from whistle.settings import PROJECT_ROOT, Settings
from worker import build_worker

pytestmark = pytest.mark.devserver
DEPARTMENTS = ["xjk-petition", "xjk-land-office", "xjk-law-enforcement"]


@pytest.fixture
async def worker(dev_env: WorkflowEnvironment, settings: Settings
                 ) -> AsyncIterator[tuple[Worker, Engine]]:
    engine = make_engine(settings.database_url)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(dev_env.client, settings, executor, engine) as w:
            yield w, engine
    engine.dispose()


async def closed_case(client: Client, w: Worker, engine: Engine) -> WorkflowHandle:
    """A worked example from intake to satisfied feedback."""
    h = await start_case(client, w, case_state(engine, DEPARTMENTS))
    await s.settle_all(h, *DEPARTMENTS)
    await s.record_outcome(h)
    await s.record_feedback(h, Satisfaction.SATISFIED)
    await h.result()
    return h


async def policy_read(client: Client, wid: str) -> int:
    """The event of the case's first read: the policy, a local activity's marker."""
    history = await client.get_workflow_handle(wid).fetch_history()
    return next(e.event_id for e in history.events
                if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
                and e.marker_recorded_event_attributes.marker_name == "core_local_activity")


def case_id(h: WorkflowHandle) -> str:
    return h.id.removeprefix("whistle-case-")


def forge_actor(engine: Engine, cid: str, seq: int, actor: str) -> None:
    with Session(engine) as session:
        session.get(CaseEventRecord, (cid, seq)).actor = actor
        session.commit()


async def whistle_audit(env: WorkflowEnvironment, settings: Settings, *argv: str
                        ) -> tuple[int, str, str]:
    """Run `python -m audit.cli audit …` as a user would, against `env` and the test's
    read model; returns exit status, stdout, stderr."""
    environ = {**os.environ,
               "WHISTLE_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
               "WHISTLE_DATABASE_URL": settings.database_url}
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "audit.cli", "audit", *argv, env=environ, cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), timeout=60)
    assert p.returncode is not None
    return p.returncode, out.decode(), err.decode()


async def test_bulk_audit_fails_on_a_tampered_row_and_on_a_divergence(dev_env, settings, worker):
    w, engine = worker
    clean, forged = [await closed_case(dev_env.client, w, engine) for _ in range(2)]
    forge_actor(engine, case_id(forged), 8, "staff-xjk-police")
    query = f"TaskQueue = '{settings.task_queue}'"

    heard = []
    report = await audit_query(dev_env.client, engine, query, on_case=heard.append)
    summary = report.summary
    assert (summary.checked, summary.deterministic, summary.diverged, summary.mismatched,
            summary.errors) == (2, 2, 0, 1, 0)
    assert not summary.ok and len(heard) == 2
    [bad] = [c for c in report.cases if not c.ok]
    assert bad.case_id == case_id(forged)
    assert [(f.key, f.field) for f in bad.check.findings] == [("seq 8", "actor")]

    careless = CaseReplayer([ReorderedCaseWorkflow])
    report = await audit_query(dev_env.client, engine, query, replayer=careless)
    assert (report.summary.diverged, report.summary.deterministic) == (2, 0)
    for c in report.cases:  # where the careless code starts a timer, history has load_policy
        assert c.replay[0].event_id == await policy_read(dev_env.client, c.workflow_id)

    code, out, err = await whistle_audit(dev_env, settings, "bulk", "--query", query, "--json")
    assert code == 1 and err == ""  # no progress bar when not on a terminal
    doc = json.loads(out)
    assert doc["summary"]["checked"] == 2 and doc["summary"]["mismatched"] == 1
    only_clean = f"{query} AND WorkflowId = '{clean.id}'"
    code, out, _ = await whistle_audit(dev_env, settings, "bulk", "--query", only_clean)
    assert code == 0 and "checked 1 case(s) (1 runs)" in out and "0 mismatched" in out


async def test_a_case_that_continued_as_new_is_audited_whole(short_history_env, settings,
                                                             tmp_path: Path):
    env = short_history_env
    engine = make_engine(settings.database_url)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(env.client, settings, executor, engine) as w:
            h = await closed_case(env.client, w, engine)
    cid = case_id(h)

    report = await audit_query(env.client, engine, f"TaskQueue = '{settings.task_queue}'")
    [case] = report.cases
    assert report.summary.checked == 1 and report.summary.ok
    runs = len(case.replay)
    assert runs > 1 and case.check.runs == runs and case.check.events == 13

    export = tmp_path / "export.json"
    code, _, err = await whistle_audit(env, settings, "export", cid, "-o", str(export))
    assert code == 0 and f"{runs} run(s)" in err
    assert len(json.loads(export.read_text())) == runs

    shown = tmp_path / "shown.json"  # the real CLI: the latest run only
    temporal = await asyncio.create_subprocess_exec(
        _binary("temporal"), "workflow", "show", "-w", h.id, "--output", "json",
        "--address", env.client.service_client.config.target_host,
        stdout=asyncio.subprocess.PIPE)
    shown.write_bytes((await temporal.communicate())[0])
    assert temporal.returncode == 0
    code, out, _ = await whistle_audit(env, settings, "replay", "--file", str(shown))
    assert code == 0 and f"case {cid}: deterministic" in out
    code, out, _ = await whistle_audit(env, settings, "check", "--file", str(shown))
    assert code == 0 and "agrees with history" in out, out

    code, out, _ = await whistle_audit(env, settings, "replay", cid)  # from the server
    assert code == 0 and f"run {runs}/{runs}" in out

    forge_actor(engine, cid, 8, "staff-xjk-police")
    code, out, _ = await whistle_audit(env, settings, "check", cid, "--json")
    assert code == 1
    [finding] = json.loads(out)["findings"]
    assert (finding["key"], finding["found"]) == ("seq 8", "staff-xjk-police")
    engine.dispose()


async def test_worker_processes_give_the_report_this_process_gives(dev_env, settings, worker):
    """Auditing in worker processes (one per core, for a large audit) changes where the
    cases are replayed and checked, not what is found."""
    w, engine = worker
    cases = [await closed_case(dev_env.client, w, engine) for _ in range(3)]
    forge_actor(engine, case_id(cases[1]), 8, "staff-xjk-police")
    query = f"TaskQueue = '{settings.task_queue}'"

    def audited(report):
        return sorted((c.model_dump() for c in report.cases), key=lambda c: c["case_id"])

    here = await audit_query(dev_env.client, engine, query, processes=1)
    heard = []
    there = await audit_query(dev_env.client, engine, query, processes=2, on_case=heard.append)
    assert audited(there) == audited(here) and len(heard) == 3
    assert (there.summary.checked, there.summary.mismatched) == (3, 1)
    assert there.summary.model_dump(exclude={"seconds", "cases_per_second"}) == \
        here.summary.model_dump(exclude={"seconds", "cases_per_second"})
