"""The case page (summons board with both clocks, escalation ladder, timeline, the actions
that fit the state and the user) and every step's form. A step goes through
`api.deps.Steps`, as in api/routes/cases.py, so idempotency and refusals are the same."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, select
from starlette.datastructures import FormData

from api import services
from api.access import Permission
from api.deps import PolicyDep, SessionDep, SettingsDep, StepsDep
from api.errors import ApiError, not_found
from api.schemas import (
    AddFactBody,
    CloseBody,
    ExtensionBody,
    ExtensionDecisionBody,
    FeedbackBody,
    OutcomeBody,
    RecomputeBody,
    RedispatchBody,
    ReportInBody,
    RetryPlanningBody,
    ReturnBody,
    SignOffBody,
    SummonBody,
    TakeOverBody,
)
from api.web.core import (
    CASE_ID,
    CODE,
    Names,
    Viewer,
    allow,
    field_errors,
    lang_of,
    may,
    posted,
    render,
    text,
)
from api.web.describe import duration, refusal_text, warned_dues, was_warned
from api.web.i18n import N_, gettext
from whistle.domain import (
    AddFact,
    CloseCase,
    DecideExtension,
    OutcomeKind,
    RecomputeDeadlines,
    RecordFeedback,
    RecordOutcome,
    Redispatch,
    ReportIn,
    RequestExtension,
    RetryPlanning,
    ReturnSummons,
    Satisfaction,
    SignOff,
    SummonMore,
    TakeOver,
)
from whistle.identity import Principal
from whistle.models import CaseRecord, Department
from whistle.policy import Policy
from workflows.case import RETRY_PLANNING, CaseWorkflow

router = APIRouter(include_in_schema=False)


def case_row(session: Session, case_id: str) -> CaseRecord:
    """The case, or 404 (an id that cannot be one is simply not found)."""
    row = session.get(CaseRecord, case_id) if CASE_ID.match(case_id) else None
    if row is None:
        raise not_found("case", case_id[:16])
    return row


@router.get("/cases/{case_id}")
def case_page(request: Request, case_id: str, session: SessionDep, settings: SettingsDep,
              policy: PolicyDep, who: Viewer) -> Response:
    """One case: summons board, ladder, timeline and the actions I may take."""
    row = case_row(session, case_id)
    allow(request, session, who, Permission.CASE_READ, row)
    return show_case(request, session, settings, policy, who, row)


def show_case(request: Request, session: Session, settings: Any, policy: Policy,
              who: Principal, row: CaseRecord, *, status_code: int = 200,
              form: str | None = None, values: dict[str, Any] | None = None,
              errors: dict[str, str] | None = None, rejected: str | None = None) -> Response:
    """Render the case page; after a failed step, `form` names the form to show again with
    the `values` typed, the field `errors` and the workflow's `rejected` reason."""
    detail = services.case_detail(session=session, settings=settings, case_id=row.case_id)
    lang = lang_of(request)
    try:
        ladder = policy.for_category(row.category).ladder
    except (KeyError, ValueError):
        ladder = []
    taken = {e.data.get("action") for e in detail.timeline if e.kind == "escalated"} | \
        {s.escalation for s in detail.summonses if s.escalation}
    names = Names.load(session, lang)
    warnings = warned_dues(detail.timeline)
    warned = {s.department for s in detail.summonses
              if was_warned(warnings, "", s.department,
                            s.report_in_due if s.status == "summoned" else s.sign_off_due)}
    mine = who.department if may(who, Permission.SUMMONS_ACT, row, who.department) else None
    coordinate = may(who, Permission.CASE_COORDINATE, row)
    going = row.status != "closed"
    can = {
        "coordinate": coordinate,
        # 恢复办理 and 期限重算: what the case engine would accept (its validators decide)
        "retry": coordinate and going and row.attention is not None,
        "recompute": coordinate and going and has_provisional(detail),
        "take_over": may(who, Permission.CASE_TAKE_OVER, row) and row.status != "closed"
        and row.taken_over_by is None,
        "add_fact": may(who, Permission.CASE_ADD_FACT, row) and row.status != "closed",
        "audit": may(who, Permission.AUDIT_READ),
    }
    # Opened, but its planning failed: the flash must not say the departments are summoned.
    flash = gettext(lang, ATTENTION_FLASH) if row.attention is not None and \
        request.query_params.get("done") == "opened" else None
    return render(request, "case.html", status_code=status_code, case=detail,
                  retry_every=duration(lang, RETRY_PLANNING.total_seconds() / 3600),
                  **({"flash": flash} if flash else {}),
                  names=names, ladder=ladder, taken=taken, can=can, warned=warned,
                  choices=department_choices(session, row, names),
                  mine=mine, form=form, values=values or {}, errors=errors or {},
                  rejected=rejected, outcome_kinds=list(OutcomeKind),
                  satisfactions=list(Satisfaction))


