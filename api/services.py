"""What the routes do, as keyword-only functions: resolve an intake, open a case, run a
step on its workflow, read the read model."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, or_
from sqlmodel import Session, col, select
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError, invalid, not_found
from api.schemas import CaseDetail, CaseOut, EventOut, InboxItem, Page, SummonsOut
from whistle.domain import (
    CaseIntake,
    CaseStart,
    CaseState,
    DepartmentRef,
    Level,
    OpenedResult,
    StepResult,
    workflow_id,
)
from whistle.models import CaseEventRecord, CaseRecord, Jurisdiction, SummonsRecord
from whistle.policy import Policy
from whistle.reference import LookupFailed, Placement, department_refs, place, route
from whistle.settings import Settings
from workflows.case import CaseWorkflow


def case_id_for(external_ref: str | None) -> str:
    """A stable id for an external reference (so a repeat finds the same workflow),
    else a fresh one."""
    if external_ref is None:
        return uuid.uuid4().hex[:16]
    return hashlib.sha256(external_ref.encode()).hexdigest()[:16]


def resolve_intake(*, session: Session, policy: Policy, intake: CaseIntake, actor: str
                   ) -> CaseState:
    """Check the intake against reference data and build the new case's state: where it
    sits, which centre owns it, which departments are summoned."""
    try:
        where = place(session, intake.category, intake.location, intake.level)
    except LookupFailed as e:
        raise invalid(e.field, e.message) from e
    refs = _departments(session, policy, intake, where)
    start = CaseStart(case_id=case_id_for(intake.external_ref), request_id=uuid.uuid4().hex,
                      actor=actor, intake=intake, path=where.path, departments=refs,
                      repeat_of=repeats(session=session, policy=policy, intake=intake,
                                        where=where))
    return CaseState(start=start, level=where.level, owner=where.owner)


REPEAT_LINKS = 20


def repeats(*, session: Session, policy: Policy, intake: CaseIntake, where: Placement
            ) -> list[str]:
    """重复纠纷: cases opened within the policy's window at the same place, or naming one of
    the same parties, in the intake's town (its county when it sits higher), newest first.

    The database does the narrowing: the area (an indexed path prefix), the window, and the
    place or a party's name appearing in the parties' JSON text. Only those few rows are
    decoded, to confirm the name is a party's whole name and not part of another."""
    days = policy.spec.repeat_window_days
    if days == 0:
        return []
    area = [n.code for n in where.path if n.level.rank <= Level.TOWN.rank]
    prefix = "/" + "/".join(area) + "/"
    names = {p.name for p in intake.parties}
    since = datetime.now(UTC) - timedelta(days=days)
    text = cast(CaseRecord.parties, String)
    mentions = [text.contains(form, autoescape=True)
                for name in names for form in {name, json.dumps(name)[1:-1]}]
    q = (select(CaseRecord.case_id, CaseRecord.location, CaseRecord.parties)
         .where(col(CaseRecord.jurisdiction_path).startswith(prefix),
                col(CaseRecord.opened_at) >= since,
                or_(CaseRecord.location == intake.location, *mentions))
         .order_by(col(CaseRecord.opened_at).desc(), col(CaseRecord.case_id))
         .limit(REPEAT_LINKS * 5))
    itself = case_id_for(intake.external_ref) if intake.external_ref is not None else None
    found = []
    for case_id, location, parties in session.exec(q):
        if case_id == itself:
            continue
        if location == intake.location or names & {str(p.get("name", ""))
                                                    for p in parties or []}:
            found.append(case_id)
            if len(found) == REPEAT_LINKS:
                break
    return found


def _departments(session: Session, policy: Policy, intake: CaseIntake, where: Placement
                 ) -> list[DepartmentRef]:
    if intake.departments is None:
        lead, co = policy.departments(intake.category, where.level)
        return route(session, lead, co, where.owner_path)
    if len(set(intake.departments)) != len(intake.departments):
        raise invalid("departments", "a department is listed twice")
    return known_departments(session=session, codes=intake.departments, field="departments")


def known_departments(*, session: Session, codes: list[str], field: str) -> list[DepartmentRef]:
    """Refs for `codes`, or a 422 naming the unknown ones."""
    refs, unknown = department_refs(session, codes)
    if unknown:
        raise invalid(field, "unknown department(s): " + ", ".join(unknown))
    return refs


def case_by_ref(*, session: Session, external_ref: str) -> str | None:
    """The id of the case opened with `external_ref`, if any."""
    q = select(CaseRecord.case_id).where(CaseRecord.external_ref == external_ref)
    return session.exec(q).first()


async def open_case(*, client: Client, settings: Settings, state: CaseState) -> bool:
    """Start the case workflow, or attach to the one already there; True if this call
    created it. Returns once the case is in the read model."""
    start = WithStartWorkflowOperation(
        CaseWorkflow.run, state, id=workflow_id(state.case_id), task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    wait = settings.step_timeout_seconds
    try:
        # rpc_timeout bounds one call; the SDK polls again while the update is accepted but
        # not finished (its projection retrying through a database outage), so the whole
        # wait is bounded here too.
        async with asyncio.timeout(wait):
            result: OpenedResult = await client.execute_update_with_start_workflow(
                CaseWorkflow.opened, start_workflow_operation=start,
                rpc_timeout=timedelta(seconds=wait),
            )
    except WorkflowAlreadyStartedError:
        return False  # the case ran and closed already: the read model has it
    except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError) as e:
        raise CasePending(state.case_id) from e
    return result.request_id == state.start.request_id


