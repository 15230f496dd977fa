"""Bulk audit: replay every run and cross-check the read model of every case a
visibility query selects.

A pipeline, so the server, the replayer and the database each work while the others do:
one task fetches histories (`map_histories`) into a bounded queue, replay workers (two by
default) take cases from it and replay their runs in order, and each case is cross-checked
as soon as its last run comes back from replay.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowHistory

from audit.check import check_case
from audit.history import CaseHistory, with_earlier_runs
from audit.replay import CaseReplayer, verdict
from audit.report import BulkReport, BulkSummary, CaseAudit

# Each case once, by its latest run: a case that continued as new has a closed run per
# continuation, and those carry the search attributes of their day (an old `open` status).
_LATEST_RUNS = "WorkflowType = 'CaseWorkflow' AND ExecutionStatus != 'ContinuedAsNew'"


def case_query(query: str) -> str:
    """The visibility query for the latest run of every case matching `query`."""
    return f"{_LATEST_RUNS} AND ({query})" if query.strip() else _LATEST_RUNS


@dataclass
class _InFlight:
    """A case whose runs are being replayed."""

    case: CaseHistory
    audit: CaseAudit = field(init=False)

    def __post_init__(self) -> None:
        self.audit = CaseAudit(case_id=self.case.case_id, workflow_id=self.case.workflow_id)

    @property
    def replayed(self) -> bool:
        return len(self.audit.replay) == len(self.case.runs)


async def count_cases(client: Client, query: str) -> int:
    """How many cases `query` selects (for a progress bar)."""
    return (await client.count_workflows(case_query(query))).count


async def audit_query(client: Client, engine: Engine, query: str, *,
                      on_case: Callable[[CaseAudit], None] | None = None,
                      replayer: CaseReplayer | None = None, streams: int = 2,
                      prefetch: int = 32) -> BulkReport:
    """Replay and cross-check every case `query` selects; `on_case` hears of each case as
    soon as it is done. `streams` replay workers share the cases: while one waits on the
    core (Rust) side of a replay, another runs Python."""
    started = time.perf_counter()
    queue: asyncio.Queue[CaseHistory | None] = asyncio.Queue(maxsize=prefetch)
    fetcher = asyncio.create_task(_fetch(client, query, queue, streams))
    workers = [asyncio.create_task(audit_cases(engine, _drain(queue), on_case=on_case,
                                               replayer=replayer)) for _ in range(streams)]
    try:
        parts = await asyncio.gather(*workers)
        await fetcher  # re-raises a failure to list or fetch
    finally:
        for task in (fetcher, *workers):  # after a failure, stop what still runs
            task.cancel()
    return bulk_report(query, [c for part in parts for c in part], started)


async def audit_cases(engine: Engine, cases: AsyncIterator[CaseHistory], *,
                      on_case: Callable[[CaseAudit], None] | None = None,
                      replayer: CaseReplayer | None = None) -> list[CaseAudit]:
    """Replay every run of every case on one replay worker, and cross-check each case as
    soon as its last run comes back."""
    inflight: deque[_InFlight] = deque()
    done: list[CaseAudit] = []

    async def runs() -> AsyncIterator[WorkflowHistory]:
        async for case in cases:
            inflight.append(_InFlight(case))
            for run in case.runs:
                yield run

    async with (replayer or CaseReplayer()).stream(runs()) as results:
        async for result in results:
            case = inflight[0]  # results come back in the order the runs went in
            case.audit.replay.append(verdict(result.history, len(case.audit.replay) + 1,
                                             result.replay_failure))
            if case.replayed:
                inflight.popleft()
                done.append(_finish(engine, case))
                if on_case:
                    on_case(done[-1])
    return done


def bulk_report(query: str, cases: list[CaseAudit], started: float) -> BulkReport:
    """The report of a bulk audit begun at `started` (a perf_counter reading)."""
    summary = BulkSummary()
    for case in cases:
        summary.add(case)
    summary.seconds = round(time.perf_counter() - started, 3)
    return BulkReport(query=query, summary=summary, cases=cases)


async def _fetch(client: Client, query: str, out: asyncio.Queue[CaseHistory | None],
                 consumers: int) -> None:
    """Put every selected case (all its runs) on `out`, then one None per consumer."""
    try:
        latest_runs = client.list_workflows(case_query(query)).map_histories()
        async for latest in latest_runs:
            await out.put(await with_earlier_runs(client, latest))
    finally:
        for _ in range(consumers):
            await out.put(None)


async def _drain(queue: asyncio.Queue[CaseHistory | None]) -> AsyncIterator[CaseHistory]:
    while (case := await queue.get()) is not None:
        yield case


def _finish(engine: Engine, case: _InFlight) -> CaseAudit:
    """Cross-check a replayed case; a history that cannot be read is the case's error."""
    try:
        case.audit.check = check_case(engine, case.case)
    except Exception as e:  # one unreadable case must not stop the audit of the others
        case.audit.error = f"{type(e).__name__}: {e}"
    return case.audit
