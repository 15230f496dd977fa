"""Where the time of the bulk audit goes, per history, with no server.

    .venv/bin/python bench/audit_profile.py                 # the committed replay fixtures
    .venv/bin/python bench/audit_profile.py --repeat 20 export1.json export2.json ...

It loads histories (by default every fixture in tests/replay/histories, the paths of a case
from the worked example to the escalation ladder; or `whistle audit export` files), writes
their read model into a temporary SQLite by running the projection activity on the inputs
history holds (as the worker did), and audits them `--repeat` times over in this process
(`audit.bulk.audit_fetched`, one replay stream, so that no two stages overlap), out of the
sandbox and in it. For each it prints histories/s, CPU milliseconds per history of the
Python threads and of the SDK core's (Rust) threads, and the CPU time of the stages it can
tell apart: the audit's own (timeline rebuild, SQL reads, comparing), and, by wrapping SDK
internals (temporalio 1.35; approximate, as these are coroutines), the payload visitors run
on every activation, the data converter built for it, and the activation itself in the
workflow thread (workflow code, payload conversion and, in the sandbox, its overhead).
What is left is the SDK's dispatching of activations: asyncio, the hop to the workflow
thread, protobuf to and from core. Linux only (thread CPU times from /proc).

For a sampled profile of the same run: `py-spy record --gil -r 100 -f raw -o out.txt --
.venv/bin/python bench/audit_profile.py` (py-spy is on PyPI; not a project dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import temporalio.bridge.worker as bridge_worker
import temporalio.worker._workflow as sdk_workflow
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter

import audit.check
from activities.case import CaseActivities
from audit.bulk import audit_fetched
from audit.history import CaseHistory, load_export
from audit.replay import CaseReplayer
from whistle.db import make_engine, migrate
from whistle.domain import ActivityName, Projection
from whistle.reference import load_reference
from whistle.settings import DATA_DIR, PROJECT_ROOT

FIXTURES = PROJECT_ROOT / "tests" / "replay" / "histories"
POLICY = PROJECT_ROOT / "whistle" / "data" / "policy.yaml"
SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED

spent: Counter[str] = Counter()


def _timing_sync(owner: Any, name: str, stage: str) -> None:
    fn = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[stage] += time.thread_time() - started

    setattr(owner, name, timed)


def _timing_async(owner: Any, name: str, stage: str) -> None:
    fn: Callable[..., Awaitable[Any]] = getattr(owner, name)

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return await fn(*args, **kwargs)
        finally:
            spent[stage] += time.thread_time() - started

    setattr(owner, name, timed)


_timing_sync(audit.check, "reconstruct", "audit: timeline rebuild (decode projections)")
_timing_sync(audit.check, "read_models", "audit: SQL reads (one query per table a batch)")
_timing_sync(audit.check, "check", "audit: comparing rows and steps")
_timing_async(bridge_worker, "decode_activation", "SDK: payload visitor on each activation")
_timing_async(bridge_worker, "encode_completion", "SDK: payload visitor on each completion")
_timing_sync(sdk_workflow._CommandAwareDataConverter, "create",
             "SDK: data converter built per activation")
_timing_sync(sdk_workflow._RunningWorkflow, "activate",
             "SDK: activation in the workflow thread (workflow code, payloads, sandbox)")


_gc_started: list[float] = []


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    """Time the collector, wherever it runs (it stops the thread that triggered it)."""
    if phase == "start":
        _gc_started.append(time.perf_counter())
    elif _gc_started:
        spent[GC] += time.perf_counter() - _gc_started.pop()


GC = "(of all the above) Python garbage collector, in whichever thread triggers it"
gc.callbacks.append(_gc_timer)


def _thread_cpu() -> dict[str, tuple[str, float]]:
    """CPU seconds of each thread of this process, with its name."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _project(engine: Any, case: CaseHistory) -> None:
    """Write the read model of `case` as its worker did."""
    acts = CaseActivities(engine, POLICY)
    for run in case.runs:
        for e in run.events:
            a = e.activity_task_scheduled_event_attributes
            if e.event_type == SCHEDULED and a.activity_type.name == ActivityName.PROJECT_CASE:
                [p] = pydantic_data_converter.payload_converter.from_payloads(
                    a.input.payloads, [Projection])
                acts.project_case(p)


async def profile(engine: Any, cases: list[CaseHistory], sandboxed: bool) -> None:
    replayer = CaseReplayer(sandboxed=sandboxed)
    await audit_fetched(engine, cases[:2], replayer=replayer, streams=1)  # warm up
    spent.clear()
    before, wall = _thread_cpu(), time.perf_counter()
    done = await audit_fetched(engine, cases, replayer=replayer, streams=1)
    wall, after = time.perf_counter() - wall, _thread_cpu()
    assert all(c.ok for c in done), [c for c in done if not c.ok][:1]
    n = sum(len(c.replay) for c in done)
    threads: Counter[str] = Counter()
    for tid, (name, cpu) in after.items():
        threads["core (Rust)" if name.startswith("tokio") else "Python"] += (
            cpu - before.get(tid, (name, 0.0))[1])
    ms = 1000 / n
    where = "in the sandbox" if sandboxed else "out of the sandbox"
    print(f"{where}: {n} histories, {n / wall:.1f} histories/s; CPU ms per history: "
          f"{ms * sum(threads.values()):.1f} = Python threads {ms * threads['Python']:.1f} + "
          f"core (Rust) threads {ms * threads['core (Rust)']:.1f}")
    collector = spent.pop(GC, 0.0)
    for stage, seconds in spent.most_common():
        print(f"  {ms * seconds:6.2f}  {stage}")
    rest = threads["Python"] - sum(spent.values())
    print(f"  {ms * rest:6.2f}  the rest: SDK dispatch (asyncio, thread hop, protobuf to and "
          "from core), verdicts")
    print(f"  {ms * collector:6.2f}  {GC}")


async def main(args: argparse.Namespace) -> None:
    texts = ([Path(f).read_text(encoding="utf-8") for f in args.files] if args.files else
             [p.read_text(encoding="utf-8") for p in sorted(FIXTURES.glob("*.json"))])
    cases = load_export(*texts) if not args.files else [
        c for t in texts for c in load_export(t)]
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/profile.db")
        migrate(engine)
        load_reference(engine, DATA_DIR / "reference.yaml")
        for case in cases:
            _project(engine, case)
        print(f"{len(cases)} cases, {sum(len(c.runs) for c in cases)} histories, "
              f"{args.repeat} times over")
        for sandboxed in (False, True):
            await profile(engine, cases * args.repeat, sandboxed)
        engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="history exports (default: the fixtures)")
    parser.add_argument("--repeat", type=int, default=30)
    asyncio.run(main(parser.parse_args()))
    sys.stdout.flush()
    os._exit(0)  # skip native-runtime teardown (sdk-python #300)
