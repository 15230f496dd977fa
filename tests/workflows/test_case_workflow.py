"""The case workflow end to end on the time-skipping server: the worked example of the
source article, search attributes, the projection's idempotency, a worker restart.

Clocks and the escalation ladder: test_clocks.py. Each step and each refused step:
test_steps.py."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.case import CaseActivities
from tests.helpers import POLICY, new_worker
from tests.workflows.conftest import Cases
from tests.workflows.support import (
    AGREEMENT,
    assert_at,
    db_case,
    db_events,
    db_outbox,
    db_summonses,
    events,
    fresh_queue,
    one,
    outbox_for,
    record_feedback,
    record_outcome,
    report_in,
    sign_off,
    skip,
    skip_past,
    state,
    worker_on,
)
from whistle import search_attributes as sa
from whistle.db import make_engine, migrate
from whistle.domain import (
    CaseState,
    CaseStatus,
    CloseReason,
    EventKind,
    Level,
    Notification,
    OutcomeKind,
    Projection,
    Satisfaction,
    SummonsStatus,
)

WORKED_EXAMPLE = ["xjk-petition", "xjk-land-office", "xjk-law-enforcement"]


async def test_worked_example_runs_from_whistle_to_archive(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    """The land-use-right dispute of the source article: petition office, land office and
    law-enforcement brigade summoned, all report in and sign off, a mediated agreement,
    the parties satisfied, the case archived."""
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, WORKED_EXAMPLE, category="land")
        s = await state(h)
        assert s.status == CaseStatus.OPEN and s.level == Level.TOWN and s.owner == "xiaojinkou"
        assert [x.department for x in s.summonses] == WORKED_EXAMPLE
        assert s.policy is not None and s.policy.sign_off_hours == 240  # land's own clock
        for x in s.summonses:
            assert x.status == SummonsStatus.SUMMONED
            assert x.report_in_due == s.opened_at + timedelta(hours=24)
            assert x.sign_off_due == s.opened_at + timedelta(hours=240)

        await skip(time_env, hours=3)
        for d in WORKED_EXAMPLE:
            await report_in(h, d)
        await skip(time_env, days=4)
        for d in WORKED_EXAMPLE:
            result = await sign_off(h, d)
        assert result.status == CaseStatus.OPEN
        s = await state(h)
        assert all(x.status == SummonsStatus.SIGNED_OFF for x in s.summonses)
        assert all(e.data["late"] is False
                   for e in events(s, EventKind.REPORTED_IN) + events(s, EventKind.SIGNED_OFF))
        assert not events(s, EventKind.CLOCK_MISSED)
        # the last sign-off tells the centre that every department is done
        last = events(s, EventKind.SIGNED_OFF)[-1]
        assert outbox_for(engine, s.case_id, last.seq) == ["centre:xiaojinkou"]

        result = await record_outcome(h, OutcomeKind.MEDIATED_AGREEMENT)
        assert result.status == CaseStatus.AWAITING_FEEDBACK
        s = await state(h)
        outcome = one(events(s, EventKind.OUTCOME))
        assert s.outcome is not None and s.outcome.agreement_text == AGREEMENT
        assert s.feedback_due == outcome.at + timedelta(hours=168)

        await skip(time_env, days=2)
        result = await record_feedback(h, Satisfaction.SATISFIED)
        assert result.status == CaseStatus.CLOSED
        final = await h.result()

    assert final.status == CaseStatus.CLOSED
    assert final.close_reason == CloseReason.FEEDBACK
    assert_at(one(events(final, EventKind.CLOSED)), final.closed_at)
    assert [e.kind for e in final.events] == (
        [EventKind.OPENED] + [EventKind.SUMMONED] * 3 + [EventKind.REPORTED_IN] * 3
        + [EventKind.SIGNED_OFF] * 3
        + [EventKind.OUTCOME, EventKind.FEEDBACK, EventKind.CLOSED])
    assert [e.seq for e in final.events] == list(range(1, len(final.events) + 1))
    assert (await h.describe()).status == WorkflowExecutionStatus.COMPLETED

    row = db_case(engine, final.case_id)
    assert (row.status, row.close_reason, row.outcome_kind, row.satisfaction) == (
        "closed", "feedback", "mediated_agreement", "satisfied")
    assert row.agreement_text == AGREEMENT
    assert row.last_seq == final.events[-1].seq
    assert row.jurisdiction_path == "/huizhou/huicheng/xiaojinkou/jiulong/"
    assert row.departments == sorted(WORKED_EXAMPLE)
    assert row.closed_at == final.closed_at
    summonses = db_summonses(engine, final.case_id)
    assert [(x.department, x.status) for x in summonses] == [
        (d, "signed_off") for d in sorted(WORKED_EXAMPLE)]
    assert all(x.next_due is None and not x.overdue for x in summonses)
    assert [(e.seq, e.kind) for e in db_events(engine, final.case_id)] == [
        (e.seq, e.kind) for e in final.events]
    outbox = db_outbox(engine, final.case_id)
    assert {m.recipient for m in outbox} >= {f"department:{d}" for d in WORKED_EXAMPLE}
    assert all(m.text.startswith(f"案件 {final.case_id}：") for m in outbox)


async def test_search_attributes_follow_the_case(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police", "xjk-justice"])

        async def attrs() -> dict[str, object]:
            typed = (await h.describe()).typed_search_attributes
            return {k.name: typed.get(k) for k in sa.ALL}

        assert await attrs() == {
            "WhistleStatus": "open", "WhistleLevel": "town", "WhistleCategory": "neighbour",
            "WhistleJurisdiction": ["huizhou", "huicheng", "xiaojinkou", "jiulong"],
            "WhistleOverdue": False, "WhistleDepartments": ["xjk-justice", "xjk-police"],
        }
        due = (await state(h)).summonses[0].report_in_due
        await skip_past(time_env, due + timedelta(hours=72))  # missed, reminded, ..., raised
        got = await attrs()
        assert (got["WhistleOverdue"], got["WhistleLevel"]) == (True, "county")

        await report_in(h, "xjk-police")
        assert (await attrs())["WhistleOverdue"] is True  # justice still has not reported in
        await report_in(h, "xjk-justice")
        got = await attrs()
        assert (got["WhistleOverdue"], got["WhistleLevel"], got["WhistleStatus"]) == (
            False, "county", "open")

        await sign_off(h, "xjk-police")
        await sign_off(h, "xjk-justice")
        await record_outcome(h, OutcomeKind.ADMINISTRATIVE_RESOLUTION)
        assert (await attrs())["WhistleStatus"] == "awaiting_feedback"


async def test_projection_is_idempotent_and_never_goes_back(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    """`project_case` run twice with the same projection writes each event and each
    notification once; an older snapshot does not overwrite a newer case row."""
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police", "xjk-justice"])
        older = await state(h)
        await report_in(h, "xjk-police")
        await sign_off(h, "xjk-police")
        newer = await state(h)
    case_id = newer.case_id
    acts = CaseActivities(engine, POLICY)

    def projection(s: CaseState) -> Projection:  # as the workflow builds it
        notes = [Notification(seq=e.seq, recipient=f"department:{e.department}")
                 for e in s.events if e.kind == EventKind.SUMMONED]
        return Projection(state=s.model_copy(update={"events": [], "notifications": []}),
                          events=s.events, notifications=notes)

    events_before, outbox_before = db_events(engine, case_id), db_outbox(engine, case_id)
    assert len(events_before) == len(newer.events)
    p = projection(newer)
    assert acts.project_case(p) == 0  # the workflow wrote all of it already
    assert acts.project_case(p) == 0
    assert len(db_events(engine, case_id)) == len(events_before)
    assert [(m.seq, m.recipient) for m in db_outbox(engine, case_id)] == [
        (m.seq, m.recipient) for m in outbox_before]

    # the same into an empty read model: written once, then skipped
    engine2 = _empty_copy(engine)
    acts2 = CaseActivities(engine2, POLICY)
    p = p.model_copy(update={"notifications": p.notifications + p.notifications[:1]})
    assert acts2.project_case(p) == len(newer.events)  # a recipient listed twice: one row
    assert acts2.project_case(p) == 0
    assert len(db_events(engine2, case_id)) == len(newer.events)
    assert len(db_outbox(engine2, case_id)) == 2  # one per summons
    engine2.dispose()

    # an older snapshot (lower seq) leaves the newer row and its summonses alone
    row = db_case(engine, case_id)
    acts.project_case(projection(older))
    again = db_case(engine, case_id)
    assert again.last_seq == row.last_seq == newer.events[-1].seq
    assert again.updated_at == row.updated_at
    assert {x.department: x.status for x in db_summonses(engine, case_id)} == {
        "xjk-police": "signed_off", "xjk-justice": "summoned"}


def _empty_copy(engine: Engine) -> Engine:
    """An empty read model next to `engine`'s SQLite file."""
    path = engine.url.database
    assert path
    e = make_engine(f"sqlite:///{path}.copy")
    migrate(e)
    return e


