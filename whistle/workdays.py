"""Working-day clocks on China's calendar: official where an arrangement is published,
provisional (暂定) where it is not yet.

Where a day's status comes from, first match wins:
1. the policy file's `calendar:` block (a year's State Council notice, copied by an operator);
2. the `chinese-calendar` package, which carries the published arrangements year by year;
3. the provisional calendar: the statutory holidays of 《全国年节及纪念日放假办法》 (as revised
   in 2024, in force from 2025) plus weekends, with no swapped workdays (调休) and no bridge
   days, because those exist only once the State Council publishes them. Nothing here guesses
   an official arrangement; a deadline counted through a provisional day says so, and is
   recomputed when the year's arrangement arrives (`whistle recompute-deadlines`).

Lunar dates (春节, 端午, 中秋) and the Qingming solar term come from `tyme4py` (see README,
"Working days and the calendar"). `holidays` was compared and rejected for the provisional
part: it mixes published and rule-derived years without saying which is which.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cache
from zoneinfo import ZoneInfo

import chinese_calendar
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tyme4py.lunar import LunarDay
from tyme4py.solar import SolarTerm

from whistle.domain import ClockSpec, PlannedDeadline


class YearArrangement(BaseModel):
    """One year's official arrangement: its days off and its swapped weekend workdays."""

    model_config = ConfigDict(extra="forbid")
    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> YearArrangement:
        both = set(self.holidays) & set(self.workdays)
        if both:
            raise ValueError(f"{min(both)} is listed as a holiday and as a workday")
        return self


Overrides = dict[int, YearArrangement]

# The statutory holidays below are those of the 2024 revision, in force from 1 January 2025;
# a year before that without a published arrangement is not covered (no case needs one).
PROVISIONAL_FROM = 2025
# Beyond this the provisional model is not trusted (the law, or the lunar tables, may differ).
PROVISIONAL_UNTIL = 2100


class Source(StrEnum):
    """Where a year's working days come from."""

    POLICY = "policy"  # the policy file's `calendar:` block
    PACKAGE = "package"  # chinese-calendar's published arrangements
    PROVISIONAL = "provisional"  # statutory holidays and weekends only (暂定)

    @property
    def official(self) -> bool:
        return self != Source.PROVISIONAL


class CalendarNotCovered(LookupError):
    """No calendar, official or provisional, covers this year."""

    def __init__(self, day: date) -> None:
        super().__init__(
            f"the working-day calendar does not cover {day.year} (asked for {day.isoformat()}): "
            f"official arrangements are known for the years the chinese-calendar package "
            f"carries and those under `calendar:` in the policy file; the provisional "
            f"calendar covers {PROVISIONAL_FROM}-{PROVISIONAL_UNTIL}"
        )
        self.year = day.year


# --- the statutory holidays ----------------------------------------------------------------


def _lunar(year: int, month: int, day: int) -> date:
    s = LunarDay.from_ymd(year, month, day).get_solar_day()
    return date(s.get_year(), s.get_month(), s.get_day())


@cache
def statutory_holidays(year: int) -> dict[date, str]:
    """The days every citizen has off in `year` by the 2024 revision of the national
    holiday measures (Article 2), without any arrangement: 元旦 1 Jan; 春节 除夕 to 初三;
    清明 the Qingming solar-term day; 劳动节 1-2 May; 端午 五月初五; 中秋 八月十五; 国庆 1-3 Oct."""
    if not PROVISIONAL_FROM <= year <= PROVISIONAL_UNTIL:
        raise CalendarNotCovered(date(year, 1, 1))
    new_year = _lunar(year, 1, 1)  # 正月初一 always falls in January or February
    qingming = SolarTerm.from_name(year, "清明").get_solar_day()
    days = {date(year, 1, 1): "元旦"}
    days |= {new_year + timedelta(days=n): "春节" for n in range(-1, 3)}
    days[date(qingming.get_year(), qingming.get_month(), qingming.get_day())] = "清明节"
    days |= {date(year, 5, 1): "劳动节", date(year, 5, 2): "劳动节"}
    days[_lunar(year, 5, 5)] = "端午节"
    days[_lunar(year, 8, 15)] = "中秋节"
    days |= {date(year, 10, d): "国庆节" for d in (1, 2, 3)}
    return dict(sorted(days.items()))


