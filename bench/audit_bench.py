"""Bulk audit throughput against bare replay of the same histories, in one go.

    .venv/bin/python bench/audit_bench.py                  # 100 cases, two to three minutes
    .venv/bin/python bench/audit_bench.py --cases 1000 --rounds 1   # the target's size, ~15 min
    .venv/bin/python bench/audit_bench.py --cases 300 --continue-as-new

It starts its own Temporal dev server (in memory, on a free port) and a worker on a
temporary SQLite read model, opens N worked-example cases (intake, three departments report
in and sign off, outcome, satisfied feedback), then measures, alternating so drift hits
all alike, best of `--rounds`:

  baseline     Replayer.replay_workflows(client.list_workflows(q).map_histories()) with
               the workflow sandbox, as the worker runs it — fetch and replay every
               history, nothing else (what the audit cost before it left the sandbox);
  unsandboxed  the same, replaying outside the sandbox;
  audit        audit.bulk.audit_query(client, engine, q) with its defaults (worker
               processes: one per 100 cases, at most one per core) — fetch
               (following continue-as-new), replay, rebuild the timeline and cross-check
               the read model of every case;
  audit, 1 process   the same in this process alone: the audit on one core;

and bare replay (both ways) and the audit in one process on histories fetched beforehand
(replay and check alone, no server). For each: histories/s, the ratio to the baseline of
the same run, and CPU milliseconds per history of this process and its worker processes
("cpu") and of the dev server, which shares the machine ("server").
With --continue-as-new the server suggests continue-as-new after 30 events, so each case
spans several runs. bench/README.md has figures and where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from api.services import resolve_intake
from audit.bulk import audit_fetched, audit_query, case_query, cpus, default_processes
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


@dataclass
class Took:
    """One measurement: wall seconds, histories handled, CPU seconds of this process and
    its worker processes, CPU seconds of the dev server."""

    seconds: float
    histories: int
    cpu: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.histories / self.seconds


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended (worker pools)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _server_cpu(pid: int | None) -> float:
    """CPU seconds of process `pid` so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_pid() -> int | None:
    """The dev server: the `temporal` process this one started."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and "temporal" in (entry / "comm").read_text():
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


async def timed(fn: Callable[[], Awaitable[int]], server: int | None) -> Took:
    """What `fn` took, and the histories it handled."""
    cpu, server_cpu = _cpu(), _server_cpu(server)
    started = time.perf_counter()
    histories = await fn()
    return Took(time.perf_counter() - started, histories, _cpu() - cpu,
                _server_cpu(server) - server_cpu)


def replayer(sandboxed: bool) -> Replayer:
    """A bare Replayer as the SDK documents it, in the sandbox or out of it."""
    runner = SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner()
    return Replayer(workflows=[CaseWorkflow], data_converter=pydantic_data_converter,
                    workflow_runner=runner, runtime=quiet_runtime())


async def baseline_live(client: Client, query: str, sandboxed: bool) -> int:
    """Bare replay of every history the query lists, fetched from the server."""
    count = 0

    async def histories() -> AsyncIterator[WorkflowHistory]:
        nonlocal count
        async for h in client.list_workflows(query).map_histories():
            count += 1
            yield h

    results = await replayer(sandboxed).replay_workflows(histories(),
                                                         raise_on_replay_failure=False)
    assert not results.replay_failures, results.replay_failures
    return count


async def audit_live(client: Client, engine: Engine, query: str, processes: int | None,
                     used: list[int]) -> int:
    """The bulk audit (replay and cross-check) of the cases the query selects."""
    report = await audit_query(client, engine, query, processes=processes)
    assert report.summary.ok and report.summary.errors == 0, report.summary
    used.append(processes or default_processes(report.summary.checked))
    return report.summary.runs


async def baseline_fetched(histories: list[WorkflowHistory], sandboxed: bool) -> int:
    """Bare replay of histories fetched beforehand."""

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for h in histories:
            yield h

    await replayer(sandboxed).replay_workflows(feed())
    return len(histories)


async def audit_here(cases: list[CaseHistory], engine: Engine) -> int:
    """Replay and cross-check of cases fetched beforehand, in this process."""
    done = await audit_fetched(engine, cases)
    assert len(done) == len(cases) and all(c.ok for c in done)
    return sum(len(c.replay) for c in done)


BASELINE = "baseline: replayer, sandboxed"
UNSANDBOXED = "replayer, unsandboxed"
AUDIT = "audit (defaults)"
AUDIT_ONE = "audit, 1 process"


async def measure(client: Client, engine: Engine, query: str, rounds: int
                  ) -> tuple[dict[str, Took], int]:
    """Best of `rounds` of each measurement, alternating so drift hits all alike, and the
    worker processes the default audit used. `query` selects every run of the cases (the
    baseline replays them all too)."""
    server = _server_pid()
    histories = [h async for h in client.list_workflows(query).map_histories()]
    cases = [await with_earlier_runs(client, h)
             async for h in client.list_workflows(case_query(query)).map_histories()]
    assert sum(len(c.runs) for c in cases) == len(histories)
    used: list[int] = []
    runs = {
        BASELINE: lambda: baseline_live(client, query, True),
        UNSANDBOXED: lambda: baseline_live(client, query, False),
        AUDIT: lambda: audit_live(client, engine, query, None, used),
        AUDIT_ONE: lambda: audit_live(client, engine, query, 1, used),
        "replayer, sandboxed, fetched before": lambda: baseline_fetched(histories, True),
        "replayer, unsandboxed, fetched before": lambda: baseline_fetched(histories, False),
        "audit, 1 process, fetched before": lambda: audit_here(cases, engine),
    }
    for sandboxed in (True, False):  # warm the sandbox's module cache, and the imports
        await baseline_fetched(histories[:1], sandboxed)
    best: dict[str, Took] = {}
    for _ in range(rounds):
        for name, fn in runs.items():
            took = await timed(fn, server)
            if name not in best or took.seconds < best[name].seconds:
                best[name] = took
    return best, used[0]


def report(best: dict[str, Took], cases: int, processes: int) -> None:
    base = best[BASELINE].rate
    print(f"{cases} cases, {best[BASELINE].histories} histories; {cpus()} core(s); "
          f"the default audit ran in {processes} process(es)")
    print(f"  {'':38} {'histories/s':>11} {'x baseline':>10} {'cpu ms/h':>9} "
          f"{'server ms/h':>11}")
    for name, t in best.items():
        print(f"  {name:38} {t.rate:11.1f} {t.rate / base:10.2f} "
              f"{1000 * t.cpu / t.histories:9.1f} {1000 * t.server_cpu / t.histories:11.1f}")
    audit, one = best[AUDIT], best[AUDIT_ONE]
    print(f"  per core: the default audit {audit.rate / processes:.1f} histories/s per "
          f"process, {audit.histories / audit.cpu:.1f} per CPU second (server apart); "
          f"in one process {one.rate:.1f} histories/s, {one.histories / one.cpu:.1f} per CPU "
          "second")


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
            best, processes = await measure(env.client, engine, query, args.rounds)
            report(best, args.cases, processes)
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