async def test_worker_restart_mid_case_loses_nothing(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    """Stop the worker after the report-in; a new worker on the same task queue replays
    the history and carries on with the sign-off, the clocks and the outcome."""
    client = time_env.client
    # No workflow cache, so no sticky queue: the time-skipping server would keep sending
    # the case's tasks and queries to the stopped worker's sticky queue (it has no
    # fallback to the normal queue), which a real restart does not suffer from.
    first = worker_on(client, engine, fresh_queue(),
                      max_cached_workflows=0)
    async with first:
        h = await cases.start(first, ["xjk-police", "xjk-justice"])
        await report_in(h, "xjk-police")
        before = await state(h)

    await skip(time_env, hours=1)  # nobody is polling: the case just waits
    async with worker_on(client, engine, first.task_queue):
        assert await state(h) == before  # rebuilt from history by the new worker
        await sign_off(h, "xjk-police")
        due = before.summonses[1].report_in_due
        await skip_past(time_env, due)
        s = await state(h)
        police, justice = s.summonses
        assert police.status == SummonsStatus.SIGNED_OFF
        assert police.reported_in_at == before.summonses[0].reported_in_at
        assert_at(one(events(s, EventKind.CLOCK_MISSED, department="xjk-justice")), due)
        assert s.events[: len(before.events)] == before.events
        await report_in(h, "xjk-justice")
        await sign_off(h, "xjk-justice")
        await record_outcome(h, OutcomeKind.REFERRED_TO_LITIGATION)
        await record_feedback(h, Satisfaction.BASICALLY_SATISFIED)
        final = await h.result()
    assert final.close_reason == CloseReason.FEEDBACK
    assert [e.seq for e in db_events(engine, final.case_id)] == [e.seq for e in final.events]
