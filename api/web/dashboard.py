"""The supervision dashboard (评价监督 / 监测预警): on-time report-in and sign-off rates,
resolution and satisfaction rates by department and by area, cases by category and level,
and what is overdue now — the figures from `whistle.kpi`, the charts from `whistle.charts`
(inline SVG drawn here, no JavaScript)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlmodel import Session, col, func, select
from starlette.datastructures import QueryParams

from api.access import Permission, case_scope
from api.deps import SessionDep
from api.web.core import Names, Viewer, allow, calendar_warning, lang_of, render, settings_of
from api.web.i18n import N_, gettext, label
from whistle import kpi
from whistle.charts import Bar, count_bar, count_bars, percent, rate_bar, rate_bars
from whistle.domain import Level
from whistle.identity import Principal
from whistle.models import CaseRecord

router = APIRouter(include_in_schema=False)

PERIOD_DAYS = (7, 30, 90, 365)
DEFAULT_DAYS = 30
MAX_DAYS = 3660


@dataclass
class PeriodChoice:
    """The period asked for (`?days=` or `?start=&end=`, dates inclusive, local time) and
    what the form shows back, with an error per field."""

    period: kpi.Period
    days: int | None
    start: str
    end: str
    errors: dict[str, str]


def _date(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def choose_period(query: QueryParams, now: datetime, tz: str, lang: str) -> PeriodChoice:
    """The period of the request; anything unreadable falls back to the last 30 days and
    says why next to the field."""
    zone = ZoneInfo(tz)
    errors: dict[str, str] = {}
    raw_start, raw_end = query.get("start", ""), query.get("end", "")
    if raw_start or raw_end:
        start, end = _date(raw_start), _date(raw_end)
        if raw_start and start is None:
            errors["start"] = gettext(lang, "Enter a date as YYYY-MM-DD.")
        if raw_end and end is None:
            errors["end"] = gettext(lang, "Enter a date as YYYY-MM-DD.")
        today = now.astimezone(zone).date()
        start = start or (end or today) - timedelta(days=DEFAULT_DAYS - 1)
        end = end or today
        if not errors and end < start:
            errors["end"] = gettext(lang, "The end date is before the start date.")
        elif not errors and (end - start).days > MAX_DAYS:
            errors["end"] = gettext(lang, "Choose at most ten years.")
        if not errors:
            period = kpi.Period(datetime.combine(start, time(), zone),
                                datetime.combine(end + timedelta(days=1), time(), zone))
            return PeriodChoice(period, None, start.isoformat(), end.isoformat(), errors)
    try:
        days = int(query.get("days", DEFAULT_DAYS))
    except ValueError:
        days = DEFAULT_DAYS
    if days not in PERIOD_DAYS:
        days = DEFAULT_DAYS
    return PeriodChoice(kpi.Period.last_days(days, now), days, raw_start, raw_end, errors)


def rate_text(rate: kpi.Rate) -> str:
    return percent(rate.numerator, rate.denominator).text


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup


def charts(k: kpi.Kpis, names: Names, lang: str) -> dict[str, Chart]:
    """The dashboard's SVG charts with their captions, labelled in `lang`."""
    none = gettext(lang, "Nothing to count in this period.")

    def rates(ident: str, msgid: str, rows: list[kpi.Rates], attr: str,
              name: Callable[[str], str]) -> Chart:
        title = gettext(lang, msgid)
        bars = [rate_bar(name(r.key), getattr(r, attr).numerator, getattr(r, attr).denominator)
                for r in rows]
        return Chart(title, rate_bars(ident, title, bars, empty=none))

    def counts(ident: str, msgid: str, bars: list[Bar]) -> Chart:
        title = gettext(lang, msgid)
        return Chart(title, count_bars(ident, title, bars, empty=none))

    categories = sorted(k.by_category.items(), key=lambda item: (-item[1], item[0]))
    levels = [lv.value for lv in Level if lv.value in k.by_level]
    return {
        "report_in": rates("chart-report-in", N_("On-time report-in rate by department"),
                           k.by_department, "report_in", names.department),
        "sign_off": rates("chart-sign-off", N_("On-time sign-off rate by department"),
                          k.by_department, "sign_off", names.department),
        "resolution": rates("chart-resolution", N_("Resolution rate by town"), k.by_town,
                            "resolution", names.place),
        "satisfaction": rates("chart-satisfaction", N_("Satisfaction rate by town"),
                              k.by_town, "satisfaction", names.place),
        "category": counts("chart-category", N_("Cases by category"),
                           [count_bar(names.category(code), n) for code, n in categories]),
        "level": counts("chart-level", N_("Cases by level"),
                        [count_bar(label(lang, "level", code), k.by_level[code])
                         for code in levels]),
    }


def now_counts(session: Session, who: Principal) -> dict[str, int]:
    """Cases of the viewer's area needing attention (需人工处理) and with a provisional
    deadline running (暂定) now: the case list's `attention` and `provisional` filters."""
    def count(where: object) -> int:
        return session.exec(select(func.count()).select_from(CaseRecord).where(
            case_scope(who), where)).one()
    return {"attention": count(col(CaseRecord.attention).is_not(None)),
            "provisional": count(col(CaseRecord.provisional).is_(True))}


@router.get("/dashboard")
def dashboard(request: Request, session: SessionDep, who: Viewer) -> Response:
    """The supervision figures of the viewer's area for a period, with charts and the
    overdue list (coordinators, supervisors, auditors); the cases needing attention, and at
    the city level a warning when the official holiday calendar runs out soon."""
    allow(request, session, who, Permission.DIGEST_READ)
    lang = lang_of(request)
    tz = settings_of(request).timezone
    now = datetime.now(ZoneInfo("UTC"))
    choice = choose_period(request.query_params, now, tz, lang)
    figures = kpi.compute(session, period=choice.period, scope=case_scope(who), now=now)
    names = Names.load(session, lang)
    return render(request, "dashboard.html", k=figures, choice=choice, names=names,
                  period_days=PERIOD_DAYS, charts=charts(figures, names, lang),
                  rate_text=rate_text, counts=now_counts(session, who),
                  horizon=calendar_warning(request, who),
                  period_end_shown=choice.period.end - timedelta(seconds=1))
