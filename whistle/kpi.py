"""Supervision figures (评价监督 / 监测预警) from the read model: on-time report-in and
sign-off rates, resolution and satisfaction rates — by department and by area (county,
town) — cases by category and by level, and the overdue list.

Every figure is a handful of grouped SQL queries (the same on SQLite and PostgreSQL); Python
only adds up the grouped rows (one per department or per place, never one per case).

Which rows a figure counts:
- The **period** is half-open, `[start, end)`. Summons figures count the summonses *summoned*
  in it; case figures (resolution, satisfaction, by category, by level) count the cases
  *opened* in it. The overdue list is "now", whatever the period.
- The **scope** is what the viewer may read: a list of place-path prefixes
  (`"/huizhou/huicheng/xiaojinkou/"`, see `Jurisdiction.path`) matched against the case's
  `jurisdiction_path`, or any WHERE clause on `case_record` (e.g. `api.access.case_scope`),
  or None for everything. An empty list means nothing.
- A **rate** is a `Rate(numerator, denominator)`; with nothing to count its `value` is None
  (shown as "—"), never a division by zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, or_, select, true
from sqlmodel import Session, col

from whistle.domain import CaseStatus, Level, OutcomeKind, Satisfaction, SummonsStatus
from whistle.models import CaseRecord, SummonsRecord

Scope = Sequence[str] | ColumnElement[bool] | None

RESOLVED = (OutcomeKind.MEDIATED_AGREEMENT.value, OutcomeKind.ADMINISTRATIVE_RESOLUTION.value)
SATISFIED = (Satisfaction.SATISFIED.value, Satisfaction.BASICALLY_SATISFIED.value)
OPEN_SUMMONS = (SummonsStatus.SUMMONED.value, SummonsStatus.REPORTED_IN.value)


@dataclass(frozen=True)
class Period:
    """The half-open interval `[start, end)`, both time-zone aware."""

    start: datetime
    end: datetime

    @classmethod
    def last_days(cls, days: int, now: datetime) -> Period:
        return cls(now - timedelta(days=days), now)


@dataclass(frozen=True)
class Rate:
    numerator: int = 0
    denominator: int = 0

    @property
    def value(self) -> float | None:
        """numerator / denominator, or None when there is nothing to count."""
        return self.numerator / self.denominator if self.denominator else None

    def __add__(self, other: Rate) -> Rate:
        return Rate(self.numerator + other.numerator, self.denominator + other.denominator)


@dataclass
class Rates:
    """The four rates of one department, one area, or everything in scope.

    - `report_in` (on-time report-in, 按时报到率): numerator — summonses reported in at or
      before their report-in deadline; denominator — summonses reported in (on time or
      late) plus summonses still waiting to report in whose deadline has passed. A summons
      not yet reported in and not yet due, or returned (退单) or cancelled without reporting
      in, counts in neither.
    - `sign_off` (on-time sign-off, 按时办结率): numerator — summonses signed off at or before
      their sign-off deadline (the extended one when an extension was approved);
      denominator — summonses signed off plus open summonses (summoned or reported in)
      whose sign-off deadline has passed. Open and not yet due, returned or cancelled
      without signing off: neither.
    - `resolution` (化解率): numerator — cases whose outcome is a mediated agreement or an
      administrative resolution; denominator — cases with any outcome but `withdrawn`
      (resolved, referred to litigation, unresolved). Cases without an outcome yet, or
      withdrawn: neither.
    - `satisfaction` (满意率): numerator — cases whose parties answered satisfied or
      basically satisfied; denominator — cases with any answer (satisfied, basically,
      unsatisfied). No feedback (yet, or never): neither.

    By department, the case rates count the cases that department was summoned to (once
    per case, whatever the rounds)."""

    key: str
    report_in: Rate = field(default_factory=Rate)
    sign_off: Rate = field(default_factory=Rate)
    resolution: Rate = field(default_factory=Rate)
    satisfaction: Rate = field(default_factory=Rate)

    def add(self, other: Rates) -> None:
        self.report_in += other.report_in
        self.sign_off += other.sign_off
        self.resolution += other.resolution
        self.satisfaction += other.satisfaction


@dataclass(frozen=True)
class OverdueSummons:
    """An open summons whose running clock (report-in, else sign-off) has passed."""

    case_id: str
    title: str
    category: str
    level: str
    owner: str
    department: str
    clock: str  # report_in | sign_off
    due: datetime
    escalation: str | None
    provisional: bool = False  # the missed due is provisional (暂定)


@dataclass
class Kpis:
    period: Period
    now: datetime
    cases: int = 0  # cases opened in the period, in scope
    overall: Rates = field(default_factory=lambda: Rates("all"))
    by_department: list[Rates] = field(default_factory=list)
    by_county: list[Rates] = field(default_factory=list)
    by_town: list[Rates] = field(default_factory=list)
    by_category: dict[str, int] = field(default_factory=dict)
    by_level: dict[str, int] = field(default_factory=dict)
    overdue: list[OverdueSummons] = field(default_factory=list)  # the first overdue_limit
    overdue_total: int = 0  # all of them


# --- scope and areas --------------------------------------------------------------------------


def scope_clause(scope: Scope) -> ColumnElement[bool]:
    """`scope` as a WHERE clause on case_record."""
    if scope is None:
        return true()
    if isinstance(scope, ColumnElement):
        return scope
    prefixes = list(scope)
    if not prefixes:
        return false()
    path = col(CaseRecord.jurisdiction_path)
    return or_(*(path.startswith(p, autoescape=True) for p in prefixes))


def area_of(path: str, level: Level) -> str | None:
    """The code of the county or town in a place path (`/city/county/town/village/`), or
    None for a place above that level."""
    parts = [p for p in path.split("/") if p]
    depth = Level.COUNTY.rank if level == Level.COUNTY else Level.TOWN.rank
    return parts[depth] if len(parts) > depth else None


# --- the queries ------------------------------------------------------------------------------


def _count(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _summons_columns(now: datetime) -> list[Any]:
    s = SummonsRecord
    reported, signed = col(s.reported_in_at), col(s.signed_off_at)
    report_due, sign_due = col(s.report_in_due), col(s.sign_off_due)
    return [
        _count(and_(reported.is_not(None), reported <= report_due)),
        _count(or_(reported.is_not(None),
                   and_(col(s.status) == SummonsStatus.SUMMONED.value, report_due <= now))),
        _count(and_(signed.is_not(None), signed <= sign_due)),
        _count(or_(signed.is_not(None),
                   and_(col(s.status).in_(OPEN_SUMMONS), sign_due <= now))),
    ]


def _case_columns() -> list[Any]:
    c = CaseRecord
    outcome, satisfaction = col(c.outcome_kind), col(c.satisfaction)
    return [
        _count(outcome.in_(RESOLVED)),
        _count(and_(outcome.is_not(None), outcome != OutcomeKind.WITHDRAWN.value)),
        _count(satisfaction.in_(SATISFIED)),
        _count(satisfaction.is_not(None)),
    ]


def _in_period(column: Any, period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)


def _summons_rates(session: Session, group: Any, where: ColumnElement[bool], period: Period,
                   now: datetime) -> dict[str, tuple[Rate, Rate]]:
    stmt = (select(group, *_summons_columns(now))
            .select_from(SummonsRecord)
            .join(CaseRecord, col(CaseRecord.case_id) == col(SummonsRecord.case_id))
            .where(where, _in_period(col(SummonsRecord.summoned_at), period))
            .group_by(group))
    return {key: (Rate(int(a), int(b)), Rate(int(c), int(d)))
            for key, a, b, c, d in session.exec(stmt).all()}  # type: ignore[call-overload]


def _case_rates(session: Session, group: Any, where: ColumnElement[bool], period: Period,
                by_department: bool = False) -> dict[str, tuple[Rate, Rate]]:
    if by_department:  # each (case, department) once, however many rounds
        pairs = (select(col(SummonsRecord.case_id), col(SummonsRecord.department))
                 .distinct().subquery())
        group = pairs.c.department
        stmt = select(group, *_case_columns()).select_from(pairs).join(
            CaseRecord, col(CaseRecord.case_id) == pairs.c.case_id)
    else:
        stmt = select(group, *_case_columns())
    stmt = stmt.where(where, _in_period(col(CaseRecord.opened_at), period)).group_by(group)
    return {key: (Rate(int(a), int(b)), Rate(int(c), int(d)))
            for key, a, b, c, d in session.exec(stmt).all()}  # type: ignore[call-overload]


def _merge(summons: dict[str, tuple[Rate, Rate]], cases: dict[str, tuple[Rate, Rate]]
           ) -> dict[str, Rates]:
    out: dict[str, Rates] = {}
    for key in summons.keys() | cases.keys():
        ri, so = summons.get(key, (Rate(), Rate()))
        res, sat = cases.get(key, (Rate(), Rate()))
        out[key] = Rates(key, ri, so, res, sat)
    return out


def _roll_up(by_path: dict[str, Rates], level: Level) -> list[Rates]:
    areas: dict[str, Rates] = {}
    for path, rates in by_path.items():
        code = area_of(path, level)
        if code is not None:
            areas.setdefault(code, Rates(code)).add(rates)
    return _sorted(areas.values())


def _sorted(rows: Iterable[Rates]) -> list[Rates]:
    return sorted(rows, key=lambda r: r.key)


def _counts(session: Session, column: Any, where: ColumnElement[bool], period: Period
            ) -> dict[str, int]:
    stmt = (select(column, func.count())
            .where(where, _in_period(col(CaseRecord.opened_at), period))
            .group_by(column))
    return {key: int(n) for key, n in session.exec(stmt).all()}  # type: ignore[call-overload]


def _overdue_where(scope: Scope, now: datetime) -> ColumnElement[bool]:
    s, c = SummonsRecord, CaseRecord
    return and_(scope_clause(scope), col(c.status) != CaseStatus.CLOSED.value,
                col(s.status).in_(OPEN_SUMMONS), col(s.next_due) <= now)


def overdue_count(session: Session, *, scope: Scope, now: datetime) -> int:
    """How many open summonses in scope are overdue now (the whole list, not a page)."""
    stmt = (select(func.count()).select_from(SummonsRecord)
            .join(CaseRecord, col(CaseRecord.case_id) == col(SummonsRecord.case_id))
            .where(_overdue_where(scope, now)))
    return int(session.exec(stmt).one()[0])  # type: ignore[call-overload]


def overdue_summonses(session: Session, *, scope: Scope, now: datetime, limit: int = 100
                      ) -> list[OverdueSummons]:
    """Open summonses of open cases in scope whose running clock has passed, the longest
    overdue first (at most `limit`)."""
    s, c = SummonsRecord, CaseRecord
    stmt = (select(c.case_id, c.title, c.category, c.level, c.owner, s.department, s.status,
                   s.next_due, s.escalation, s.next_due_provisional)
            .join(c, col(c.case_id) == col(s.case_id))
            .where(_overdue_where(scope, now))
            .order_by(col(s.next_due), col(c.case_id), col(s.department))
            .limit(limit))
    return [OverdueSummons(case_id=r[0], title=r[1], category=r[2], level=r[3], owner=r[4],
                           department=r[5],
                           clock="report_in" if r[6] == SummonsStatus.SUMMONED else "sign_off",
                           due=r[7], escalation=r[8], provisional=r[9])
            for r in session.exec(stmt).all()]  # type: ignore[call-overload]


def compute(session: Session, *, period: Period, scope: Scope, now: datetime,
            overdue_limit: int = 100) -> Kpis:
    """Every dashboard figure for `period` within `scope` (see the module docstring)."""
    where = scope_clause(scope)
    path = col(CaseRecord.jurisdiction_path)
    department = col(SummonsRecord.department)
    by_path = _merge(_summons_rates(session, path, where, period, now),
                     _case_rates(session, path, where, period))
    by_department = _merge(_summons_rates(session, department, where, period, now),
                           _case_rates(session, None, where, period, by_department=True))
    kpis = Kpis(period=period, now=now)
    for rates in by_path.values():
        kpis.overall.add(rates)
    kpis.by_department = _sorted(by_department.values())
    kpis.by_county = _roll_up(by_path, Level.COUNTY)
    kpis.by_town = _roll_up(by_path, Level.TOWN)
    kpis.by_category = _counts(session, col(CaseRecord.category), where, period)
    kpis.by_level = _counts(session, col(CaseRecord.level), where, period)
    kpis.cases = sum(kpis.by_category.values())
    kpis.overdue = overdue_summonses(session, scope=scope, now=now, limit=overdue_limit)
    kpis.overdue_total = (len(kpis.overdue) if len(kpis.overdue) < overdue_limit
                          else overdue_count(session, scope=scope, now=now))
    return kpis
