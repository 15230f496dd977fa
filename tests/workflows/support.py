"""Steps, clock skipping, read-model look-ups and the rejection check shared by the case
workflow tests."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.case import CaseActivities
from tests.helpers import EXECUTOR, POLICY
from whistle.domain import (
    AddFact,
    CaseEvent,
    CaseState,
    CloseCase,
    DecideExtension,
    DepartmentRef,
    EventKind,
    OutcomeKind,
    RecordFeedback,
    RecordOutcome,
    Redispatch,
    ReportIn,
    RequestExtension,
    ReturnSummons,
    Satisfaction,
    SignOff,
    StepResult,
    SummonMore,
    TakeOver,
)
from whistle.models import CaseEventRecord, CaseRecord, OutboxMessage, SummonsRecord
from whistle.reference import department_refs
from workflows.case import CaseWorkflow

STAFF = "dept-staff-1"
COORDINATOR = "coordinator-1"
AGREEMENT = "双方同意按原转让协议继续履行，甲方补偿乙方人民币两万元。"

# A clock fires a few milliseconds after its due time (the workflow task's start time).
SLACK = timedelta(seconds=5)
# Skip a little past a due time, so the timer, its workflow task and the projection are done.
MARGIN = timedelta(minutes=1)


# --- time ---------------------------------------------------------------------------------


async def skip(env: WorkflowEnvironment, **delta: float) -> None:
    """Let simulated time pass (never real waiting)."""
    await env.sleep(timedelta(**delta))


async def skip_past(env: WorkflowEnvironment, when: datetime) -> None:
    """Let simulated time pass until just after `when`."""
    now = await env.get_current_time()
    assert when > now, f"{when} is already past ({now})"
    await env.sleep(when - now + MARGIN)


def assert_at(event: CaseEvent, expected: datetime) -> None:
    assert abs(event.at - expected) <= SLACK, f"{event.kind} at {event.at}, expected {expected}"


# --- workers ------------------------------------------------------------------------------


def worker_on(client: Client, engine: Engine, task_queue: str, *activities: Any,
              **options: Any) -> Worker:
    """A worker like `tests.helpers.new_worker`, on a given task queue; `activities`
    replace the standard ones of the same name; `options` go to `Worker`."""
    acts = CaseActivities(engine, POLICY)
    standard = {f.__temporal_activity_definition.name: f  # type: ignore[attr-defined]
                for f in acts.all()}
    for f in activities:
        standard[f.__temporal_activity_definition.name] = f
    return Worker(client, task_queue=task_queue, workflows=[CaseWorkflow],
                  activities=list(standard.values()), activity_executor=EXECUTOR, **options)


def fresh_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"


# --- steps --------------------------------------------------------------------------------


async def state(h: WorkflowHandle) -> CaseState:
    return await h.query(CaseWorkflow.state)


def refs(engine: Engine, *codes: str) -> list[DepartmentRef]:
    with Session(engine) as session:
        found, unknown = department_refs(session, list(codes))
    assert not unknown
    return found


async def report_in(h: WorkflowHandle, dept: str) -> StepResult:
    return await h.execute_update(CaseWorkflow.report_in,
                                  ReportIn(actor=STAFF, department=dept, note="已到场"))


async def sign_off(h: WorkflowHandle, dept: str) -> StepResult:
    return await h.execute_update(CaseWorkflow.sign_off, SignOff(
        actor=STAFF, department=dept, opinion="同意调解方案", actions_taken="现场核实并参与调解"))


async def return_summons(h: WorkflowHandle, dept: str, reason: str = "不属本部门职责"
                         ) -> StepResult:
    return await h.execute_update(CaseWorkflow.return_summons,
                                  ReturnSummons(actor=STAFF, department=dept, reason=reason))


async def request_extension(h: WorkflowHandle, dept: str, new_deadline: datetime) -> StepResult:
    return await h.execute_update(CaseWorkflow.request_extension, RequestExtension(
        actor=STAFF, department=dept, new_deadline=new_deadline, reason="需等待测绘结果"))


async def decide_extension(h: WorkflowHandle, dept: str, approve: bool) -> StepResult:
    return await h.execute_update(CaseWorkflow.decide_extension, DecideExtension(
        actor=COORDINATOR, department=dept, approve=approve))


async def summon_more(h: WorkflowHandle, engine: Engine, *codes: str) -> StepResult:
    return await h.execute_update(CaseWorkflow.summon_more,
                                  SummonMore(actor=COORDINATOR, departments=refs(engine, *codes)))


async def redispatch(h: WorkflowHandle, engine: Engine, dept: str, to: str) -> StepResult:
    [target] = refs(engine, to)
    return await h.execute_update(CaseWorkflow.redispatch, Redispatch(
        actor=COORDINATOR, department=dept, to=target, reason="改派"))


async def record_outcome(h: WorkflowHandle, kind: OutcomeKind = OutcomeKind.MEDIATED_AGREEMENT,
                         agreement_text: str | None = AGREEMENT) -> StepResult:
    if kind != OutcomeKind.MEDIATED_AGREEMENT and agreement_text == AGREEMENT:
        agreement_text = None
    return await h.execute_update(CaseWorkflow.record_outcome, RecordOutcome(
        actor=COORDINATOR, kind=kind, summary="调解结果", agreement_text=agreement_text))


async def record_feedback(h: WorkflowHandle, satisfaction: Satisfaction) -> StepResult:
    return await h.execute_update(CaseWorkflow.record_feedback,
                                  RecordFeedback(actor=COORDINATOR, satisfaction=satisfaction))


async def close(h: WorkflowHandle) -> StepResult:
    return await h.execute_update(CaseWorkflow.close,
                                  CloseCase(actor=COORDINATOR, reason="当事人已签收协议"))


async def add_fact(h: WorkflowHandle, text: str = "网格员现场核实：地界桩已移位") -> StepResult:
    return await h.execute_update(CaseWorkflow.add_fact, AddFact(actor="grid-1", text=text))


async def take_over(h: WorkflowHandle, supervisor: str = "supervisor-1") -> StepResult:
    return await h.execute_update(CaseWorkflow.take_over,
                                  TakeOver(actor=supervisor, reason="上级接管"))


async def settle_all(h: WorkflowHandle, *depts: str) -> None:
    """Every department reports in and signs off."""
    for d in depts:
        await report_in(h, d)
    for d in depts:
        await sign_off(h, d)


# --- reading the timeline -----------------------------------------------------------------


def events(s: CaseState, kind: EventKind | None = None, *, department: str | None = None,
           action: str | None = None, after: int = 0) -> list[CaseEvent]:
    return [e for e in s.events
            if e.seq > after
            and (kind is None or e.kind == kind)
            and (department is None or e.department == department)
            and (action is None or e.data.get("action") == action)]


def one(found: list[CaseEvent]) -> CaseEvent:
    assert len(found) == 1, found
    return found[0]


# --- the read model -----------------------------------------------------------------------


def db_case(engine: Engine, case_id: str) -> CaseRecord:
    with Session(engine) as session:
        row = session.get(CaseRecord, case_id)
        assert row is not None
        return row


def db_summonses(engine: Engine, case_id: str) -> list[SummonsRecord]:
    with Session(engine) as session:
        return list(session.exec(select(SummonsRecord).where(SummonsRecord.case_id == case_id)
                                 .order_by(col(SummonsRecord.department),
                                           col(SummonsRecord.round))))


def db_events(engine: Engine, case_id: str) -> list[CaseEventRecord]:
    with Session(engine) as session:
        return list(session.exec(select(CaseEventRecord).where(
            CaseEventRecord.case_id == case_id).order_by(col(CaseEventRecord.seq))))


def db_outbox(engine: Engine, case_id: str) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id)
                                 .order_by(col(OutboxMessage.seq))))


def outbox_for(engine: Engine, case_id: str, seq: int) -> list[str]:
    return [m.recipient for m in db_outbox(engine, case_id) if m.seq == seq]


# --- rejections ---------------------------------------------------------------------------


async def accepted_updates(h: WorkflowHandle) -> list[str]:
    """The names of the Updates the history accepted, in order."""
    history = await h.fetch_history()
    return [e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]


# What a refused Update may leave in history: the time-skipping server records the workflow
# task that ran the validator (a real server drops that speculative task); nothing else.
_TASK_ONLY = {EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
              EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
              EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED}


async def rejected(h: WorkflowHandle, update: Any, arg: Any) -> str:
    """Send a step that must be refused; return its code after checking it left no trace:
    no Update admitted, accepted or completed in history (nor any activity, timer or other
    command), the state (and so its timeline) unchanged."""
    history_before = (await h.fetch_history()).events
    before = await state(h)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(update, arg)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.non_retryable
    history_after = (await h.fetch_history()).events
    assert list(history_after[: len(history_before)]) == list(history_before)
    added = [EventType.Name(e.event_type) for e in history_after[len(history_before):]]
    assert {EventType.Value(n) for n in added} <= _TASK_ONLY, added
    after = await state(h)
    assert len(after.events) == len(before.events)
    assert after == before
    assert cause.type is not None
    return cause.type