ATTENTION_FLASH = N_("The case is recorded, but no department is summoned yet: it needs "
                     "attention (see below).")


def has_provisional(detail: Any) -> bool:
    """A deadline still to be met rests on a provisional calendar (暂定): what 期限重算 can
    move (a summons' clocks still running or to run, or the feedback clock)."""
    if detail.provisional or (detail.status == "awaiting_feedback"
                              and detail.feedback_due_provisional):
        return True
    return any((s.status == "summoned" and s.report_in_provisional)
               or (s.status in ("summoned", "reported_in") and s.sign_off_provisional)
               for s in detail.summonses)


def department_choices(session: Session, row: CaseRecord, names: Names
                       ) -> list[tuple[str, str]]:
    """(code, "place · name") of every department for the summon and re-dispatch pickers:
    the units on the case's own path first (its village, town, county, city: nearest first),
    then the others by place."""
    path = [c for c in row.jurisdiction_path.strip("/").split("/") if c]
    rank = {code: len(path) - i for i, code in enumerate(path)}  # nearest: 1

    def key(d: Department) -> tuple[int, str, str]:
        return rank.get(d.jurisdiction, len(path) + 1), names.place(d.jurisdiction), d.code

    return [(d.code, f"{names.place(d.jurisdiction)} · {names.department(d.code)}")
            for d in sorted(session.exec(select(Department)), key=key)]


# --- steps ---------------------------------------------------------------------------------

Build = Callable[[FormData, Principal, Session], tuple[Any, Any]]


def _fields(form: FormData, *names: str) -> dict[str, Any]:
    """The named text fields that are not empty (an empty one is then "missing")."""
    return {n: v for n in names if (v := text(form, n)) is not None}


async def run_step(request: Request, case_id: str, department: str | None, form_name: str,
                   permission: Permission, build: Build, session: Session, settings: Any,
                   policy: Policy, steps: Any, who: Principal) -> Response:
    """CSRF, permission, validation, then the step; any refusal re-renders the case page
    with the form as typed and the reason next to the field or above the form."""
    form = await posted(request)
    row = case_row(session, case_id)
    if department is not None and not CODE.match(department):
        raise not_found("department", department[:64])
    allow(request, session, who, permission, row, department)
    lang = lang_of(request)
    values = {k: v for k, v in form.multi_items() if k != "csrf_token" and isinstance(v, str)}
    values["departments"] = form.getlist("departments")  # type: ignore[assignment]
    form_key = f"{form_name}:{department}" if department else form_name

    async def again(status: int, errors: dict[str, str] | None = None,
                    rejected: str | None = None) -> Response:
        session.expire_all()
        return await run_in_threadpool(
            lambda: show_case(request, session, settings, policy, who, row, status_code=status,
                              form=form_key, values=values, errors=errors, rejected=rejected))

    try:
        update, arg = build(form, who, session)
    except ValidationError as e:
        return await again(422, errors=field_errors(lang, e))
    except ApiError as e:  # an unknown department in the form
        if e.status != 422:
            raise
        message = gettext(lang, "This value is not valid.")
        return await again(422, errors={e.field or "form": message})
    try:
        await steps.send(case_id, update, arg)
    except ApiError as e:
        if e.status == 409:
            return await again(409, rejected=refusal_text(lang, 409, e.code, e.message,
                                                          Names.empty()))
        raise
    anchor = f"#summons-{department}" if department else ""
    return RedirectResponse(f"/cases/{case_id}?done=step{anchor}", status_code=303)


def _dept(department: str) -> Callable[[type[Any], type[Any], Any], Build]:
    """A builder for a department step: validate the JSON API's body, make the message."""
    def make(body: type[Any], message: type[Any], update: Any) -> Build:
        names = list(body.model_fields)

        def build(form: FormData, who: Principal, session: Session) -> tuple[Any, Any]:
            fields = _fields(form, *names)
            data = body(**fields).model_dump()
            return update, message(actor=who.username, department=department, **data)
        return build
    return make


def _deadline(form: FormData, tz: str) -> dict[str, Any]:
    """The extension form's fields; a `datetime-local` value is read in the deployment's
    zone (the browser sends none)."""
    fields = _fields(form, "reason")
    raw = text(form, "new_deadline")
    if raw is not None:
        try:
            when = datetime.fromisoformat(raw)
            fields["new_deadline"] = when if when.tzinfo else when.replace(tzinfo=ZoneInfo(tz))
        except ValueError:
            fields["new_deadline"] = raw  # the model refuses it, naming the field
    return fields


DEPARTMENT_STEPS: dict[str, tuple[type[Any], type[Any], Any]] = {
    "report-in": (ReportInBody, ReportIn, CaseWorkflow.report_in),
    "sign-off": (SignOffBody, SignOff, CaseWorkflow.sign_off),
    "return": (ReturnBody, ReturnSummons, CaseWorkflow.return_summons),
}


