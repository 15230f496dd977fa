"""The case list (filters, overdue highlighting, pages) and the open-a-case form with the
policy's routing proposal, which the coordinator may adjust before the whistle blows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, select
from starlette.datastructures import FormData

from api import services
from api.access import Permission, can_place, case_scope, record_denial
from api.deps import ClientDep, PolicyDep, SessionDep, SettingsDep
from api.errors import ApiError
from api.web.core import (
    CODE,
    Names,
    Viewer,
    allow,
    field_errors,
    lang_of,
    posted,
    render,
)
from api.web.i18n import LABELS, gettext
from whistle.domain import CaseIntake, CaseStatus, Level
from whistle.identity import Principal
from whistle.models import Department, Jurisdiction
from whistle.reference import LookupFailed
from whistle.routing import RoutingPreview, preview
from whistle.workdays import CalendarNotCovered

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25
MAX_PAGE = 40_000  # offset stays within what the API accepts (1,000,000)
PARTY_ROWS = 4
PARTY_ROLES = LABELS["party_role"]
SOURCES = ("walk_in", "phone", "grid_patrol", "online")


# --- the list -----------------------------------------------------------------------------


def list_filters(query: Any) -> dict[str, Any]:
    """The list's filters from the query string; a value that is not valid is ignored
    (the form offers only valid ones), so no query string can fail the page."""
    def one_of(name: str, allowed: set[str]) -> str | None:
        value = query.get(name, "")
        return value if value in allowed else None

    code = {name: v if CODE.match(v := query.get(name, "")) else None
            for name in ("category", "department")}
    flags = {name: {"true": True, "false": False}.get(query.get(name, ""))
             for name in ("overdue", "provisional", "attention")}
    return dict(status=one_of("status", set(CaseStatus)), level=one_of("level", set(Level)),
                **flags, **code)


def page_number(query: Any) -> int:
    raw = query.get("page", "1")
    return min(int(raw), MAX_PAGE) if raw.isdigit() and 0 < len(raw) < 7 and int(raw) else 1


@router.get("/cases")
def case_list(request: Request, session: SessionDep, who: Viewer) -> Response:
    """The cases I may read, newest first; filters; overdue rows highlighted, provisional
    deadlines (暂定) and cases needing attention (需人工处理) marked."""
    allow(request, session, who, Permission.CASE_LIST)
    filters = list_filters(request.query_params)
    page = page_number(request.query_params)
    result = services.list_cases(session=session, filters=filters, scope=case_scope(who),
                                 limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    kept = {k: ("true" if v is True else "false" if v is False else v)
            for k, v in filters.items() if v is not None}

    def page_url(n: int) -> str:
        return "/cases?" + urlencode({**kept, "page": n})

    last = max(1, -(-result.total // PAGE_SIZE))
    names = Names.load(session, lang_of(request))
    return render(request, "cases.html", result=result, filters=kept, names=names,
                  page=page, last_page=last,
                  prev_url=page_url(page - 1) if page > 1 else None,
                  next_url=page_url(page + 1) if page < last else None,
                  statuses=list(CaseStatus), levels=[lv for lv in Level if lv != Level.GRID],
                  departments=_departments_in_area(session, who))


def _departments_in_area(session: Session, who: Principal) -> list[Department]:
    """Departments at my node, below it, or above it on my path (the units my cases can
    summon), by place then code."""
    above = [c for c in who.jurisdiction_path.strip("/").split("/") if c]
    nodes = select(Jurisdiction.code).where(
        col(Jurisdiction.path).startswith(who.jurisdiction_path) |
        col(Jurisdiction.code).in_(above))
    q = select(Department).where(col(Department.jurisdiction).in_(nodes))
    return list(session.exec(q.order_by(col(Department.jurisdiction), col(Department.code))))


# --- open a case ----------------------------------------------------------------------------


@router.get("/cases/new")
def new_case(request: Request, session: SessionDep, who: Viewer) -> Response:
    """The open-a-case form."""
    allow(request, session, who, Permission.CASE_OPEN)
    return render(request, "case_new.html",
                  **_form_context(request, session, who, {"source_channel": "walk_in"}, {}))


@router.post("/cases/new")
async def open_case(request: Request, session: SessionDep, client: ClientDep,
                    settings: SettingsDep, policy: PolicyDep, who: Viewer) -> Response:
    """`action=preview` shows the policy's routing proposal for the chosen category and
    place (nothing is opened); `action=open` opens the case with the departments ticked.
    Any error re-renders the form with everything typed."""
    form = await posted(request)
    allow(request, session, who, Permission.CASE_OPEN)
    lang = lang_of(request)
    values = _values(form)
    errors: dict[str, str] = {}
    proposal = await run_in_threadpool(_proposal, session, policy, settings.timezone,
                                       values, errors, lang)
    if form.get("action") != "open" or errors:
        if form.get("action") != "open":
            values["departments"] = []  # a new proposal: tick what the policy proposes
        return render(request, "case_new.html", status_code=422 if errors else 200,
                      **_form_context(request, session, who, values, errors, proposal))
    chosen = values["departments"]
    proposed = [d.code for d in proposal.departments] if proposal else []
    if not chosen and not form.get("proposal_shown"):
        chosen = proposed  # opened straight away: the policy routes
    if not chosen:
        errors["departments"] = gettext(lang, "Choose at least one.")
        return render(request, "case_new.html", status_code=422,
                      **_form_context(request, session, who, values, errors, proposal))
    try:
        intake = CaseIntake(**_intake_fields(values, None if chosen == proposed else chosen))
        state = await run_in_threadpool(services.resolve_intake, session=session,
                                        policy=policy, intake=intake, actor=who.username)
    except ValidationError as e:
        errors = field_errors(lang, e)
    except ApiError as e:
        if e.status != 422:
            raise
        errors = {e.field or "form": gettext(lang, "This value is not valid.") + " " +
                  e.message}
    else:
        why = can_place(who, [n.code for n in state.start.path], state.owner)
        if why is not None:
            await run_in_threadpool(record_denial, session, who, request,
                                    Permission.CASE_OPEN, why)
            errors = {"location": gettext(lang, "You may not open a case at this place.") +
                      " " + why}
    if errors:
        return render(request, "case_new.html", status_code=422,
                      **_form_context(request, session, who, values, errors, proposal))
    try:
        await services.open_case(client=client, settings=settings, state=state)
    except services.CasePending:
        return RedirectResponse("/cases?done=pending", status_code=303)
    return RedirectResponse(f"/cases/{state.case_id}?done=opened", status_code=303)


def _values(form: FormData) -> dict[str, Any]:
    """What the user typed, kept as typed (re-rendered on any error)."""
    values: dict[str, Any] = {name: (form.get(name) or "") for name in
                              ("category", "location", "level", "title", "description",
                               "source_channel", "external_ref")}
    values = {k: v if isinstance(v, str) else "" for k, v in values.items()}
    values["parties"] = [
        {"name": str(form.get(f"party_name_{i}") or ""),
         "role": str(form.get(f"party_role_{i}") or "applicant"),
         "contact": str(form.get(f"party_contact_{i}") or "")}
        for i in range(PARTY_ROWS)
    ]
    values["departments"] = [str(d) for d in form.getlist("departments") if CODE.match(str(d))]
    return values


def _intake_fields(values: dict[str, Any], departments: list[str] | None) -> dict[str, Any]:
    """CaseIntake's fields from the form; an empty field is left out, so the model says it
    is missing."""
    fields: dict[str, Any] = {k: values[k].strip() for k in
                              ("category", "location", "level", "title", "description",
                               "source_channel", "external_ref") if values[k].strip()}
    fields["parties"] = [
        {k: v.strip() for k, v in p.items() if v.strip()} for p in values["parties"]
        if p["name"].strip() or p["contact"].strip()
    ]
    if departments is not None:
        fields["departments"] = list(dict.fromkeys(departments))
    return fields


def _proposal(session: Session, policy: Any, tz: str, values: dict[str, Any],
              errors: dict[str, str], lang: str) -> RoutingPreview | None:
    """The routing preview for the chosen category, place and level (whistle.routing, as
    GET /api/v1/routing), or None with the reason in `errors`."""
    category, location = values["category"], values["location"]
    if not category or not location:
        for name in ("category", "location"):
            if not values[name]:
                errors[name] = gettext(lang, "This field is required.")
        return None
    level = values["level"] if values["level"] in set(Level) else None
    try:
        return preview(session=session, policy=policy, category=category, location=location,
                       level=Level(level) if level else None,
                       start=datetime.now(UTC).astimezone(ZoneInfo(tz)), tz=tz)
    except LookupFailed as e:
        errors[e.field] = gettext(lang, "The place has no centre at this level.") \
            if e.field == "level" else gettext(lang, "This value is not valid.")
    except (CalendarNotCovered, KeyError, ValueError):
        errors["form"] = gettext(lang, "No routing proposal: the policy does not cover this "
                                       "category or date.")
    return None


def _form_context(request: Request, session: Session, who: Principal, values: dict[str, Any],
                  errors: dict[str, str], proposal: RoutingPreview | None = None
                  ) -> dict[str, Any]:
    lang = lang_of(request)
    values.setdefault("parties", [{"name": "", "role": "applicant" if i == 0 else "respondent",
                                   "contact": ""} for i in range(PARTY_ROWS)])
    values.setdefault("departments", [])
    names = Names.load(session, lang)
    proposed = [d.code for d in proposal.departments] if proposal else []
    # Ticked: what the user ticked, else (a fresh proposal) what the policy proposes.
    ticked = values["departments"] or proposed
    return dict(values=values, errors=errors, proposal=proposal, names=names,
                ticked=ticked, places=_places(session, who),
                categories=sorted(names.categories.items()),
                levels=[lv for lv in Level if lv != Level.GRID],
                departments=_departments_in_area(session, who),
                party_roles=PARTY_ROLES, sources=SOURCES)


def _places(session: Session, who: Principal) -> list[dict[str, Any]]:
    """The places of my area as grouped options: one group per town-level node (or my
    own node when I sit lower), each place indented by its depth."""
    rows = list(session.exec(select(Jurisdiction).where(
        col(Jurisdiction.path).startswith(who.jurisdiction_path))
        .order_by(col(Jurisdiction.path))))
    groups: list[dict[str, Any]] = []
    top = who.jurisdiction_path.count("/")
    for row in rows:
        depth = row.path.count("/") - top
        if not groups or Level(row.level).rank <= Level.TOWN.rank:
            groups.append({"code": row.code, "options": []})
        groups[-1]["options"].append({"code": row.code, "depth": depth})
    return groups
