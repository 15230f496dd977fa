"""Record the replay fixtures afresh: `make record-histories`.

Plays one case per path of the workflow (every ladder step, return and re-dispatch,
extension, reopen, unresolved, withdrawal, feedback timeout, continue-as-new) and writes each
run's history as JSON — the format of `temporal workflow show --output json` — under
tests/replay/histories/. test_replay.py replays every file against the current workflow code,
so a change that would break running cases fails the suite.

Histories already there are kept: after a patched change, record the new behaviour under a
tag (`make record-histories TAG=v2` writes `worked_example@v2.json` …) so the old files go on
proving that running cases still replay. Without a tag, files of the same name are replaced.
`make record-histories ONLY=taken_over_with_facts` records only the scenarios named.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path

import yaml
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.helpers import POLICY, SAMPLE_POLICY, case_state, new_worker, start_case
from tests.workflows import support as s
from whistle import search_attributes, workdays
from whistle.db import make_engine, migrate
from whistle.domain import (
    Level,
    OutcomeKind,
    RecomputeDeadlines,
    RetryPlanning,
    Satisfaction,
)
from whistle.reference import load_reference
from whistle.settings import DATA_DIR
from workflows.case import CaseWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
TAG = f"@{sys.argv[1]}" if len(sys.argv) > 1 and sys.argv[1] else ""
BIN = Path(sys.executable).parent
Scenario = Callable[[WorkflowEnvironment, Worker, object], Awaitable[WorkflowHandle]]


async def worked_example(env: WorkflowEnvironment, w: Worker, engine: object) -> WorkflowHandle:
    depts = ["xjk-petition", "xjk-land-office", "xjk-law-enforcement"]
    h = await start_case(env.client, w, case_state(engine, depts))  # type: ignore[arg-type]
    await s.settle_all(h, *depts)
    await s.record_outcome(h)
    await s.record_feedback(h, Satisfaction.SATISFIED)
    return h


async def ladder_to_the_top(env: WorkflowEnvironment, w: Worker, engine: object
                            ) -> WorkflowHandle:
    st = case_state(engine, ["xjk-police"], category="neighbour")  # type: ignore[arg-type]
    h = await start_case(env.client, w, st)
    await s.skip(env, days=10)  # remind, notify supervisor, raise ×2, unresolved at the top
    await s.report_in(h, "xjk-police")  # late
    await s.record_outcome(h, OutcomeKind.WITHDRAWN)
    return h


async def extension_and_no_feedback(env: WorkflowEnvironment, w: Worker, engine: object
                                    ) -> WorkflowHandle:
    st = case_state(engine, ["xjk-justice", "xjk-police"], category="neighbour")  # type: ignore[arg-type]
    h = await start_case(env.client, w, st)
    await s.report_in(h, "xjk-justice")
    await s.report_in(h, "xjk-police")
    await s.skip(env, days=5, hours=2)  # sign-off missed: remind
    due = (await s.state(h)).summonses[0].sign_off_due
    await s.request_extension(h, "xjk-justice", due + timedelta(days=7))
    await s.decide_extension(h, "xjk-justice", approve=True)
    await s.request_extension(h, "xjk-police", due + timedelta(days=3))
    await s.decide_extension(h, "xjk-police", approve=False)
    await s.sign_off(h, "xjk-justice")
    await s.sign_off(h, "xjk-police")
    await s.record_outcome(h, OutcomeKind.ADMINISTRATIVE_RESOLUTION)
    await s.skip(env, days=8)  # no feedback: closes
    return h


async def return_and_redispatch(env: WorkflowEnvironment, w: Worker, engine: object
                                ) -> WorkflowHandle:
    h = await start_case(env.client, w, case_state(engine, ["xjk-police"]))  # type: ignore[arg-type]
    await s.return_summons(h, "xjk-police")
    await s.redispatch(h, engine, "xjk-police", "xjk-land-office")  # type: ignore[arg-type]
    await s.summon_more(h, engine, "xjk-police")  # type: ignore[arg-type]
    await s.settle_all(h, "xjk-land-office", "xjk-police")
    await s.record_outcome(h, OutcomeKind.REFERRED_TO_LITIGATION)
    await s.close(h)
    return h


async def reopen_then_unsatisfied(env: WorkflowEnvironment, w: Worker, engine: object
                                  ) -> WorkflowHandle:
    st = case_state(engine, ["xjk-justice"], category="family")  # type: ignore[arg-type]
    h = await start_case(env.client, w, st)
    await s.settle_all(h, "xjk-justice")
    await s.record_outcome(h)
    await s.record_feedback(h, Satisfaction.UNSATISFIED)  # reopens
    await s.summon_more(h, engine, "xjk-justice")  # type: ignore[arg-type]
    await s.settle_all(h, "xjk-justice")
    await s.record_outcome(h)
    await s.record_feedback(h, Satisfaction.UNSATISFIED)  # closes
    return h


async def unresolved_rises(env: WorkflowEnvironment, w: Worker, engine: object
                           ) -> WorkflowHandle:
    st = case_state(engine, [], category="labour", level=Level.TOWN)  # type: ignore[arg-type]
    h = await start_case(env.client, w, st)
    await s.record_outcome(h, OutcomeKind.UNRESOLVED)  # town → county
    await s.summon_more(h, engine, "hc-hrss")  # type: ignore[arg-type]
    await s.settle_all(h, "hc-hrss")
    await s.record_outcome(h, OutcomeKind.MEDIATED_AGREEMENT)
    await s.record_feedback(h, Satisfaction.BASICALLY_SATISFIED)
    return h


async def taken_over_with_facts(env: WorkflowEnvironment, w: Worker, engine: object
                                ) -> WorkflowHandle:
    st = case_state(engine, [], category="land", level=Level.VILLAGE)  # type: ignore[arg-type]
    h = await start_case(env.client, w, st)
    await s.add_fact(h)  # the grid worker's site visit
    await s.take_over(h, "supervisor-village")
    await s.record_outcome(h, OutcomeKind.UNRESOLVED)  # village → town: the take-over lapses
    await s.take_over(h, "supervisor-town")
    await s.summon_more(h, engine, "xjk-land-office")  # type: ignore[arg-type]
    await s.settle_all(h, "xjk-land-office")
    await s.record_outcome(h, OutcomeKind.MEDIATED_AGREEMENT)
    await s.record_feedback(h, Satisfaction.SATISFIED)
    return h


async def working_day_ladder(env: WorkflowEnvironment, w: Worker, engine: object
                             ) -> WorkflowHandle:
    """The sample policy's ladder, in working days (督办 and 提级 planned by the calendar)."""
    async with new_worker(env.client, engine, SAMPLE_POLICY) as own:  # type: ignore[arg-type]
        st = case_state(engine, ["xjk-law-enforcement"], category="environment")  # type: ignore[arg-type]
        h = await start_case(env.client, own, st)
        await s.skip(env, days=10)
        await s.report_in(h, "xjk-law-enforcement")  # late
        await s.record_outcome(h, OutcomeKind.WITHDRAWN)
        await h.result()
    return h