@router.post("/cases/{case_id}/summonses/{department}/{step}")
async def department_step(request: Request, case_id: str, department: str, step: str,
                          session: SessionDep, settings: SettingsDep, policy: PolicyDep,
                          steps: StepsDep, who: Viewer) -> Response:
    """报到 / 签收意见 / 退单 / 延期申请 by the summoned department's staff; 延期审批 and
    重新分拨 by the coordinator."""
    if step in DEPARTMENT_STEPS:
        build = _dept(department)(*DEPARTMENT_STEPS[step])
        permission = Permission.SUMMONS_ACT
    elif step == "extension":
        def build(form: FormData, who: Principal, session: Session) -> tuple[Any, Any]:
            body = ExtensionBody(**_deadline(form, settings.timezone))
            return CaseWorkflow.request_extension, RequestExtension(
                actor=who.username, department=department, **body.model_dump())
        permission = Permission.SUMMONS_ACT
    elif step == "decision":
        def build(form: FormData, who: Principal, session: Session) -> tuple[Any, Any]:
            approve = {"yes": True, "no": False}.get(str(form.get("approve")))
            body = ExtensionDecisionBody(**{**_fields(form, "comment"),
                                            **({"approve": approve} if approve is not None
                                               else {})})
            return CaseWorkflow.decide_extension, DecideExtension(
                actor=who.username, department=department, **body.model_dump())
        permission = Permission.CASE_COORDINATE
    elif step == "redispatch":
        def build(form: FormData, who: Principal, session: Session) -> tuple[Any, Any]:
            body = RedispatchBody(**_fields(form, "to", "reason"))
            [to] = services.known_departments(session=session, codes=[body.to], field="to")
            return CaseWorkflow.redispatch, Redispatch(
                actor=who.username, department=department, to=to, reason=body.reason)
        permission = Permission.CASE_COORDINATE
    else:
        raise not_found("step", step[:32])
    return await run_step(request, case_id, department, step, permission, build, session,
                          settings, policy, steps, who)


def _case_step(form_fields: tuple[str, ...], body: type[Any], message: type[Any],
               update: Any) -> Build:
    def build(form: FormData, who: Principal, session: Session) -> tuple[Any, Any]:
        data = body(**_fields(form, *form_fields)).model_dump()
        return update, message(actor=who.username, **data)
    return build


def _summon(form: FormData, who: Principal, session: Session) -> tuple[Any, Any]:
    codes = [str(c) for c in form.getlist("departments") if str(c)]
    body = SummonBody(departments=codes, **_fields(form, "reason"))
    refs = services.known_departments(session=session, codes=body.departments,
                                      field="departments")
    return CaseWorkflow.summon_more, SummonMore(actor=who.username, departments=refs,
                                                reason=body.reason)


CASE_STEPS: dict[str, tuple[Permission, Build]] = {
    "summon": (Permission.CASE_COORDINATE, _summon),
    "outcome": (Permission.CASE_COORDINATE, _case_step(
        ("kind", "summary", "agreement_text"), OutcomeBody, RecordOutcome,
        CaseWorkflow.record_outcome)),
    "feedback": (Permission.CASE_COORDINATE, _case_step(
        ("satisfaction", "comment"), FeedbackBody, RecordFeedback,
        CaseWorkflow.record_feedback)),
    "close": (Permission.CASE_COORDINATE, _case_step(
        ("reason",), CloseBody, CloseCase, CaseWorkflow.close)),
    "facts": (Permission.CASE_ADD_FACT, _case_step(
        ("text",), AddFactBody, AddFact, CaseWorkflow.add_fact)),
    "take-over": (Permission.CASE_TAKE_OVER, _case_step(
        ("reason",), TakeOverBody, TakeOver, CaseWorkflow.take_over)),
    "retry-planning": (Permission.CASE_COORDINATE, _case_step(
        (), RetryPlanningBody, RetryPlanning, CaseWorkflow.retry_planning)),
    "recompute-deadlines": (Permission.CASE_COORDINATE, _case_step(
        ("reason",), RecomputeBody, RecomputeDeadlines, CaseWorkflow.recompute_deadlines)),
}


@router.post("/cases/{case_id}/{step}")
async def case_step(request: Request, case_id: str, step: str, session: SessionDep,
                    settings: SettingsDep, policy: PolicyDep, steps: StepsDep, who: Viewer
                    ) -> Response:
    """吹哨 (summon more), 结果, 评估反馈, 办结归档, 核实情况, 上级接管, 恢复办理 (retry the
    planning of a case needing attention), 期限重算 (recompute provisional deadlines)."""
    if step not in CASE_STEPS:
        raise not_found("step", step[:32])
    permission, build = CASE_STEPS[step]
    return await run_step(request, case_id, None, step, permission, build, session, settings,
                          policy, steps, who)
