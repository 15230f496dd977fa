"""Who may do what: every route declares one permission with `Guard`, and the rules for
each permission live here, in one table, for the API and the pages alike.

A request without a valid bearer token gets 401. A request whose role or area does not
allow it gets 403 with the reason, and the refusal is written to `access_denial` for the
auditors.

The rules (roles in ../shared/DOMAIN.md):
- coordinators read the cases of their node and below; they act on a case while its
  owning centre is their node or below (a case raised above them goes to the centre above);
- department staff read the cases their department was summoned to and act only on their
  own department's summonses;
- grid workers open cases and add facts in their grid (or village);
- supervisors read the cases of their area that stand at their level or above, take over a
  case at their level, and then act on it as its coordinator;
- auditors read everything and change nothing;
- admins manage users and reference data, and never see or touch a case.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import ColumnElement, true
from sqlmodel import Session, col, select

from api.deps import SessionDep, SettingsDep
from api.errors import ApiError, not_found
from whistle import identity
from whistle.domain import Level, Role
from whistle.identity import Principal, TokenRejected
from whistle.models import AccessDenial, CaseRecord, Department, Jurisdiction, SummonsRecord
from whistle.permissions import Permission

log = logging.getLogger("whistle.access")


R = Role
EVERYONE = frozenset(Role)
CASE_READERS = frozenset({R.COORDINATOR, R.DEPARTMENT, R.GRID_WORKER, R.SUPERVISOR, R.AUDITOR})

# Which roles a permission is open to at all; the area checks below narrow it per case.
ROLES: dict[Permission, frozenset[Role]] = {
    Permission.PUBLIC: EVERYONE,
    Permission.SELF: EVERYONE,
    Permission.REFERENCE_READ: EVERYONE,
    Permission.REFERENCE_WRITE: frozenset({R.ADMIN}),
    Permission.ROUTING_PREVIEW: frozenset({R.COORDINATOR, R.GRID_WORKER, R.SUPERVISOR,
                                           R.AUDITOR}),
    Permission.CASE_OPEN: frozenset({R.COORDINATOR, R.GRID_WORKER}),
    Permission.CASE_LIST: CASE_READERS,
    Permission.CASE_READ: CASE_READERS,
    Permission.CASE_COORDINATE: frozenset({R.COORDINATOR, R.SUPERVISOR}),
    Permission.CASE_ADD_FACT: frozenset({R.COORDINATOR, R.GRID_WORKER, R.SUPERVISOR}),
    Permission.CASE_TAKE_OVER: frozenset({R.SUPERVISOR}),
    Permission.SUMMONS_ACT: frozenset({R.DEPARTMENT}),
    Permission.INBOX_READ: frozenset({R.DEPARTMENT, R.COORDINATOR, R.SUPERVISOR, R.AUDITOR}),
    Permission.AUDIT_READ: frozenset({R.AUDITOR}),
    Permission.USERS_MANAGE: frozenset({R.ADMIN}),
    Permission.CHANNELS_MANAGE: frozenset({R.ADMIN}),
    Permission.DIGEST_READ: frozenset({R.COORDINATOR, R.SUPERVISOR, R.AUDITOR}),
}


class Denied(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- area rules on one case -------------------------------------------------------------


def path_down_to(codes: list[str], owner: str) -> str:
    """The path of `owner`, a node on the path `codes` (city … place); the whole path
    when `owner` is not on it."""
    if owner in codes:
        codes = codes[: codes.index(owner) + 1]
    return "/" + "/".join(codes) + "/"


def owner_path(case: CaseRecord) -> str:
    """The path of the node whose centre owns the case (a prefix of the case's path)."""
    return path_down_to(case.jurisdiction_path.strip("/").split("/"), case.owner)


def _at_or_above(case: CaseRecord, p: Principal) -> bool:
    return Level(case.level).rank <= p.level.rank


def can_read(p: Principal, case: CaseRecord) -> str | None:
    """None if `p` may read `case`, else why not."""
    match p.role:
        case Role.AUDITOR:
            return None
        case Role.COORDINATOR | Role.GRID_WORKER:
            return None if p.covers(case.jurisdiction_path) else \
                f"the case is outside {p.jurisdiction}"
        case Role.DEPARTMENT:
            return None if p.department in case.departments else \
                f"{p.department} was not summoned to this case"
        case Role.SUPERVISOR:
            if not p.covers(case.jurisdiction_path):
                return f"the case is outside {p.jurisdiction}"
            return None if _at_or_above(case, p) else \
                f"the case stands at the {case.level} level, below {p.level}"
    return f"a {p.role} does not see cases"


def can_coordinate(p: Principal, case: CaseRecord) -> str | None:
    if p.role == Role.COORDINATOR:
        if not p.covers(case.jurisdiction_path):
            return f"the case is outside {p.jurisdiction}"
        return None if p.covers(owner_path(case)) else \
            f"the case is now owned by the {case.level} centre {case.owner}"
    if p.role == Role.SUPERVISOR:
        why = can_read(p, case)
        if why is not None:
            return why
        return None if case.taken_over_by == p.username else \
            "take the case over before acting on it"
    return f"a {p.role} does not coordinate cases"


def can_add_fact(p: Principal, case: CaseRecord) -> str | None:
    if p.role == Role.GRID_WORKER:
        return can_read(p, case)
    return can_coordinate(p, case)


def can_take_over(p: Principal, case: CaseRecord) -> str | None:
    why = can_read(p, case) if p.role == Role.SUPERVISOR else "only a supervisor takes over"
    if why is None and case.level != p.level:
        why = f"the case stands at the {case.level} level; a {p.level} supervisor takes " \
              "over only cases at that level"
    return why


def can_act_on_summons(p: Principal, case: CaseRecord, department: str) -> str | None:
    if p.role != Role.DEPARTMENT:
        return "only the summoned department's staff act on a summons"
    if p.department != department:
        return f"{p.username} belongs to {p.department}, not {department}"
    return None if department in case.departments else f"{department} was not summoned"


CASE_RULES: dict[Permission, Callable[..., str | None]] = {
    Permission.CASE_READ: can_read,
    Permission.CASE_COORDINATE: can_coordinate,
    Permission.CASE_ADD_FACT: can_add_fact,
    Permission.CASE_TAKE_OVER: can_take_over,
    Permission.SUMMONS_ACT: can_act_on_summons,
}


def case_scope(p: Principal) -> ColumnElement[bool]:
    """The cases `p` may read, as a WHERE clause on case_record (the list and exports)."""
    path = col(CaseRecord.jurisdiction_path)
    match p.role:
        case Role.AUDITOR:
            return true()
        case Role.COORDINATOR | Role.GRID_WORKER:
            return path.startswith(p.jurisdiction_path, autoescape=True)
        case Role.SUPERVISOR:
            levels = [lv.value for lv in Level if lv.rank <= p.level.rank]
            return path.startswith(p.jurisdiction_path, autoescape=True) & \
                col(CaseRecord.level).in_(levels)
        case Role.DEPARTMENT:
            summoned = select(SummonsRecord.case_id).where(
                SummonsRecord.department == p.department)
            return col(CaseRecord.case_id).in_(summoned)
    return col(CaseRecord.case_id).is_(None)  # nothing


def can_read_inbox(session: Session, p: Principal, department: str) -> str | None:
    if p.role == Role.AUDITOR:
        return None
    if p.role == Role.DEPARTMENT:
        return None if p.department == department else \
            f"{p.username} belongs to {p.department}, not {department}"
    dept = session.get(Department, department)
    node = session.get(Jurisdiction, dept.jurisdiction) if dept else None
    if node is None or not p.covers(node.path):
        return f"{department} sits outside {p.jurisdiction}"
    return None


def can_place(p: Principal, path: list[str], owner: str) -> str | None:
    """May `p` open a case at the place `path` (city … location) owned by `owner`? The
    place must be in their area; a coordinator must also be at or above the owning centre."""
    where = "/" + "/".join(path) + "/"
    if not p.covers(where):
        return f"{path[-1]} is outside {p.jurisdiction}"
    if p.role != Role.COORDINATOR:
        return None  # a grid worker reports what they find; a centre above owns the case
    if not p.covers(path_down_to(path, owner)):
        return f"the case would be owned by the centre of {owner}, above {p.jurisdiction}"
    return None


# --- the dependency every route declares ----------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="a token from POST /api/v1/auth/token, "
                                                  "or an API token issued by an admin")