async def needs_attention_retried(env: WorkflowEnvironment, w: Worker, engine: object
                                  ) -> WorkflowHandle:
    """The policy file is broken when the case opens: it opens needing attention; a retry
    fails, the file is mended, the next retry summons the intake's department."""
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text("version: broken\ndefaults: {}\n", encoding="utf-8")
        async with new_worker(env.client, engine, policy) as own:  # type: ignore[arg-type]
            st = case_state(engine, ["xjk-police"], category="neighbour")  # type: ignore[arg-type]
            h = await start_case(env.client, own, st)
            retry = RetryPlanning(actor=s.COORDINATOR)
            with contextlib.suppress(WorkflowUpdateFailedError):
                await h.execute_update(CaseWorkflow.retry_planning, retry)
            policy.write_text(POLICY.read_text(encoding="utf-8"), encoding="utf-8")
            await h.execute_update(CaseWorkflow.retry_planning, retry)
            await s.settle_all(h, "xjk-police")
            await s.record_outcome(h, OutcomeKind.ADMINISTRATIVE_RESOLUTION)
            await s.close(h)
            await h.result()
    return h


async def deadlines_recomputed(env: WorkflowEnvironment, w: Worker, engine: object
                               ) -> WorkflowHandle:
    """A sign-off clock of 250 working days reaches a year with no published arrangement
    (provisional); a TEST-DATA arrangement is added for each such year (its statutory
    holidays plus one made-up day off) and the case's deadlines are recomputed."""
    doc = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    doc["categories"]["environment"]["sign_off_working_days"] = 250
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        async with new_worker(env.client, engine, policy) as own:  # type: ignore[arg-type]
            st = case_state(engine, ["xjk-law-enforcement"], category="environment")  # type: ignore[arg-type]
            h = await start_case(env.client, own, st)
            start = (await s.state(h)).opened_at
            assert start is not None
            doc["calendar"] = {  # TEST DATA: never the State Council's arrangement
                year: {"holidays": [*workdays.statutory_holidays(year), date(year, 3, 3)]}
                for year in range(start.year, start.year + 3)
                if workdays.source(year) == workdays.Source.PROVISIONAL}
            policy.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
            await h.execute_update(CaseWorkflow.recompute_deadlines, RecomputeDeadlines(
                actor=s.COORDINATOR, reason="arrangement published (test data)"))
            await s.settle_all(h, "xjk-law-enforcement")
            await s.record_outcome(h, OutcomeKind.ADMINISTRATIVE_RESOLUTION)
            await s.close(h)
            await h.result()
    return h


