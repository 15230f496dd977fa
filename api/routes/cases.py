"""Case routes: open, list, read, and every step of the closed loop."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api import services
from api.access import (
    CaseLister,
    CaseOpener,
    CaseReader,
    Permission,
    can_place,
    can_read,
    case_scope,
    record_denial,
)
from api.deps import ClientDep, PolicyDep, SessionDep, SettingsDep
from api.schemas import CaseDetail, CaseOut, Page, PendingOut
from api.steps import CaseId, add_step_routes
from whistle.domain import CaseIntake, CaseStatus, Code, Level
from whistle.identity import Principal
from whistle.models import CaseRecord

router = APIRouter(prefix="/cases", tags=["cases"])


@router.post(
    "",
    status_code=201,
    response_model=CaseDetail,
    responses={
        200: {"model": CaseDetail, "description": "the case already existed"},
        202: {"model": PendingOut, "description": "recorded; opens when the engine takes it"},
    },
)
async def open_case(
    body: CaseIntake,
    request: Request,
    response: Response,
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    policy: PolicyDep,
    who: CaseOpener,
) -> CaseDetail:
    """受理: open a case and blow the whistle. A repeated `external_ref` returns the existing
    case with 200."""
    if body.external_ref is not None:
        existing = await run_in_threadpool(
            services.case_by_ref, session=session, external_ref=body.external_ref
        )
        if existing is not None:
            await run_in_threadpool(_may_read, session, request, who, existing)
            response.status_code = 200
            return services.case_detail(session=session, settings=settings, case_id=existing)
    state = await run_in_threadpool(
        services.resolve_intake, session=session, policy=policy, intake=body, actor=who.username
    )
    why = can_place(who, [n.code for n in state.start.path], state.owner)
    if why is not None:
        raise await run_in_threadpool(record_denial, session, who, request,
                                      Permission.CASE_OPEN, why)
    try:
        created = await services.open_case(client=client, settings=settings, state=state)
    except services.CasePending as e:
        return JSONResponse(
            status_code=202,
            content={  # type: ignore[return-value]
                "case_id": e.case_id,
                "code": "case_pending",
                "message": "the case is recorded and opens as soon as the case engine takes it; "
                "repeat the request with the same external_ref to fetch it",
            },
        )
    if not created:
        response.status_code = 200
    session.expire_all()
    return await run_in_threadpool(
        services.case_detail, session=session, settings=settings, case_id=state.case_id
    )


def _may_read(session: Session, request: Request, who: Principal, case_id: str) -> None:
    """A repeated external_ref answers with the case only to someone who may read it."""
    row = session.get(CaseRecord, case_id)
    why = can_read(who, row) if row is not None else None
    if why is not None:
        raise record_denial(session, who, request, Permission.CASE_READ, why, case_id)


@router.get("", response_model=Page[CaseOut])
def list_cases(
    session: SessionDep,
    who: CaseLister,
    status: CaseStatus | None = None,
    level: Level | None = None,
    category: Code | None = None,
    department: Code | None = None,
    jurisdiction: Annotated[Code | None, Query(description="this node and below")] = None,
    overdue: bool | None = None,
    provisional: Annotated[bool | None, Query(description="a running clock's due is "
                                              "provisional (暂定)")] = None,
    attention: Annotated[bool | None, Query(description="needs attention (需人工处理)")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[CaseOut]:
    """The cases the caller may read, newest first, filtered and paginated."""
    filters = dict(
        status=status,
        level=level,
        category=category,
        department=department,
        jurisdiction=jurisdiction,
        overdue=overdue,
        provisional=provisional,
        attention=attention,
    )
    return services.list_cases(session=session, filters=filters, scope=case_scope(who),
                               limit=limit, offset=offset)


@router.get("/{case_id}", response_model=CaseDetail)
def get_case(case_id: CaseId, session: SessionDep, settings: SettingsDep, who: CaseReader
             ) -> CaseDetail:
    """One case: state, summonses with both clocks, level, timeline."""
    return services.case_detail(session=session, settings=settings, case_id=case_id)


# 吹哨, 报到, 签收意见, 退单, 延期, 结果, 评估反馈, 办结归档, …: one route per step of the
# catalogue (whistle/steps.py), each with its own body, guard and description.
add_step_routes(router)
