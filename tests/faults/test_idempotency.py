"""A projection runs twice: its first attempt commits to the read model, but the worker is
cut off before Temporal hears it finished, so the attempt times out and runs again on
another worker. The projection must write nothing twice — and, with the projection broken
on purpose (WHISTLE_TEST_BREAK_IDEMPOTENCY, see activities/case.py), the fault suite's
checker must say so: the suite can fail.

How the first attempt is made to commit unheard, every time: the worker reaches Temporal
through a TCP relay of the test. The read model's write lock is held while the
projections start (they wait for it); then the relay cuts the worker off (a network
partition), the lock is released (the projections commit; their completions go nowhere)
and the worker is killed. After the 30 s start-to-close timeout of the projection
activity, a second worker runs every one of them again.

SQLite only: the write lock is SQLite's (see test_database_outage.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from activities.case import TEST_BREAK_IDEMPOTENCY
from tests.faults.conftest import Relay, Workers, api_in_process, wait_until
from tests.faults.support import Clients, Ledger, Plan, Verdict, check, sign_in_all
from tests.faults.test_database_outage import lock
from whistle.db import make_engine
from whistle.domain import ActivityName, workflow_id
from whistle.models import CaseEventRecord

pytestmark = pytest.mark.faults

CASES = 8


async def projections_started(client: Client, case_ids: list[str]) -> bool:
    """Each case has a projection attempt running on a worker."""
    for cid in case_ids:
        desc = await client.get_workflow_handle(workflow_id(cid)).describe()
        if not any(a.activity_type.name == ActivityName.PROJECT_CASE
                   and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                   for a in desc.raw_description.pending_activities):
            return False
    return True


@pytest.fixture
async def relay(dev_env) -> AsyncIterator[Relay]:
    """A relay to the session's dev server, closed when the test ends."""
    made = Relay(dev_env.client.service_client.config.target_host)
    await made.start()
    yield made
    await made.close()


async def projection_committed_unheard(dev_env, settings, users, procs, relay, *,
                                       broken: bool) -> tuple[Verdict, Ledger]:
    name = "BROKEN projection (test switch on)" if broken else "idempotent projection"
    verdict = Verdict(f"projection committed, its completion lost, run again: {name}")
    env = {TEST_BREAK_IDEMPOTENCY: "1"} if broken else {}
    client = dev_env.client
    address = client.service_client.config.target_host
    first = await Workers(procs, settings, relay.address).start(client, **env)
    workers = Workers(procs, settings, address)
    engine = make_engine(settings.database_url)
    cases = [Plan(f"TWICE-{i:02d}-{settings.task_queue}", "full", "land", ["xjk-police"])
             for i in range(CASES)]
    ledger = Ledger()
    async with api_in_process(settings, client, users) as api:
        await sign_in_all(api, users, cases)
        clients = Clients(api, ledger, concurrency=CASES)
        await asyncio.gather(*(clients.open(p) for p in cases))
        ids = [p.case_id for p in cases]
        assert all(ids), ledger.unexpected

        blocker = await asyncio.to_thread(lock, settings.database_url.split("///", 1)[1])
        report_in, first_step = cases[0].steps()[0][1:], cases[0].steps()[0][0]
        steps = [asyncio.create_task(clients.step(p, first_step, *report_in)) for p in cases]
        await wait_until(lambda: projections_started(client, ids), 20,  # type: ignore[arg-type]
                         "every report-in projection to be running, waiting for the lock")
        relay.cut()
        await asyncio.to_thread(blocker.close)

        def committed() -> bool:
            with Session(engine) as session:
                return len(session.exec(select(CaseEventRecord.case_id).where(
                    col(CaseEventRecord.case_id).in_(ids),
                    CaseEventRecord.kind == "reported_in")).all()) >= CASES

        await wait_until(committed, 20, "the cut-off projections to commit")
        first.kill()
        await relay.close()
        verdict.faults.append(f"{CASES} projections committed by worker {first.pid} after it "
                              "was cut off from the Temporal server; then it was killed "
                              "(SIGKILL)")
        await workers.start(client, **env)
        await asyncio.gather(*steps)
        for p in cases:
            for path, body, fact in p.steps()[1:]:
                await clients.step(p, path, body, fact)
        await check(verdict, client, engine, cases, ledger, settings.task_queue)
    engine.dispose()
    return verdict, ledger


async def test_a_projection_run_again_after_its_commit_writes_nothing_twice(
        dev_env, settings, users, procs, relay):
    verdict, ledger = await projection_committed_unheard(dev_env, settings, users, procs,
                                                         relay, broken=False)
    verdict.assert_clean(ledger)
    assert verdict.projections_retried >= CASES  # the fault really ran each one twice


async def test_the_checker_catches_a_projection_that_is_not_idempotent(
        dev_env, settings, users, procs, relay):
    verdict, ledger = await projection_committed_unheard(dev_env, settings, users, procs,
                                                         relay, broken=True)
    with pytest.raises(AssertionError):
        verdict.assert_clean(ledger)
    print("  (expected: the checker FAILS with the test switch on)")
    assert verdict.projections_retried >= CASES
    doubled = Counter(line.split(":")[0] for line in verdict.duplicated)
    assert len(doubled) >= CASES, verdict.duplicated  # every case has a doubled event
    assert verdict.findings["event_extra"] >= CASES and verdict.findings["event_different"]
