"""The human steps of a case on the time-skipping server: each refused step with its
stable code and no trace in history, return and re-dispatch, outcomes, feedback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.case import CaseActivities
from tests.helpers import POLICY, new_worker
from tests.workflows.conftest import Cases
from tests.workflows.support import (
    COORDINATOR,
    STAFF,
    accepted_updates,
    close,
    db_case,
    db_summonses,
    events,
    fresh_queue,
    one,
    outbox_for,
    record_feedback,
    record_outcome,
    redispatch,
    refs,
    rejected,
    report_in,
    request_extension,
    return_summons,
    settle_all,
    sign_off,
    skip,
    state,
    summon_more,
    worker_on,
)
from whistle.domain import (
    ActivityName,
    CaseStatus,
    CloseCase,
    CloseReason,
    DecideExtension,
    EventKind,
    Level,
    OutcomeKind,
    PlannedDeadline,
    PlanRequest,
    Projection,
    RecordFeedback,
    RecordOutcome,
    Redispatch,
    ReportIn,
    RequestExtension,
    ReturnSummons,
    Satisfaction,
    SignOff,
    SummonMore,
    SummonsStatus,
)
from workflows.case import CaseWorkflow

POLICE, JUSTICE, LAND = "xjk-police", "xjk-justice", "xjk-land-office"
H = timedelta(hours=1)

# --- refused steps ------------------------------------------------------------------------
# Each scenario brings a fresh case (police and justice summoned) to the state it needs and
# returns the step that must be refused there.

Scenario = Callable[[WorkflowHandle, Engine], Awaitable[tuple[Any, Any]]]


def _report(dept: str) -> ReportIn:
    return ReportIn(actor=STAFF, department=dept)


def _sign(dept: str) -> SignOff:
    return SignOff(actor=STAFF, department=dept, opinion="意见", actions_taken="处理情况")


async def _extension(h: WorkflowHandle, dept: str, hours: float = 48) -> RequestExtension:
    due = (await state(h)).current(dept).sign_off_due  # type: ignore[union-attr]
    return RequestExtension(actor=STAFF, department=dept, new_deadline=due + hours * H,
                            reason="需要更多时间")


def _redispatch(engine: Engine, dept: str, to: str) -> Redispatch:
    [target] = refs(engine, to)
    return Redispatch(actor=COORDINATOR, department=dept, to=target)


def _outcome(kind: OutcomeKind = OutcomeKind.ADMINISTRATIVE_RESOLUTION,
             agreement_text: str | None = None) -> RecordOutcome:
    return RecordOutcome(actor=COORDINATOR, kind=kind, summary="结果",
                         agreement_text=agreement_text)


async def sign_off_before_report_in(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    return CaseWorkflow.sign_off, _sign(POLICE)


async def report_in_twice(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await report_in(h, POLICE)
    return CaseWorkflow.report_in, _report(POLICE)


async def sign_off_twice(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await settle_all(h, POLICE)
    return CaseWorkflow.sign_off, _sign(POLICE)


async def report_in_by_department_not_summoned(h: WorkflowHandle, engine: Engine
                                               ) -> tuple[Any, Any]:
    return CaseWorkflow.report_in, _report(LAND)


async def return_by_department_not_summoned(h: WorkflowHandle, engine: Engine
                                            ) -> tuple[Any, Any]:
    return CaseWorkflow.return_summons, ReturnSummons(actor=STAFF, department=LAND, reason="x")


async def return_after_sign_off(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await settle_all(h, POLICE)
    return CaseWorkflow.return_summons, ReturnSummons(actor=STAFF, department=POLICE, reason="x")


async def outcome_while_summonses_open(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await settle_all(h, POLICE)  # justice is still open
    return CaseWorkflow.record_outcome, _outcome()


async def mediated_agreement_without_text(h: WorkflowHandle, engine: Engine
                                          ) -> tuple[Any, Any]:
    await settle_all(h, POLICE, JUSTICE)
    return CaseWorkflow.record_outcome, _outcome(OutcomeKind.MEDIATED_AGREEMENT)


async def outcome_twice(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await settle_all(h, POLICE, JUSTICE)
    await record_outcome(h, OutcomeKind.ADMINISTRATIVE_RESOLUTION)
    return CaseWorkflow.record_outcome, _outcome()


async def close_open_case(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await settle_all(h, POLICE, JUSTICE)
    return CaseWorkflow.close, CloseCase(actor=COORDINATOR, reason="结案")


async def feedback_on_open_case(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await settle_all(h, POLICE, JUSTICE)
    return CaseWorkflow.record_feedback, RecordFeedback(
        actor=COORDINATOR, satisfaction=Satisfaction.SATISFIED)


async def extension_before_report_in(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    return CaseWorkflow.request_extension, await _extension(h, POLICE)


async def extension_while_one_is_pending(h: WorkflowHandle, engine: Engine
                                         ) -> tuple[Any, Any]:
    await report_in(h, POLICE)
    await h.execute_update(CaseWorkflow.request_extension, await _extension(h, POLICE))
    return CaseWorkflow.request_extension, await _extension(h, POLICE, hours=96)


async def extension_to_the_current_deadline(h: WorkflowHandle, engine: Engine
                                            ) -> tuple[Any, Any]:
    await report_in(h, POLICE)
    return CaseWorkflow.request_extension, await _extension(h, POLICE, hours=0)


async def extension_to_an_earlier_deadline(h: WorkflowHandle, engine: Engine
                                           ) -> tuple[Any, Any]:
    await report_in(h, POLICE)
    return CaseWorkflow.request_extension, await _extension(h, POLICE, hours=-24)


async def decide_extension_none_pending(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await report_in(h, POLICE)
    return CaseWorkflow.decide_extension, DecideExtension(
        actor=COORDINATOR, department=POLICE, approve=True)


async def decide_extension_twice(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await report_in(h, POLICE)
    await request_extension(h, POLICE, (await _extension(h, POLICE)).new_deadline)
    await h.execute_update(CaseWorkflow.decide_extension, DecideExtension(
        actor=COORDINATOR, department=POLICE, approve=False))
    return CaseWorkflow.decide_extension, DecideExtension(
        actor=COORDINATOR, department=POLICE, approve=True)


async def summon_department_already_summoned(h: WorkflowHandle, engine: Engine
                                             ) -> tuple[Any, Any]:
    return CaseWorkflow.summon_more, SummonMore(actor=COORDINATOR,
                                                departments=refs(engine, LAND, POLICE))


async def summon_list_with_duplicate(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    return CaseWorkflow.summon_more, SummonMore(actor=COORDINATOR,
                                                departments=refs(engine, LAND, LAND))


async def summon_more_awaiting_feedback(h: WorkflowHandle, engine: Engine
                                        ) -> tuple[Any, Any]:
    await settle_all(h, POLICE, JUSTICE)
    await record_outcome(h, OutcomeKind.ADMINISTRATIVE_RESOLUTION)
    return CaseWorkflow.summon_more, SummonMore(actor=COORDINATOR,
                                                departments=refs(engine, LAND))


async def redispatch_summons_not_returned(h: WorkflowHandle, engine: Engine
                                          ) -> tuple[Any, Any]:
    return CaseWorkflow.redispatch, _redispatch(engine, POLICE, LAND)


async def redispatch_twice(h: WorkflowHandle, engine: Engine) -> tuple[Any, Any]:
    await return_summons(h, POLICE)
    await redispatch(h, engine, POLICE, LAND)
    return CaseWorkflow.redispatch, _redispatch(engine, POLICE, "xjk-court")


async def redispatch_to_same_department(h: WorkflowHandle, engine: Engine
                                        ) -> tuple[Any, Any]:
    await return_summons(h, POLICE)
    return CaseWorkflow.redispatch, _redispatch(engine, POLICE, POLICE)


async def redispatch_to_department_already_summoned(h: WorkflowHandle, engine: Engine
                                                    ) -> tuple[Any, Any]:
    await return_summons(h, POLICE)
    return CaseWorkflow.redispatch, _redispatch(engine, POLICE, JUSTICE)


REFUSALS: list[tuple[Scenario, str]] = [
    (sign_off_before_report_in, "wrong_summons_status"),
    (report_in_twice, "wrong_summons_status"),
    (sign_off_twice, "wrong_summons_status"),
    (report_in_by_department_not_summoned, "not_summoned"),
    (return_by_department_not_summoned, "not_summoned"),
    (return_after_sign_off, "wrong_summons_status"),
    (outcome_while_summonses_open, "summonses_open"),
    (mediated_agreement_without_text, "agreement_text_required"),
    (outcome_twice, "wrong_case_status"),
    (close_open_case, "outcome_required"),
    (feedback_on_open_case, "wrong_case_status"),
    (extension_before_report_in, "wrong_summons_status"),
    (extension_while_one_is_pending, "extension_pending"),
    (extension_to_the_current_deadline, "invalid_deadline"),
    (extension_to_an_earlier_deadline, "invalid_deadline"),
    (decide_extension_none_pending, "no_pending_extension"),
    (decide_extension_twice, "no_pending_extension"),
    (summon_department_already_summoned, "already_summoned"),
    (summon_list_with_duplicate, "duplicate_department"),
    (summon_more_awaiting_feedback, "wrong_case_status"),
    (redispatch_summons_not_returned, "wrong_summons_status"),
    (redispatch_twice, "already_redispatched"),
    (redispatch_to_same_department, "same_department"),
    (redispatch_to_department_already_summoned, "already_summoned"),
]


@pytest.mark.parametrize(("scenario", "code"), REFUSALS,
                         ids=[f"{s.__name__}-{c}" for s, c in REFUSALS])
async def test_refused_step_has_its_code_and_leaves_no_trace(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases,
        scenario: Scenario, code: str) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, [POLICE, JUSTICE])
        update, arg = await scenario(h, engine)
        assert await rejected(h, update, arg) == code
        # the case still takes a valid step afterwards
        assert (await state(h)).status != CaseStatus.CLOSED
        await skip(time_env, hours=1)
        assert (await state(h)).events[-1].kind != EventKind.CLOSED


async def test_steps_sent_while_a_summons_is_planned(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    """While a summon_more is planning its deadlines (held here), the same summons sent
    again and an outcome are refused once they are looked at (already_summoned,
    summonses_open), never a second summons. Planning runs as a local activity, inside
    the workflow task of the step, so the steps sent meanwhile wait for that task: none
    of them is accepted before planning returns."""
    acts = CaseActivities(engine, POLICY)
    planning, started = threading.Event(), threading.Event()
    planning.set()

    @activity.defn(name=ActivityName.PLAN_CLOCKS)
    def plan_clocks(req: PlanRequest) -> list[list[PlannedDeadline]]:
        started.set()
        planning.wait(30)
        return acts.plan(req)

    async with worker_on(time_env.client, engine, fresh_queue(), plan_clocks) as worker:
        h = await cases.start(worker, [POLICE])
        await settle_all(h, POLICE)
        planning.clear()
        started.clear()
        more = SummonMore(actor=COORDINATOR, departments=refs(engine, LAND))
        accepted_before = await _accepted(h)
        try:
            first = asyncio.create_task(h.execute_update(CaseWorkflow.summon_more, more))
            assert await asyncio.to_thread(started.wait, 30)
            again = asyncio.create_task(h.execute_update(CaseWorkflow.summon_more, more))
            outcome = asyncio.create_task(h.execute_update(CaseWorkflow.record_outcome,
                                                           _outcome()))
            await asyncio.sleep(0.5)
            assert await _accepted(h) == accepted_before  # not even the first one yet
        finally:
            planning.set()
        await first
        for task, code in ((again, "already_summoned"), (outcome, "summonses_open")):
            with pytest.raises(WorkflowUpdateFailedError) as info:
                await task
            assert isinstance(info.value.cause, ApplicationError)
            assert info.value.cause.type == code
        s = await state(h)
        assert [x.department for x in s.summonses] == [POLICE, LAND]


async def _accepted(h: WorkflowHandle) -> int:
    return sum(e.HasField("workflow_execution_update_accepted_event_attributes")
               for e in (await h.fetch_history()).events)


async def test_steps_on_a_closed_case(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    """While the workflow of a closed case is still finishing (its last projection is
    held here), a step is refused with case_closed and leaves no trace. Once the workflow
    has completed there is no one to validate: on the time-skipping server the client gets
    RPCError NOT_FOUND ("update ... not found"), not a WorkflowUpdateFailedError."""
    acts = CaseActivities(engine, POLICY)
    hold = threading.Event()

    @activity.defn(name=ActivityName.PROJECT_CASE)
    def project_case(p: Projection) -> int:
        if p.state.status == CaseStatus.CLOSED:
            hold.wait(30)
        return acts.project_case(p)

    async with worker_on(time_env.client, engine, fresh_queue(), project_case) as worker:
        h = await cases.start(worker, [POLICE, JUSTICE])
        await report_in(h, POLICE)
        withdraw = await h.start_update(
            CaseWorkflow.record_outcome, _outcome(OutcomeKind.WITHDRAWN),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        assert (await state(h)).status == CaseStatus.CLOSED
        try:
            for update, arg in [
                (CaseWorkflow.report_in, _report(JUSTICE)),
                (CaseWorkflow.sign_off, _sign(POLICE)),
                (CaseWorkflow.return_summons,
                 ReturnSummons(actor=STAFF, department=POLICE, reason="x")),
                (CaseWorkflow.request_extension, await _extension(h, POLICE)),
                (CaseWorkflow.record_outcome, _outcome()),
                (CaseWorkflow.record_feedback,
                 RecordFeedback(actor=COORDINATOR, satisfaction=Satisfaction.SATISFIED)),
                (CaseWorkflow.close, CloseCase(actor=COORDINATOR, reason="x")),
                (CaseWorkflow.summon_more,
                 SummonMore(actor=COORDINATOR, departments=refs(engine, LAND))),
            ]:
                assert await rejected(h, update, arg) == "case_closed", update
        finally:
            hold.set()
        assert (await withdraw.result()).status == CaseStatus.CLOSED
        final = await h.result()
        assert final.close_reason == CloseReason.WITHDRAWN
        accepted = await accepted_updates(h)

        with pytest.raises(RPCError) as info:
            await report_in(h, JUSTICE)
        assert info.value.status == RPCStatusCode.NOT_FOUND
        assert await accepted_updates(h) == accepted
        assert await state(h) == final  # a completed case still answers queries


# --- return and re-dispatch ---------------------------------------------------------------


async def test_return_then_redispatch_summons_the_right_department_with_fresh_clocks(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, [POLICE, JUSTICE])
        await skip(time_env, hours=10)
        await return_summons(h, POLICE, reason="属民事纠纷，不属治安案件")
        s = await state(h)
        police = s.current(POLICE)
        assert police is not None and police.status == SummonsStatus.RETURNED
        assert police.return_reason == "属民事纠纷，不属治安案件"
        returned = one(events(s, EventKind.RETURNED))
        assert outbox_for(engine, s.case_id, returned.seq) == ["centre:xiaojinkou"]

        await redispatch(h, engine, POLICE, LAND)
        s = await state(h)
        now = s.events[-1].at
        assert [e.kind for e in events(s, after=returned.seq)] == [
            EventKind.REDISPATCHED, EventKind.SUMMONED]
        assert one(events(s, EventKind.REDISPATCHED)).data["to"] == LAND
        assert s.current(POLICE).redispatched_to == LAND  # type: ignore[union-attr]
        land = s.current(LAND)
        assert land is not None and (land.status, land.round) == (SummonsStatus.SUMMONED, 1)
        assert land.supervisor == "hc-land-office"
        assert abs(land.summoned_at - now) < timedelta(seconds=5)  # summoned just now
        assert land.report_in_due == land.summoned_at + 24 * H > police.report_in_due + 9 * H
        assert land.sign_off_due == land.summoned_at + 120 * H
        summoned = events(s, EventKind.SUMMONED, department=LAND)[0]
        assert outbox_for(engine, s.case_id, summoned.seq) == [f"department:{LAND}"]
        assert db_case(engine, s.case_id).departments == sorted([POLICE, JUSTICE, LAND])

        await report_in(h, LAND)  # the new department takes part as any other
        await sign_off(h, LAND)


async def test_returned_department_can_be_summoned_again_in_a_second_round(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, [POLICE, JUSTICE])
        await return_summons(h, POLICE)
        await skip(time_env, hours=5)
        await summon_more(h, engine, POLICE)
        s = await state(h)
        rounds = [(x.department, x.round, x.status) for x in s.summonses if x.department == POLICE]
        assert rounds == [(POLICE, 1, SummonsStatus.RETURNED), (POLICE, 2, SummonsStatus.SUMMONED)]
        await settle_all(h, POLICE)
        rows = [(x.department, x.round, x.status) for x in db_summonses(engine, s.case_id)]
        assert rows == [(JUSTICE, 1, "summoned"), (POLICE, 1, "returned"),
                        (POLICE, 2, "signed_off")]


# --- outcomes -----------------------------------------------------------------------------


async def test_withdrawn_cancels_open_summonses_and_closes(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, [POLICE, JUSTICE, LAND])
        await settle_all(h, LAND)
        await report_in(h, POLICE)
        result = await record_outcome(h, OutcomeKind.WITHDRAWN)
        assert result.status == CaseStatus.CLOSED
        final = await h.result()
    assert (final.close_reason, final.outcome.kind) == (  # type: ignore[union-attr]
        CloseReason.WITHDRAWN, OutcomeKind.WITHDRAWN)
    assert {x.department: x.status for x in final.summonses} == {
        POLICE: SummonsStatus.CANCELLED, JUSTICE: SummonsStatus.CANCELLED,
        LAND: SummonsStatus.SIGNED_OFF}
    assert not final.overdue
    assert {x.department: x.status for x in db_summonses(engine, final.case_id)} == {
        POLICE: "cancelled", JUSTICE: "cancelled", LAND: "signed_off"}
    row = db_case(engine, final.case_id)
    assert (row.status, row.close_reason, row.outcome_kind) == ("closed", "withdrawn", "withdrawn")


async def test_unresolved_at_town_raises_the_case_to_the_county_and_keeps_it_open(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, [POLICE])
        await settle_all(h, POLICE)
        result = await record_outcome(h, OutcomeKind.UNRESOLVED)
        assert (result.status, result.level) == (CaseStatus.OPEN, Level.COUNTY)
        s = await state(h)
        assert (s.level, s.owner, s.outcome, s.feedback_due) == (
            Level.COUNTY, "huicheng", None, None)
        assert [o.kind for o in s.outcomes] == [OutcomeKind.UNRESOLVED]
        raised = one(events(s, EventKind.ESCALATED))
        assert raised.data.items() >= {"action": "raise", "from_level": "town",
                                       "level": "county", "owner": "huicheng"}.items()
        assert outbox_for(engine, s.case_id, raised.seq) == ["centre:huicheng"]
        row = db_case(engine, s.case_id)
        assert (row.status, row.level, row.owner, row.outcome_kind) == (
            "open", "county", "huicheng", None)

        # the county centre summons its own department and settles the case
        await summon_more(h, engine, "hc-police")
        await settle_all(h, "hc-police")
        result = await record_outcome(h, OutcomeKind.MEDIATED_AGREEMENT)
        assert (result.status, result.level) == (CaseStatus.AWAITING_FEEDBACK, Level.COUNTY)


async def test_unresolved_at_the_city_is_flagged_and_awaits_feedback(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["hz-police"], level=Level.CITY)
        await settle_all(h, "hz-police")
        result = await record_outcome(h, OutcomeKind.UNRESOLVED)
        assert (result.status, result.level) == (CaseStatus.AWAITING_FEEDBACK, Level.CITY)
        s = await state(h)
        assert s.unresolved_at_top and s.owner == "huizhou"
        assert s.outcome is not None and s.outcome.kind == OutcomeKind.UNRESOLVED
        assert s.feedback_due is not None
        top = one(events(s, action="unresolved_at_top"))
        assert outbox_for(engine, s.case_id, top.seq) == ["centre:huizhou"]
        row = db_case(engine, s.case_id)
        assert (row.status, row.unresolved_at_top, row.outcome_kind) == (
            "awaiting_feedback", True, "unresolved")


# --- feedback and closing -----------------------------------------------------------------


async def test_unsatisfied_feedback_reopens_once_then_closes_unsatisfied(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, [POLICE])
        await settle_all(h, POLICE)
        await record_outcome(h, OutcomeKind.MEDIATED_AGREEMENT)
        result = await record_feedback(h, Satisfaction.UNSATISFIED)
        assert result.status == CaseStatus.OPEN
        s = await state(h)
        assert (s.status, s.reopen_count, s.outcome, s.feedback_due) == (
            CaseStatus.OPEN, 1, None, None)
        reopened = one(events(s, EventKind.REOPENED))
        assert reopened.data["reopen_count"] == 1
        feedback = one(events(s, EventKind.FEEDBACK))
        assert outbox_for(engine, s.case_id, feedback.seq) == ["centre:xiaojinkou"]
        row = db_case(engine, s.case_id)
        assert (row.status, row.reopen_count, row.outcome_kind) == ("open", 1, None)

        # a second round: the same department again, and one more
        await summon_more(h, engine, POLICE, JUSTICE)
        s = await state(h)
        assert s.current(POLICE).round == 2  # type: ignore[union-attr]
        await settle_all(h, POLICE, JUSTICE)
        await record_outcome(h, OutcomeKind.ADMINISTRATIVE_RESOLUTION)
        result = await record_feedback(h, Satisfaction.UNSATISFIED)
        assert result.status == CaseStatus.CLOSED
        final = await h.result()
    assert (final.close_reason, final.reopen_count) == (CloseReason.UNSATISFIED, 1)
    assert [o.kind for o in final.outcomes] == [
        OutcomeKind.MEDIATED_AGREEMENT, OutcomeKind.ADMINISTRATIVE_RESOLUTION]
    assert len(events(final, EventKind.REOPENED)) == 1
    assert db_case(engine, final.case_id).close_reason == "unsatisfied"


async def test_coordinator_closes_a_case_awaiting_feedback(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, [POLICE])
        await settle_all(h, POLICE)
        await record_outcome(h, OutcomeKind.REFERRED_TO_LITIGATION)
        await skip(time_env, days=2)
        result = await close(h)
        assert result.status == CaseStatus.CLOSED
        final = await h.result()
    assert final.close_reason == CloseReason.CLOSED_BY_COORDINATOR
    assert final.feedback is None
    closed = one(events(final, EventKind.CLOSED))
    assert (closed.actor, closed.data["reason"]) == (COORDINATOR, "closed_by_coordinator")
    assert closed.data["note"] == "当事人已签收协议"  # the coordinator's words are kept
    row = db_case(engine, final.case_id)
    assert (row.status, row.close_reason) == ("closed", "closed_by_coordinator")