def unauthenticated(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": "Bearer"})


def current_principal(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The signed-in user, from `Authorization: Bearer <token>`; 401 otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthenticated("not_authenticated",
                              "sign in: send Authorization: Bearer <token>")
    try:
        p = identity.authenticate(session, secret_key=settings.secret_key.get_secret_value(),
                                  token=credentials.credentials)
    except TokenRejected as e:
        raise unauthenticated(e.code, e.message) from e
    return p


def record_denial(session: Session, p: Principal, request: Request, permission: Permission,
                  reason: str, case_id: str | None = None) -> ApiError:
    """Write the refusal down and return the 403 to raise."""
    session.rollback()
    session.add(AccessDenial(at=identity.now(), username=p.username, role=p.role,
                             method=request.method, path=request.url.path[:500],
                             permission=permission, case_id=case_id, reason=reason[:500]))
    session.commit()
    log.warning("denied %s %s to %s (%s): %s", request.method, request.url.path, p.username,
                p.role, reason)
    return ApiError(403, "forbidden", reason)


_WELL_FORMED = {"case_id": re.compile(r"^[0-9a-f]{16}$"),
                "department": re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")}


class Guard:
    """`Depends(Guard(Permission.X))`: signs the caller in and checks X, including the
    area rule against the case (and summons) named in the path. Returns the principal."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def __repr__(self) -> str:
        return f"Guard({self.permission})"

    def __call__(self, request: Request, session: SessionDep, settings: SettingsDep,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                 ) -> Principal:
        p = current_principal(session, settings, credentials)
        if p.role not in ROLES[self.permission]:
            raise record_denial(session, p, request, self.permission,
                                f"a {p.role} may not {self.permission}")
        params: dict[str, Any] = request.path_params
        if not all(_WELL_FORMED[k].match(str(v)) for k, v in params.items()
                   if k in _WELL_FORMED):
            return p  # the route's own validation answers 422 naming the parameter
        rule = CASE_RULES.get(self.permission)
        if rule is not None and "case_id" in params:
            case = session.get(CaseRecord, params["case_id"])
            if case is None:
                raise not_found("case", params["case_id"])
            extra = [params["department"]] if self.permission == Permission.SUMMONS_ACT else []
            why = rule(p, case, *extra)
            if why is not None:
                raise record_denial(session, p, request, self.permission, why, case.case_id)
        if self.permission == Permission.INBOX_READ and "department" in params:
            if session.get(Department, params["department"]) is None:
                raise not_found("department", params["department"])
            why = can_read_inbox(session, p, params["department"])
            if why is not None:
                raise record_denial(session, p, request, self.permission, why)
        return p


class _PublicGuard(Guard):
    """Guard(Permission.PUBLIC): no sign-in, so it reads no Authorization header and the
    OpenAPI document names no security requirement for its routes."""

    def __init__(self) -> None:
        super().__init__(Permission.PUBLIC)

    def __call__(self) -> None:  # type: ignore[override]
        return None


def guard_of(dependant: Any) -> Guard | None:
    """The Guard a route declares (searching its dependency tree), for the route table
    checks."""
    for dep in dependant.dependencies:
        if isinstance(dep.call, Guard):
            return dep.call
        found = guard_of(dep)
        if found is not None:
            return found
    return None


# What a route puts in its signature: `who: CaseReader`. One alias per permission.
Public = Annotated[None, Depends(_PublicGuard())]
Anyone = Annotated[Principal, Depends(Guard(Permission.SELF))]
ReferenceReader = Annotated[Principal, Depends(Guard(Permission.REFERENCE_READ))]
ReferenceWriter = Annotated[Principal, Depends(Guard(Permission.REFERENCE_WRITE))]
RoutingPreviewer = Annotated[Principal, Depends(Guard(Permission.ROUTING_PREVIEW))]
CaseOpener = Annotated[Principal, Depends(Guard(Permission.CASE_OPEN))]
CaseLister = Annotated[Principal, Depends(Guard(Permission.CASE_LIST))]
CaseReader = Annotated[Principal, Depends(Guard(Permission.CASE_READ))]
Coordinator = Annotated[Principal, Depends(Guard(Permission.CASE_COORDINATE))]
FactAdder = Annotated[Principal, Depends(Guard(Permission.CASE_ADD_FACT))]
TakingOver = Annotated[Principal, Depends(Guard(Permission.CASE_TAKE_OVER))]
SummonedStaff = Annotated[Principal, Depends(Guard(Permission.SUMMONS_ACT))]
InboxReader = Annotated[Principal, Depends(Guard(Permission.INBOX_READ))]
Auditor = Annotated[Principal, Depends(Guard(Permission.AUDIT_READ))]
Admin = Annotated[Principal, Depends(Guard(Permission.USERS_MANAGE))]
ChannelAdmin = Annotated[Principal, Depends(Guard(Permission.CHANNELS_MANAGE))]
DigestReader = Annotated[Principal, Depends(Guard(Permission.DIGEST_READ))]
