"""Bulk audit throughput against bare replay of the same histories, in one go.

    .venv/bin/python bench/audit_bench.py                  # 100 cases, about a minute
    .venv/bin/python bench/audit_bench.py --cases 300 --continue-as-new

It starts its own Temporal dev server (in memory, on a free port) and a worker on a
temporary SQLite read model, opens N worked-example cases (intake, three departments report
in and sign off, outcome, satisfied feedback), then measures, alternating, best of
`--rounds`:

  baseline  Replayer.replay_workflows(client.list_workflows(q).map_histories())
            — fetch and replay every history, nothing else;
  audit     audit.bulk.audit_query(client, engine, q), with 1 and with 2 replay streams
            (2 is the default of `whistle audit bulk`)
            — fetch (following continue-as-new), replay, rebuild the timeline and
              cross-check the read model, case by case;

and the same two on histories fetched beforehand (replay and check alone). It prints
histories/s for each and the ratio audit/baseline. With --continue-as-new the server
suggests continue-as-new after 30 events, so each case spans several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.services import resolve_intake
from audit.bulk import audit_cases, audit_query, case_query
from audit.history import CaseHistory, with_earlier_runs
from audit.replay import quiet_runtime
from whistle import search_attributes
from whistle.db import make_engine, migrate
from whistle.domain import (
    CaseIntake,
    RecordFeedback,
    RecordOutcome,
    ReportIn,
    Satisfaction,
    SignOff,
    workflow_id,
)
from whistle.policy import load_policy
from whistle.reference import load_reference
from whistle.settings import DATA_DIR, Settings
from worker import build_worker
from workflows.case import CaseWorkflow

DEPARTMENTS = ["xjk-petition", "xjk-land-office", "xjk-law-enforcement"]
INTAKE = CaseIntake(category="land", title="九龙村土地使用权转让纠纷",
                    description="多年前的土地使用权转让纠纷", location="jiulong",
                    departments=DEPARTMENTS)


async def open_and_close(client: Client, settings: Settings, engine: Engine) -> None:
    """One worked example, from intake to satisfied feedback."""
    with Session(engine) as session:
        state = resolve_intake(session=session, policy=load_policy(settings.policy_file),
                               intake=INTAKE, actor="coordinator-xjk")
    h = await client.start_workflow(CaseWorkflow.run, state, id=workflow_id(state.case_id),
                                    task_queue=settings.task_queue)
    await h.execute_update(CaseWorkflow.opened)
    for d in DEPARTMENTS:
        await h.execute_update(CaseWorkflow.report_in, ReportIn(actor=f"staff-{d}", department=d))
    for d in DEPARTMENTS:
        await h.execute_update(CaseWorkflow.sign_off, SignOff(
            actor=f"staff-{d}", department=d, opinion="同意联合调解", actions_taken="现场核查"))
    await h.execute_update(CaseWorkflow.record_outcome, RecordOutcome(
        actor="coordinator-xjk", kind="mediated_agreement", summary="双方和解",
        agreement_text="和解协议"))
    await h.execute_update(CaseWorkflow.record_feedback, RecordFeedback(
        actor="coordinator-xjk", satisfaction=Satisfaction.SATISFIED))
    await h.result()


async def seed(client: Client, settings: Settings, engine: Engine, n: int, parallel: int) -> None:
    """Open and close `n` cases, `parallel` at a time."""
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            await open_and_close(client, settings, engine)

    await asyncio.gather(*(one() for _ in range(n)))


async def timed(fn: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    """Seconds `fn` took and the histories it handled."""
    started = time.perf_counter()
    histories = await fn()
    return time.perf_counter() - started, histories


async def baseline_live(client: Client, query: str) -> int:
    """Bare replay of every history the query lists, fetched from the server."""
    replayer = Replayer(workflows=[CaseWorkflow], data_converter=pydantic_data_converter,
                        runtime=quiet_runtime())
    count = 0

    async def histories() -> AsyncIterator[WorkflowHistory]:
        nonlocal count
        async for h in client.list_workflows(query).map_histories():
            count += 1
            yield h

    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=False)
    assert not results.replay_failures, results.replay_failures
    return count


async def audit_live(client: Client, engine: Engine, query: str, streams: int) -> int:
    """The bulk audit (replay and cross-check) of the cases the query selects."""
    report = await audit_query(client, engine, query, streams=streams)
    assert report.summary.ok and report.summary.errors == 0, report.summary
    return report.summary.runs


async def baseline_fetched(histories: list[WorkflowHistory]) -> int:
    """Bare replay of histories fetched beforehand."""

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for h in histories:
            yield h

    replayer = Replayer(workflows=[CaseWorkflow], data_converter=pydantic_data_converter,
                        runtime=quiet_runtime())
    await replayer.replay_workflows(feed())
    return len(histories)


async def audit_fetched(cases: list[CaseHistory], engine: Engine) -> int:
    """Replay and cross-check of cases fetched beforehand, on one replay worker."""

    async def feed() -> AsyncIterator[CaseHistory]:
        for c in cases:
            yield c

    done = await audit_cases(engine, feed())
    assert all(c.ok for c in done)
    return sum(len(c.replay) for c in done)


async def measure(client: Client, engine: Engine, query: str, rounds: int
                  ) -> dict[str, tuple[float, int]]:
    """Best time of each measurement over `rounds`, alternating so drift hits all alike.
    `query` selects every run of the cases (the baseline replays them all too)."""
    histories = [h async for h in client.list_workflows(query).map_histories()]
    cases = [await with_earlier_runs(client, h)
             async for h in client.list_workflows(case_query(query)).map_histories()]
    assert sum(len(c.runs) for c in cases) == len(histories)
    runs = {
        "baseline (fetch + replay)": lambda: baseline_live(client, query),
        "audit, 1 replay stream": lambda: audit_live(client, engine, query, 1),
        "audit, 2 replay streams": lambda: audit_live(client, engine, query, 2),
        "baseline, fetched beforehand": lambda: baseline_fetched(histories),
        "audit, fetched beforehand": lambda: audit_fetched(cases, engine),
    }
    await baseline_fetched(histories[:1])  # warm the sandbox's module cache
    best: dict[str, tuple[float, int]] = {}
    for _ in range(rounds):
        for name, fn in runs.items():
            seconds, n = await timed(fn)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, n)
    return best


def report(best: dict[str, tuple[float, int]], cases: int) -> None:
    rate = {name: n / seconds for name, (seconds, n) in best.items()}
    for name, (seconds, n) in best.items():
        print(f"  {name:32} {n:5} histories in {seconds:6.2f} s = {rate[name]:7.1f} histories/s")
    base = rate["baseline (fetch + replay)"]
    one, two = rate["audit, 1 replay stream"] / base, rate["audit, 2 replay streams"] / base
    fetched = rate["audit, fetched beforehand"] / rate["baseline, fetched beforehand"]
    print(f"  ratio audit/baseline ({cases} cases): {one:.2f} (1 stream), {two:.2f} (2 streams,"
          f" the default) from the server; {fetched:.2f} on histories fetched beforehand")


async def main(args: argparse.Namespace) -> None:
    extra = (["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=30"]
             if args.continue_as_new else [])
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal, data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL, dev_server_log_level="error",
        dev_server_extra_args=extra)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(env="test", database_url=f"sqlite:///{tmp}/bench.db",
                            task_queue=f"bench-{uuid.uuid4().hex[:8]}")
        engine = make_engine(settings.database_url)
        migrate(engine)
        load_reference(engine, DATA_DIR / "reference.yaml")
        try:
            with ThreadPoolExecutor(max_workers=16) as executor:
                async with build_worker(env.client, settings, executor, engine):
                    started = time.perf_counter()
                    await seed(env.client, settings, engine, args.cases, args.parallel)
                    print(f"seeded {args.cases} cases in {time.perf_counter() - started:.1f} s")
            query = f"TaskQueue = '{settings.task_queue}'"
            report(await measure(env.client, engine, query, args.rounds), args.cases)
        finally:
            engine.dispose()
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=10, help="cases seeded at a time")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs")
    parser.add_argument("--continue-as-new", action="store_true")
    asyncio.run(main(parser.parse_args()))
    sys.stdout.flush()
    os._exit(0)  # skip native-runtime teardown (sdk-python #300)
