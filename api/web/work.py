"""Work lists: a department's inbox (soonest deadline first), what was escalated to a
supervisor's level, and the auditor's view of one case's history."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import col, select

from api import services
from api.access import Permission, can_read_inbox, case_scope, record_denial
from api.deps import ClientDep, EngineDep, SessionDep
from api.errors import not_found
from api.web.case_page import case_row
from api.web.cases import PAGE_SIZE, page_number
from api.web.core import CODE, Names, Viewer, allow, lang_of, render
from api.web.describe import warned_dues, was_warned
from audit.check import check_case
from audit.history import CaseNotFound, fetch_case
from audit.replay import CaseReplayer
from audit.timeline import case_timeline, reconstruct
from whistle.domain import Role
from whistle.models import CaseEventRecord, CaseRecord, Department

router = APIRouter(include_in_schema=False)


@router.get("/inbox")
def inbox(request: Request, session: SessionDep, who: Viewer) -> Response:
    """A department's open summonses, soonest deadline first; overdue and about-to-be-
    overdue marked, as are provisional deadlines (暂定). Staff see their own department;
    others name one (`?department=`) within the rules of the JSON inbox. (A case needing
    attention has no summons yet, so it is never in an inbox.)"""
    allow(request, session, who, Permission.INBOX_READ)
    department = who.department if who.role == Role.DEPARTMENT else \
        request.query_params.get("department", "")
    if not department or not CODE.match(department) or \
            session.get(Department, department) is None:
        raise not_found("department", (department or "")[:64])
    why = can_read_inbox(session, who, department)
    if why is not None:
        raise record_denial(session, who, request, Permission.INBOX_READ, why)
    page = page_number(request.query_params)
    result = services.inbox(session=session, department=department, limit=PAGE_SIZE,
                            offset=(page - 1) * PAGE_SIZE)
    last = max(1, -(-result.total // PAGE_SIZE))
    # 临期预警: the engine's early warning (the policy's warn_at share of a clock) marks a
    # summons as about to be overdue, as does less than a day left.
    case_ids = sorted({s.case_id for s in result.items})
    warnings = warned_dues(session.exec(select(CaseEventRecord).where(
        col(CaseEventRecord.case_id).in_(case_ids), CaseEventRecord.kind == "clock_warning",
        CaseEventRecord.department == department))) if case_ids else {}
    warned = {(s.case_id, s.department) for s in result.items
              if was_warned(warnings, s.case_id, s.department, s.next_due)}
    return render(request, "inbox.html", department=department, result=result, page=page,
                  last_page=last, warned=warned,
                  names=Names.load(session, lang_of(request)),
                  prev_url=f"/inbox?department={department}&page={page - 1}"
                  if page > 1 else None,
                  next_url=f"/inbox?department={department}&page={page + 1}"
                  if page < last else None)


@router.get("/escalated")
def escalated(request: Request, session: SessionDep, who: Viewer) -> Response:
    """Cases of my area standing at my level and not closed: what rose to me (or was
    opened here), with a take-over button on each case page."""
    allow(request, session, who, Permission.CASE_TAKE_OVER)
    scope = case_scope(who) & (col(CaseRecord.status) != "closed")
    page = page_number(request.query_params)
    result = services.list_cases(session=session, filters={"level": who.level}, scope=scope,
                                 limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    last = max(1, -(-result.total // PAGE_SIZE))
    return render(request, "escalated.html", result=result, page=page, last_page=last,
                  names=Names.load(session, lang_of(request)),
                  prev_url=f"/escalated?page={page - 1}" if page > 1 else None,
                  next_url=f"/escalated?page={page + 1}" if page < last else None)


@router.get("/cases/{case_id}/audit")
async def case_audit(request: Request, case_id: str, session: SessionDep, client: ClientDep,
                     engine: EngineDep, who: Viewer) -> Response:
    """The auditor's view: the replay verdict of every run, the read model cross-checked
    against history, and the timeline history proves (audit/, as /api/v1/audit)."""
    row = case_row(session, case_id)
    allow(request, session, who, Permission.AUDIT_READ, row)
    try:
        history = await fetch_case(client, case_id)
    except CaseNotFound as e:
        raise not_found("case", case_id) from e
    replay = await CaseReplayer().replay(history)
    check = await run_in_threadpool(check_case, engine, history)
    timeline = await run_in_threadpool(lambda: case_timeline(reconstruct(history)))
    return render(request, "audit.html", case=row, replay=replay, check=check,
                  timeline=timeline, names=Names.load(session, lang_of(request)))
