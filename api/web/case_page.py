"""The case page (summons board with both clocks, escalation ladder, timeline, the actions
that fit the state and the user) and every step's form. A step goes through
`api.deps.Steps`, as in api/routes/cases.py, so idempotency and refusals are the same."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, get_args, get_origin
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import AwareDatetime, ValidationError
from sqlmodel import Session, select
from starlette.datastructures import FormData

from api import services
from api.access import Permission
from api.deps import PolicyDep, SessionDep, SettingsDep, StepsDep
from api.errors import ApiError, not_found
from api.schemas import Body
from api.steps import body_model
from api.steps import message as step_message
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
from whistle.domain import OutcomeKind, Satisfaction
from whistle.identity import Principal
from whistle.models import CaseRecord, Department
from whistle.policy import Policy
from whistle.steps import STEPS, Scope, StepSpec
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
        "recompute": coordinate and going and detail.provisional,  # a due still to run is 暂定
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


def _form_data(form: FormData, body: type[Body], tz: str) -> dict[str, Any]:
    """The body's fields from a posted form, by each field's type: lists from repeated
    fields, yes/no for a choice of two, a `datetime-local` read in the deployment's zone
    (the browser sends none), text otherwise. An empty field is left out, so the body
    names it as missing."""
    data: dict[str, Any] = {}
    for name, info in body.model_fields.items():
        kind = info.annotation
        if get_origin(kind) is list:
            if values := [str(v) for v in form.getlist(name) if str(v)]:
                data[name] = values
        elif kind is bool:
            choice = {"yes": True, "no": False}.get(str(form.get(name)))
            if choice is not None:
                data[name] = choice
        elif (raw := text(form, name)) is not None:
            data[name] = _instant(raw, tz) if _is_instant(kind) else raw
    return data


def _is_instant(kind: Any) -> bool:
    return any(a in (datetime, AwareDatetime) for a in (kind, *get_args(kind)))


def _instant(raw: str, tz: str) -> Any:
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return raw  # the body refuses it, naming the field
    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(tz))


def _find(path: str) -> tuple[StepSpec, str | None]:
    """The step posted to /cases/{case_id}/<path>, and its department; 404 if none."""
    parts = path.split("/")
    if len(parts) > 2 and parts[0] == "summonses":
        department, tail, scope = parts[1], "/".join(parts[2:]), Scope.SUMMONS
    else:
        department, tail, scope = None, path, Scope.CASE
    for spec in STEPS:
        if spec.scope == scope and spec.path == tail:
            return spec, department
    raise not_found("step", path[:64])


@router.post("/cases/{case_id}/{path:path}")
async def case_step(request: Request, case_id: str, path: str, session: SessionDep,
                    settings: SettingsDep, policy: PolicyDep, steps: StepsDep, who: Viewer
                    ) -> Response:
    """Every step of the catalogue (whistle/steps.py) from its form, posted to the path of
    the JSON API's route: 报到, 签收意见, 退单, 延期申请 by the summoned department; 吹哨,
    延期审批, 重新分拨, 结果, 评估反馈, 办结归档, 期限重算, 恢复办理 by the coordinator; 核实情况;
    上级接管. The form's name on the page is the step's path (with ":department")."""
    spec, department = _find(path)
    body = body_model(spec)

    def build(form: FormData, who: Principal, session: Session) -> tuple[Any, Any]:
        data = body(**_form_data(form, body, settings.timezone))
        return getattr(CaseWorkflow, spec.update), step_message(
            spec, data, actor=who.username, department=department, session=session)

    return await run_step(request, case_id, department, spec.path, spec.permission, build,
                          session, settings, policy, steps, who)
