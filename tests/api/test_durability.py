"""Durability on the real dev server: a worker killed mid-case loses nothing, and a case
that outgrows its history continues as new without losing a step."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tests.api.test_cases_api import INTAKE, step
from tests.conftest import start_dev_server
from tests.helpers import TestUsers
from whistle.db import make_engine
from whistle.domain import workflow_id
from whistle.settings import PROJECT_ROOT, Settings
from worker import build_worker
from workflows.case import CaseWorkflow


@pytest.fixture
async def api_alone(dev_env: WorkflowEnvironment, settings: Settings, users: TestUsers
                    ) -> AsyncIterator[httpx.AsyncClient]:
    """The API with no worker of its own: the test runs worker processes itself."""
    app = create_app(settings, client=dev_env.client)
    async with app.router.lifespan_context(app), users.client(app) as c:
        yield c


@pytest.fixture
def worker_process(dev_env: WorkflowEnvironment, settings: Settings
                   ) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Starts `python worker.py` processes on demand; every one is stopped by PID."""
    procs: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "WHISTLE_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "WHISTLE_DATABASE_URL": settings.database_url,
        "WHISTLE_TASK_QUEUE": settings.task_queue,
        "WHISTLE_LOG_LEVEL": "WARNING",
    }

    def start() -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "worker.py")], env=env,
                             cwd=PROJECT_ROOT)
        procs.append(p)
        return p

    yield start  # type: ignore[misc]
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)


async def test_killing_the_worker_mid_case_loses_nothing(api_alone, worker_process,
                                                          dev_env, settings):
    first = worker_process()
    r = await api_alone.post("/api/v1/cases", json={**INTAKE, "departments": ["xjk-police"]})
    assert r.status_code == 201, r.text
    cid = r.json()["case_id"]
    assert (await step(api_alone, cid, "summonses/xjk-police/report-in", {})).status_code == 200

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # A step sent while no worker runs waits for one; it is not lost.
    pending = asyncio.create_task(step(api_alone, cid, "summonses/xjk-police/sign-off",
                                       {"opinion": "已处理", "actions_taken": "出警调解"}))
    await asyncio.sleep(1)
    assert not pending.done()
    worker_process()
    r = await asyncio.wait_for(pending, timeout=60)
    assert r.status_code == 200, r.text

    state = await dev_env.client.get_workflow_handle(workflow_id(cid)).query(CaseWorkflow.state)
    assert [e.kind for e in state.events] == ["opened", "summoned", "reported_in", "signed_off"]
    detail = (await api_alone.get(f"/api/v1/cases/{cid}")).json()
    assert [e["seq"] for e in detail["timeline"]] == [1, 2, 3, 4]
    assert detail["summonses"][0]["status"] == "signed_off"


async def test_graceful_worker_stop_on_sigterm(worker_process):
    p = worker_process()
    await asyncio.sleep(3)  # let it connect and poll
    p.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(p.wait, 30) == 0


@pytest.fixture(scope="module")
async def short_history_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after 30 history events."""
    env = await start_dev_server("--dynamic-config-value",
                                 "limit.historyCount.suggestContinueAsNew=30")
    yield env
    await env.shutdown()


async def test_long_case_continues_as_new_without_losing_a_step(short_history_env, settings,
                                                                users):
    client = short_history_env.client
    app = create_app(settings, client=client)
    departments = ["xjk-police", "xjk-justice", "xjk-petition", "xjk-land-office",
                   "xjk-law-enforcement", "xjk-hrss"]
    engine = make_engine(settings.database_url)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with (
            build_worker(client, settings, executor, engine),
            app.router.lifespan_context(app),
            users.client(app) as api,
        ):
            r = await api.post("/api/v1/cases", json={**INTAKE, "departments": departments})
            cid = r.json()["case_id"]
            for d in departments:
                assert (await step(api, cid, f"summonses/{d}/report-in", {})).status_code == 200
            for d in departments:
                r = await step(api, cid, f"summonses/{d}/sign-off",
                               {"opinion": "意见", "actions_taken": "措施"})
                assert r.status_code == 200, r.text
            await step(api, cid, "outcome", {"kind": "administrative_resolution",
                                             "summary": "行政处理"})
            r = await step(api, cid, "feedback", {"satisfaction": "basically_satisfied"})
            assert r.json()["status"] == "closed"
            handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id(cid))
            final = await handle.result()
            detail = (await api.get(f"/api/v1/cases/{cid}")).json()
    engine.dispose()

    assert final.runs > 2  # it really continued as new, more than once
    n = 1 + 3 * len(departments) + 3
    assert [e.seq for e in final.events] == list(range(1, n + 1))
    assert [e["seq"] for e in detail["timeline"]] == list(range(1, n + 1))
    assert detail["close_reason"] == "feedback"


async def test_without_a_worker_requests_answer_pending_and_nothing_is_lost(
        dev_env, settings, worker_process, users):
    """No worker: opening answers 202 and a step 504 within the configured patience; once
    a worker runs, the case opens and the pending step is applied — neither is lost."""
    quick = settings.model_copy(update={"step_timeout_seconds": 1.0})
    app = create_app(quick, client=dev_env.client)
    ref = f"PENDING-{uuid.uuid4().hex[:8]}"
    async with (
        app.router.lifespan_context(app),
        users.client(app) as api,
    ):
        body = {**INTAKE, "departments": ["xjk-police"], "external_ref": ref}
        r = await api.post("/api/v1/cases", json=body)
        assert r.status_code == 202 and r.json()["code"] == "case_pending"
        cid = r.json()["case_id"]
        assert (await api.get(f"/api/v1/cases/{cid}")).status_code == 404  # not opened yet

        first = worker_process()
        r = await api.post("/api/v1/cases", json=body)  # the same request, repeated
        for _ in range(50):
            if r.status_code == 200:
                break
            await asyncio.sleep(0.2)
            r = await api.post("/api/v1/cases", json=body)
        assert r.status_code == 200 and r.json()["case_id"] == cid
        assert r.json()["summonses"][0]["department"] == "xjk-police"

        officer = users.headers("officer-1", "department", department="xjk-police")
        first.send_signal(signal.SIGTERM)
        await asyncio.to_thread(first.wait, 30)
        r = await step(api, cid, "summonses/xjk-police/report-in", {}, headers=officer)
        assert r.status_code == 504 and r.json()["code"] == "step_pending"
        worker_process()
        for _ in range(100):
            detail = (await api.get(f"/api/v1/cases/{cid}")).json()
            if detail["summonses"][0]["status"] == "reported_in":
                break
            await asyncio.sleep(0.2)
        assert detail["summonses"][0]["status"] == "reported_in"
        assert detail["timeline"][-1]["actor"] == "officer-1"
        r = await step(api, cid, "summonses/xjk-police/report-in", {}, headers=officer)
        assert r.status_code == 409  # repeating it is refused, never doubled