def provisional_is_workday(day: date) -> bool:
    """A weekday that is not a statutory holiday (no swaps, no bridge days: unknown yet)."""
    return day.weekday() < 5 and day not in statutory_holidays(day.year)


# --- which calendar answers for a day --------------------------------------------------------


@cache
def _package_years() -> frozenset[int]:
    """The years chinese-calendar carries a published arrangement for."""
    known = {d.year for d in (*chinese_calendar.holidays, *chinese_calendar.workdays)}
    return frozenset(y for y in known if _package_knows(y))


def _package_knows(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 12, 31))
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def source(year: int, overrides: Overrides | None = None) -> Source:
    """Where the working days of `year` come from; CalendarNotCovered if nowhere."""
    if overrides and year in overrides:
        return Source.POLICY
    if year in _package_years():
        return Source.PACKAGE
    if PROVISIONAL_FROM <= year <= PROVISIONAL_UNTIL:
        return Source.PROVISIONAL
    raise CalendarNotCovered(date(year, 1, 1))


def is_workday(day: date, overrides: Overrides | None = None) -> bool:
    """True on a working day, counting swapped weekend workdays (调休上班) and not holidays;
    in a provisional year, on a weekday that is not a statutory holiday."""
    return _workday(day, source(day.year, overrides), overrides)


def _workday(day: date, src: Source, overrides: Overrides | None) -> bool:
    match src:
        case Source.POLICY:
            year = (overrides or {})[day.year]
            return day in year.workdays or (day.weekday() < 5 and day not in year.holidays)
        case Source.PACKAGE:
            return bool(chinese_calendar.is_workday(day))
        case Source.PROVISIONAL:
            return provisional_is_workday(day)


def official_until(overrides: Overrides | None = None, since: int | None = None) -> date | None:
    """The last day of the unbroken run of officially arranged years that starts with
    `since` (default: the first year chinese-calendar carries); None if `since` itself is
    not official."""
    years = set(_package_years()) | set(overrides or {})
    year = min(_package_years()) if since is None else since
    if year not in years:
        return None
    while year + 1 in years:
        year += 1
    return date(year, 12, 31)


# --- counting ---------------------------------------------------------------------------------


def count_working_days(start: datetime, days: int, tz: str, overrides: Overrides | None = None
                       ) -> PlannedDeadline:
    """The moment `days` working days after `start`, at the same local time of day, and
    whether any day counted over lay in a provisional year (the due may move when that
    year's arrangement is published).

    Counting begins the day after `start` (a summons on Friday 15:00 with one working day
    is due Monday 15:00, or Tuesday if Monday is a holiday)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    local = start.astimezone(ZoneInfo(tz))
    day, counted, provisional = local.date(), 0, False
    while counted < days:
        day += timedelta(days=1)
        src = source(day.year, overrides)
        counted += _workday(day, src, overrides)
        provisional = provisional or not src.official
    due = datetime.combine(day, local.timetz()).astimezone(start.tzinfo)
    return PlannedDeadline(due=due, provisional=provisional)


def plan(start: datetime, clock: ClockSpec, tz: str, overrides: Overrides | None = None
         ) -> PlannedDeadline:
    """When `clock`, started at `start`, runs out (plain hours, or working days in `tz`),
    and whether that rests on a provisional calendar."""
    if clock.working_days is not None:
        return count_working_days(start, clock.working_days, tz, overrides)
    assert clock.hours is not None  # a ClockSpec holds exactly one of the two
    return PlannedDeadline(due=start + timedelta(hours=clock.hours))

