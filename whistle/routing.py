"""Routing preview: for a category and a place, the departments the policy proposes (at the
owning centre's level, or the nearest level above that has them) and the deadlines the
clocks would give from a start time, each marked provisional (暂定) where it counts over a
year whose official working-day arrangement is not published yet. The coordinator may change
the departments before the whistle blows."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlmodel import Session

from whistle.domain import ClockSpec, Level
from whistle.models import Department
from whistle.policy import Policy
from whistle.reference import place, route
from whistle.workdays import plan


class ProposedDepartment(BaseModel):
    code: str
    kind: str
    jurisdiction: str
    name_zh: str
    name_en: str
    supervisor: str | None
    lead: bool


class RoutingPreview(BaseModel):
    category: str
    location: str
    level: Level
    owner: str
    policy_version: str
    departments: list[ProposedDepartment]
    clocks: dict[str, ClockSpec]
    start: datetime
    report_in_due: datetime
    sign_off_due: datetime
    # 暂定: the due counts over a year without an official arrangement and may move when the
    # arrangement is published (whistle/workdays.py)
    report_in_provisional: bool
    sign_off_provisional: bool


def preview(*, session: Session, policy: Policy, category: str, location: str,
            level: Level | None, start: datetime, tz: str) -> RoutingPreview:
    """What opening this case now would do. Raises LookupFailed or CalendarNotCovered."""
    where = place(session, category, location, level)
    lead, co = policy.departments(category, where.level)
    refs = route(session, lead, co, where.owner_path)
    rows = [(session.get(Department, r.code), r.lead) for r in refs]
    case_policy = policy.for_category(category)
    clocks = {name: case_policy.clock(name) for name in ("report_in", "sign_off", "feedback")}
    report_in = plan(start, clocks["report_in"], tz, policy.spec.calendar)
    sign_off = plan(start, clocks["sign_off"], tz, policy.spec.calendar)
    return RoutingPreview(
        category=category, location=location, level=where.level, owner=where.owner,
        policy_version=policy.version,
        departments=[ProposedDepartment(lead=is_lead, **row.model_dump())
                     for row, is_lead in rows if row is not None],
        clocks=clocks, start=start,
        report_in_due=report_in.due, sign_off_due=sign_off.due,
        report_in_provisional=report_in.provisional, sign_off_provisional=sign_off.provisional,
    )
