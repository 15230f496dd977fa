"""Bulk audit: replay every run and cross-check the read model of every case a
visibility query selects.

A pipeline, so the server, the replayer and the database each work while the others do:
one task fetches histories (several at a time, handed on in listing order) into a bounded
queue; replay workers (two streams by default) take cases from it and replay their runs in
order; replayed cases are cross-checked a batch at a time, reading the rows of the whole
batch in one query per table.

Replaying is Python work (the SDK's handling of each workflow activation, then the
workflow code) and holds the GIL: a process replays on one core at most. With `processes`
above 1 the cases go, a batch at a time, to that many worker processes, each replaying and
cross-checking on a core of its own with its own replay worker and database connection;
listing and fetching stay in this process. Every case gets the same replay and the same
checks whichever process audits it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory

from audit.check import check_cases
from audit.history import CaseHistory, with_earlier_runs
from audit.replay import CaseReplayer, verdict
from audit.report import BulkReport, BulkSummary, CaseAudit
from whistle.db import make_engine

# Each case once, by its latest run: a case that continued as new has a closed run per
# continuation, and those carry the search attributes of their day (an old `open` status).
_LATEST_RUNS = "WorkflowType = 'CaseWorkflow' AND ExecutionStatus != 'ContinuedAsNew'"

STREAMS = 2  # replay workers per process: while one waits on core (Rust), another runs Python
CHECK_BATCH = 16  # cases cross-checked together (and sent to a worker process together)
FETCHES = 8  # histories fetched from the server at a time
# A worker process takes one to two CPU seconds to start (a fresh interpreter importing the
# SDK, SQLAlchemy, pydantic and the domain, then its own replay worker): below about this
# many cases per process that costs more than the extra core saves (bench/README.md).
CASES_PER_PROCESS = 100


def case_query(query: str) -> str:
    """The visibility query for the latest run of every case matching `query`."""
    return f"{_LATEST_RUNS} AND ({query})" if query.strip() else _LATEST_RUNS


def cpus() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_processes(cases: int) -> int:
    """Worker processes for auditing `cases` cases: one per core, none (1: this process
    alone) for an audit too small to pay for starting them."""
    return max(1, min(cpus(), cases // CASES_PER_PROCESS))


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
                      replayer: CaseReplayer | None = None, streams: int = STREAMS,
                      processes: int | None = None, prefetch: int = 32) -> BulkReport:
    """Replay and cross-check every case `query` selects; `on_case` hears of each case as
    soon as it is done (a batch at a time).

    `processes`: worker processes to audit in (see the module docstring); None picks
    `default_processes` for the number of cases selected (1: this process). A given `replayer`
    (a test's workflow code), or a database only this process can see (SQLite in memory),
    keeps the audit in this process."""
    started = time.perf_counter()
    url = _shareable_url(engine)
    if replayer is not None or url is None:
        processes = 1
    elif processes is None:
        processes = default_processes(await count_cases(client, query))
    queue: asyncio.Queue[CaseHistory | None] = asyncio.Queue(maxsize=prefetch)
    fetcher = asyncio.create_task(_fetch(client, query, queue))
    try:
        if processes > 1:
            assert url is not None
            cases = await _audit_in_processes(url, queue, processes, streams, on_case)
        else:
            cases = await _audit_here(engine, queue, streams, on_case, replayer)
        await fetcher  # re-raises a failure to list or fetch
    finally:
        fetcher.cancel()  # after a failure, stop fetching
    return bulk_report(query, cases, started)


async def audit_cases(engine: Engine, cases: AsyncIterator[CaseHistory], *,
                      on_case: Callable[[CaseAudit], None] | None = None,
                      replayer: CaseReplayer | None = None,
                      batch: int = CHECK_BATCH) -> list[CaseAudit]:
    """Replay every run of every case on one replay worker; cross-check the replayed cases
    `batch` at a time (and what is left at the end)."""
    inflight: deque[_InFlight] = deque()
    replayed: list[_InFlight] = []
    done: list[CaseAudit] = []

    async def runs() -> AsyncIterator[WorkflowHistory]:
        async for case in cases:
            inflight.append(_InFlight(case))
            for run in case.runs:
                yield run

    def finish() -> None:
        for audit in _finish(engine, replayed):
            done.append(audit)
            if on_case:
                on_case(audit)
        replayed.clear()

    async with (replayer or CaseReplayer()).stream(runs()) as results:
        async for result in results:
            case = inflight[0]  # results come back in the order the runs went in
            case.audit.replay.append(verdict(result.history, len(case.audit.replay) + 1,
                                             result.replay_failure))
            if case.replayed:
                replayed.append(inflight.popleft())
                if len(replayed) >= batch:
                    finish()
    finish()
    return done


async def audit_fetched(engine: Engine, cases: Iterable[CaseHistory], *,
                        replayer: CaseReplayer | None = None,
                        streams: int = STREAMS) -> list[CaseAudit]:
    """Replay and cross-check cases at hand (fetched before, or loaded from exports) in
    this process, on `streams` replay workers."""
    queue: asyncio.Queue[CaseHistory | None] = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)
    queue.put_nowait(None)
    return await _audit_here(engine, queue, max(1, min(streams, queue.qsize() - 1)), None,
                             replayer)


def bulk_report(query: str, cases: list[CaseAudit], started: float) -> BulkReport:
    """The report of a bulk audit begun at `started` (a perf_counter reading)."""
    summary = BulkSummary()
    for case in cases:
        summary.add(case)
    summary.seconds = round(time.perf_counter() - started, 3)
    return BulkReport(query=query, summary=summary, cases=cases)


# --- fetching -----------------------------------------------------------------------------


async def _fetch(client: Client, query: str, out: asyncio.Queue[CaseHistory | None]) -> None:
    """Put every selected case (all its runs) on `out`, in listing order, then None.
    `FETCHES` cases are fetched at a time: one at a time, the round trips to the server
    would set the pace."""
    pending: deque[asyncio.Task[CaseHistory]] = deque()
    try:
        async for execution in client.list_workflows(case_query(query)):
            pending.append(asyncio.create_task(_fetch_case(client, execution.id,
                                                           execution.run_id)))
            if len(pending) >= FETCHES:
                await out.put(await pending.popleft())
        while pending:
            await out.put(await pending.popleft())
    finally:
        for task in pending:
            task.cancel()
        await out.put(None)


async def _fetch_case(client: Client, workflow_id: str, run_id: str) -> CaseHistory:
    latest = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return await with_earlier_runs(client, latest)


async def _drain(queue: asyncio.Queue[CaseHistory | None]) -> AsyncIterator[CaseHistory]:
    """The cases on `queue` up to its None, which is put back for the next consumer."""
    while (case := await queue.get()) is not None:
        yield case
    queue.put_nowait(None)


# --- auditing in this process -------------------------------------------------------------


async def _audit_here(engine: Engine, queue: asyncio.Queue[CaseHistory | None], streams: int,
                      on_case: Callable[[CaseAudit], None] | None,
                      replayer: CaseReplayer | None) -> list[CaseAudit]:
    """`streams` replay workers share the cases on `queue`: while one waits on the core
    (Rust) side of a replay, another runs Python."""
    replayer = replayer or CaseReplayer()
    workers = [asyncio.create_task(audit_cases(engine, _drain(queue), on_case=on_case,
                                               replayer=replayer)) for _ in range(streams)]
    try:
        parts = await asyncio.gather(*workers)
    finally:
        for task in workers:  # after a failure, stop what still runs
            task.cancel()
    return [c for part in parts for c in part]


def _finish(engine: Engine, cases: list[_InFlight]) -> list[CaseAudit]:
    """Cross-check replayed cases; a history that cannot be read is its case's error, and
    a database that cannot be read every case's of the batch."""
    try:
        reports = check_cases(engine, [c.case for c in cases])
    except Exception as e:  # one failed batch must not stop the audit of the others
        reports = [e] * len(cases)
    for case, report in zip(cases, reports, strict=True):
        if isinstance(report, Exception):
            case.audit.error = f"{type(report).__name__}: {report}"
        else:
            case.audit.check = report
    return [c.audit for c in cases]


# --- auditing in worker processes ---------------------------------------------------------

# A case as sent to a worker process: case id, workflow id, each run's History (protobuf).
_Packed = tuple[str, str, list[bytes]]


def _shareable_url(engine: Engine) -> str | None:
    """The URL another process can open `engine`'s database with (None: it cannot)."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    return url.render_as_string(hide_password=False)


async def _audit_in_processes(url: str, queue: asyncio.Queue[CaseHistory | None],
                              processes: int, streams: int,
                              on_case: Callable[[CaseAudit], None] | None) -> list[CaseAudit]:
    """Audit the cases on `queue` in `processes` worker processes, `CHECK_BATCH` cases a
    task, two tasks per process in flight (one queued while the other runs)."""
    loop = asyncio.get_running_loop()
    # Spawned, not forked: this process runs threads (the SDK's core runtime).
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(url, streams))
    running: set[asyncio.Future[list[CaseAudit]]] = set()
    done: list[CaseAudit] = []

    def collect(finished: Iterable[asyncio.Future[list[CaseAudit]]]) -> None:
        for f in finished:
            for audit in f.result():  # re-raises a worker's failure (or its death)
                done.append(audit)
                if on_case:
                    on_case(audit)

    try:
        warm: list[Future[None]] = [pool.submit(_ready) for _ in range(processes)]
        batch: list[_Packed] = []
        async for case in _drain(queue):
            batch.append(_pack(case))
            if len(batch) < CHECK_BATCH:
                continue
            if len(running) >= 2 * processes:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            finished = {f for f in running if f.done()}
            running -= finished
            collect(finished)
            running.add(loop.run_in_executor(pool, _audit_batch, batch))
            batch = []
        if batch:
            running.add(loop.run_in_executor(pool, _audit_batch, batch))
        if running:
            finished, running = await asyncio.wait(running)
            collect(finished)
        for w in warm:
            w.result()
    finally:
        for f in running:
            f.cancel()
        pool.shutdown(wait=not running, cancel_futures=True)
    return done


def _pack(case: CaseHistory) -> _Packed:
    return (case.case_id, case.workflow_id,
            [History(events=run.events).SerializeToString() for run in case.runs])


def _unpack(packed: _Packed) -> CaseHistory:
    case_id, workflow_id, runs = packed
    return CaseHistory(case_id, workflow_id, tuple(
        WorkflowHistory(workflow_id, History.FromString(run).events) for run in runs))


@dataclass
class _Worker:
    """What a worker process keeps from one task to the next."""

    loop: asyncio.AbstractEventLoop
    engine: Engine
    replayer: CaseReplayer
    streams: int


_worker: _Worker | None = None


def _start_worker(url: str, streams: int) -> None:
    """Set up a worker process: its event loop, database engine and replayer."""
    global _worker
    _worker = _Worker(asyncio.new_event_loop(), make_engine(url), CaseReplayer(), streams)


def _ready() -> None:
    """A first task for each worker, so they all start before the first batch is in."""


def _audit_batch(batch: list[_Packed]) -> list[CaseAudit]:
    """Replay and cross-check a batch of cases in this worker process."""
    w = _worker
    assert w is not None, "not a worker process"
    return w.loop.run_until_complete(audit_fetched(
        w.engine, [_unpack(p) for p in batch], replayer=w.replayer, streams=w.streams))
