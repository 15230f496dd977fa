"""Case routes: open, list, read, and every step of the closed loop."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api import services
from api.access import (
    CaseLister,
    CaseOpener,
    CaseReader,
    Coordinator,
    FactAdder,
    Permission,
    SummonedStaff,
    TakingOver,
    can_place,
    can_read,
    case_scope,
    record_denial,
)
from api.deps import ClientDep, PolicyDep, SessionDep, SettingsDep, StepsDep
from api.schemas import (
    AddFactBody,
    ApplyPolicyBody,
    CaseDetail,
    CaseOut,
    CloseBody,
    ExtensionBody,
    ExtensionDecisionBody,
    FeedbackBody,
    OutcomeBody,
    Page,
    PendingOut,
    RecomputeBody,
    RedispatchBody,
    ReportInBody,
    RetryPlanningBody,
    ReturnBody,
    SignOffBody,
    StepOut,
    SummonBody,
    TakeOverBody,
)
from whistle.domain import (
    AddFact,
    ApplyPolicy,
    CaseIntake,
    CaseStatus,
    CloseCase,
    Code,
    DecideExtension,
    Level,
    RecomputeDeadlines,
    RecordFeedback,
    RecordOutcome,
    Redispatch,
    ReportIn,
    RequestExtension,
    RetryPlanning,
    ReturnSummons,
    SignOff,
    SummonMore,
    TakeOver,
)
from whistle.identity import Principal
from whistle.models import CaseRecord
from workflows.case import CaseWorkflow

router = APIRouter(prefix="/cases", tags=["cases"])

CaseId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="the case id")]
Dept = Annotated[Code, Path(description="the department code")]


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


@router.post("/{case_id}/summonses", response_model=StepOut)
async def summon(
    case_id: CaseId, body: SummonBody, session: SessionDep, steps: StepsDep, who: Coordinator
) -> StepOut:
    """吹哨: summon more departments."""
    refs = services.known_departments(session=session, codes=body.departments, field="departments")
    step = SummonMore(actor=who.username, departments=refs, reason=body.reason)
    return await steps.send(case_id, CaseWorkflow.summon_more, step)


@router.post("/{case_id}/summonses/{department}/report-in", response_model=StepOut)
async def report_in(
    case_id: CaseId,
    department: Dept,
    steps: StepsDep,
    who: SummonedStaff,
    body: ReportInBody | None = None,
) -> StepOut:
    """报到: the department acknowledges its summons."""
    step = ReportIn(actor=who.username, department=department, note=body.note if body else None)
    return await steps.send(case_id, CaseWorkflow.report_in, step)


@router.post("/{case_id}/summonses/{department}/sign-off", response_model=StepOut)
async def sign_off(
    case_id: CaseId, department: Dept, body: SignOffBody, steps: StepsDep, who: SummonedStaff
) -> StepOut:
    """签收意见/办结: the department states what it did and its opinion."""
    step = SignOff(actor=who.username, department=department, **body.model_dump())
    return await steps.send(case_id, CaseWorkflow.sign_off, step)


@router.post("/{case_id}/summonses/{department}/return", response_model=StepOut)
async def return_summons(
    case_id: CaseId, department: Dept, body: ReturnBody, steps: StepsDep, who: SummonedStaff
) -> StepOut:
    """退单: return a summons that is not this department's business."""
    step = ReturnSummons(actor=who.username, department=department, reason=body.reason)
    return await steps.send(case_id, CaseWorkflow.return_summons, step)


@router.post("/{case_id}/summonses/{department}/extension", response_model=StepOut)
async def request_extension(
    case_id: CaseId, department: Dept, body: ExtensionBody, steps: StepsDep, who: SummonedStaff
) -> StepOut:
    """延期申请: ask for a later sign-off deadline."""
    step = RequestExtension(actor=who.username, department=department, **body.model_dump())
    return await steps.send(case_id, CaseWorkflow.request_extension, step)


@router.post("/{case_id}/summonses/{department}/extension/decision", response_model=StepOut)
async def decide_extension(
    case_id: CaseId, department: Dept, body: ExtensionDecisionBody, steps: StepsDep,
    who: Coordinator,
) -> StepOut:
    """延期审批: approve or refuse a pending extension request."""
    step = DecideExtension(actor=who.username, department=department, **body.model_dump())
    return await steps.send(case_id, CaseWorkflow.decide_extension, step)