class CasePending(Exception):
    """The case workflow was started (durably) but no worker has opened it yet."""

    def __init__(self, case_id: str) -> None:
        super().__init__(case_id)
        self.case_id = case_id


async def run_step(*, client: Client, session: Session, case_id: str, update: Any, arg: Any,
                   timeout: float) -> StepResult:
    """Send one step to the case's workflow; a rejection becomes 409 with its reason."""
    handle = client.get_workflow_handle(workflow_id(case_id))
    try:
        # Bounded as a whole, not only per call: once the workflow has accepted the step
        # the SDK keeps polling for its result (which waits for the read model).
        async with asyncio.timeout(timeout):
            result: StepResult = await handle.execute_update(
                update, arg, rpc_timeout=timedelta(seconds=timeout))
        return result
    except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError) as e:
        raise ApiError(504, "step_pending",
                       f"the case engine did not answer within {timeout:g} s; the step may "
                       "still be applied when it does. Check the case before repeating it "
                       "(a repeated step that already happened is refused, never doubled)."
                       ) from e
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError):
            raise ApiError(409, cause.type or "step_rejected", cause.message) from e
        raise
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise unavailable(e) from e
        if session.get(CaseRecord, case_id) is not None:
            raise ApiError(409, "case_closed", "the case is closed") from e
        raise not_found("case", case_id) from e


def unavailable(e: RPCError) -> ApiError:
    """The engine could not be reached. The connection may have dropped after the workflow
    took the step, so this does not claim nothing was recorded: a repeat is safe, since a
    step that already happened is refused, never doubled."""
    return ApiError(503, "case_unavailable",
                    f"the case engine could not be reached ({e.message}); the step may or "
                    "may not have been applied. Check the case, or repeat the step: one "
                    "that already happened is refused, never doubled")


def case_detail(*, session: Session, settings: Settings, case_id: str) -> CaseDetail:
    """The case with its summonses and timeline, from the read model."""
    row = session.get(CaseRecord, case_id)
    if row is None:
        raise not_found("case", case_id)
    summonses = session.exec(select(SummonsRecord).where(SummonsRecord.case_id == case_id)
                             .order_by(col(SummonsRecord.summoned_at), col(SummonsRecord.round)))
    events = session.exec(select(CaseEventRecord).where(CaseEventRecord.case_id == case_id)
                          .order_by(col(CaseEventRecord.seq)))
    wid = workflow_id(case_id)
    timeline = [EventOut.model_validate(e, from_attributes=True) for e in events]
    return CaseDetail(
        **row.model_dump(), workflow_id=wid,
        temporal_ui_url=f"{settings.temporal_ui_url}/namespaces/"
                        f"{settings.temporal_namespace}/workflows/{wid}",
        summonses=[SummonsOut.model_validate(s, from_attributes=True) for s in summonses],
        timeline=timeline,
        repeat_of=next((list(e.data.get("repeat_of", [])) for e in timeline
                        if e.kind == "opened"), []),
    )


def list_cases(*, session: Session, filters: dict[str, Any], scope: ColumnElement[bool],
               limit: int, offset: int) -> Page[CaseOut]:
    """Cases within `scope` (what the caller may read) matching `filters` (status, level,
    category, department, jurisdiction, overdue, provisional, attention), newest first."""
    q = select(CaseRecord).where(scope)
    for name in ("status", "level", "category"):
        if filters.get(name) is not None:
            q = q.where(getattr(CaseRecord, name) == filters[name])
    if filters.get("overdue") is not None:
        q = q.where(CaseRecord.overdue == filters["overdue"])
    if filters.get("provisional") is not None:
        q = q.where(CaseRecord.provisional == filters["provisional"])
    if filters.get("attention") is not None:
        needs = col(CaseRecord.attention).is_not(None)
        q = q.where(needs if filters["attention"] else ~needs)
    if filters.get("department") is not None:
        summoned = select(SummonsRecord.case_id).where(
            SummonsRecord.department == filters["department"])
        q = q.where(col(CaseRecord.case_id).in_(summoned))
    if filters.get("jurisdiction") is not None:
        node = session.get(Jurisdiction, filters["jurisdiction"])
        if node is None:
            raise invalid("jurisdiction", f"unknown jurisdiction {filters['jurisdiction']!r}")
        q = q.where(col(CaseRecord.jurisdiction_path).startswith(node.path))
    total = session.exec(select(func.count()).select_from(q.subquery())).one()
    rows = session.exec(q.order_by(col(CaseRecord.opened_at).desc(), col(CaseRecord.case_id))
                        .limit(limit).offset(offset))
    return Page(items=[CaseOut.model_validate(r, from_attributes=True) for r in rows],
                total=total, limit=limit, offset=offset)


def inbox(*, session: Session, department: str, limit: int, offset: int) -> Page[InboxItem]:
    """A department's open summonses, soonest deadline first."""
    q = (select(SummonsRecord, CaseRecord)
         .join(CaseRecord, col(CaseRecord.case_id) == col(SummonsRecord.case_id))
         .where(SummonsRecord.department == department,
                col(SummonsRecord.status).in_(["summoned", "reported_in"])))
    total = session.exec(select(func.count()).select_from(q.subquery())).one()
    rows = session.exec(q.order_by(col(SummonsRecord.next_due), col(SummonsRecord.case_id))
                        .limit(limit).offset(offset))
    items = [
        InboxItem(**SummonsOut.model_validate(s, from_attributes=True).model_dump(),
                  case_id=c.case_id, case_title=c.title, case_category=c.category,
                  case_level=c.level)
        for s, c in rows
    ]
    return Page(items=items, total=total, limit=limit, offset=offset)