SCENARIOS: list[Scenario] = [worked_example, ladder_to_the_top, extension_and_no_feedback,
                             return_and_redispatch, reopen_then_unsatisfied, unresolved_rises,
                             taken_over_with_facts, working_day_ladder, needs_attention_retried,
                             deadlines_recomputed]
# ONLY=name,name records just those scenarios ("continue_as_new" included by name).
ONLY = {n for n in os.environ.get("ONLY", "").split(",") if n}


async def save_runs(client: Client, name: str, workflow_id: str) -> list[Path]:
    """Write every run of `workflow_id` (continue-as-new makes several) to its own file."""
    paths = []
    runs = [r async for r in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    for i, run in enumerate(sorted(runs, key=lambda r: r.start_time), start=1):
        history = await client.get_workflow_handle(workflow_id, run_id=run.run_id).fetch_history()
        path = HISTORIES / (f"{name}{TAG}.json" if len(runs) == 1
                            else f"{name}{TAG}.run{i}.json")
        path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
        paths.append(path)
    return paths


async def record_on_time_skipping(engine: object) -> list[Path]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=pydantic_data_converter)
    await search_attributes.register(env.client)
    written: list[Path] = []
    try:
        for scenario in SCENARIOS:
            if ONLY and scenario.__name__ not in ONLY:
                continue
            async with new_worker(env.client, engine) as w:  # type: ignore[arg-type]
                h = await scenario(env, w, engine)
                await h.result()
            history = await h.fetch_history()
            path = HISTORIES / f"{scenario.__name__}{TAG}.json"
            path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
            written.append(path)
    finally:
        await env.shutdown()
    return written


async def record_continue_as_new(engine: object) -> list[Path]:
    """On a dev server told to suggest continue-as-new early, so one case spans runs."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"), data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL, dev_server_log_level="error",
        dev_server_extra_args=["--dynamic-config-value",
                               "limit.historyCount.suggestContinueAsNew=30"])
    try:
        depts = ["xjk-police", "xjk-justice", "xjk-petition", "xjk-land-office"]
        async with new_worker(env.client, engine) as w:  # type: ignore[arg-type]
            h = await start_case(env.client, w, case_state(engine, depts))  # type: ignore[arg-type]
            await s.settle_all(h, *depts)
            await s.record_outcome(h)
            await s.record_feedback(h, Satisfaction.SATISFIED)
            await env.client.get_workflow_handle(h.id).result()
        return await save_runs(env.client, "continue_as_new", h.id)
    finally:
        await env.shutdown()


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/record.db")
        migrate(engine)
        load_reference(engine, DATA_DIR / "reference.yaml")
        written = await record_on_time_skipping(engine)
        if not ONLY or "continue_as_new" in ONLY:
            written += await record_continue_as_new(engine)
        engine.dispose()
    for path in written:
        print(f"wrote {path.relative_to(Path.cwd())}")


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)  # skip native-runtime teardown (sdk-python #300)