@router.post("/{case_id}/summonses/{department}/redispatch", response_model=StepOut)
async def redispatch(
    case_id: CaseId,
    department: Dept,
    body: RedispatchBody,
    session: SessionDep,
    steps: StepsDep,
    who: Coordinator,
) -> StepOut:
    """重新分拨: send a returned summons to another department."""
    [to] = services.known_departments(session=session, codes=[body.to], field="to")
    step = Redispatch(actor=who.username, department=department, to=to, reason=body.reason)
    return await steps.send(case_id, CaseWorkflow.redispatch, step)


@router.post("/{case_id}/outcome", response_model=StepOut)
async def record_outcome(
    case_id: CaseId, body: OutcomeBody, steps: StepsDep, who: Coordinator
) -> StepOut:
    """结果: record the outcome (mediated agreement, administrative resolution, referral to
    litigation/arbitration, withdrawn, unresolved)."""
    step = RecordOutcome(actor=who.username, **body.model_dump())
    return await steps.send(case_id, CaseWorkflow.record_outcome, step)


@router.post("/{case_id}/feedback", response_model=StepOut)
async def record_feedback(
    case_id: CaseId, body: FeedbackBody, steps: StepsDep, who: Coordinator
) -> StepOut:
    """评估反馈: the parties' rating; unsatisfied reopens the case once."""
    step = RecordFeedback(actor=who.username, **body.model_dump())
    return await steps.send(case_id, CaseWorkflow.record_feedback, step)


@router.post("/{case_id}/close", response_model=StepOut)
async def close(case_id: CaseId, body: CloseBody, steps: StepsDep, who: Coordinator) -> StepOut:
    """办结归档: close a case awaiting feedback without waiting longer."""
    step = CloseCase(actor=who.username, reason=body.reason)
    return await steps.send(case_id, CaseWorkflow.close, step)


@router.post("/{case_id}/policy", response_model=StepOut)
async def apply_policy(
    case_id: CaseId, body: ApplyPolicyBody, steps: StepsDep, who: Coordinator
) -> StepOut:
    """适用新版政策: move an open case to the policy in force now (recorded as a step;
    deadlines already set stand)."""
    step = ApplyPolicy(actor=who.username, reason=body.reason)
    return await steps.send(case_id, CaseWorkflow.apply_policy, step)


@router.post("/{case_id}/facts", response_model=StepOut)
async def add_fact(case_id: CaseId, body: AddFactBody, steps: StepsDep, who: FactAdder
                   ) -> StepOut:
    """核实情况: put a fact on the record (a site visit by the grid worker, a document)."""
    return await steps.send(case_id, CaseWorkflow.add_fact,
                            AddFact(actor=who.username, text=body.text))


@router.post("/{case_id}/take-over", response_model=StepOut)
async def take_over(case_id: CaseId, body: TakeOverBody, steps: StepsDep, who: TakingOver
                    ) -> StepOut:
    """上级接管: a supervisor takes charge of a case standing at their level; from then on
    they act on it as its coordinator."""
    return await steps.send(case_id, CaseWorkflow.take_over,
                            TakeOver(actor=who.username, reason=body.reason))


@router.post("/{case_id}/deadlines/recompute", response_model=StepOut)
async def recompute_deadlines(case_id: CaseId, steps: StepsDep, who: Coordinator,
                              body: RecomputeBody | None = None) -> StepOut:
    """期限重算: count the case's provisional (暂定) deadlines again on the calendar known
    now, after an official arrangement was added; what moved is recorded as a step, and a
    clock that already fired stays fired. 409 `nothing_provisional` or `deadlines_unchanged`
    when there is nothing to move."""
    return await steps.send(case_id, CaseWorkflow.recompute_deadlines,
                            RecomputeDeadlines(actor=who.username,
                                               reason=body.reason if body else None))


@router.post("/{case_id}/planning/retry", response_model=StepOut)
async def retry_planning(case_id: CaseId, steps: StepsDep, who: Coordinator,
                         body: RetryPlanningBody | None = None) -> StepOut:
    """恢复办理: retry the planning a case needing attention (需人工处理) waits for, once its
    cause is mended; on success the intake's departments are summoned. 409
    `planning_failed` (with the reason) when it fails again, `nothing_to_retry` when the
    case is not waiting."""
    return await steps.send(case_id, CaseWorkflow.retry_planning,
                            RetryPlanning(actor=who.username))
