"""Working-day clocks on China's official calendar (holidays and swapped workdays, 调休).

Backed by `chinese-calendar`, which carries the State Council's arrangement year by year and
refuses a year it does not know. `holidays` was compared: it also knows 2026, but for a year
whose arrangement is not yet published it computes holidays by rule *without* the swapped
workdays — a silent guess, which a deadline must never be. So: a clear error instead, and a
way out that needs no release: the policy file may carry a year's published arrangement
(`calendar:`), which then wins over the package for that year.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
from pydantic import BaseModel, ConfigDict, Field, model_validator

from whistle.domain import ClockSpec


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


class CalendarNotCovered(LookupError):
    """The official calendar for this year is not known to this deployment."""

    def __init__(self, day: date) -> None:
        super().__init__(
            f"the working-day calendar does not cover {day.year} (asked for {day.isoformat()}): "
            "add the State Council's arrangement for that year under `calendar:` in the policy "
            "file, or upgrade the chinese-calendar package"
        )
        self.year = day.year


def is_workday(day: date, overrides: Overrides | None = None) -> bool:
    """True on a working day, counting swapped weekend workdays (调休上班) and not holidays."""
    year = (overrides or {}).get(day.year)
    if year is not None:
        return day in year.workdays or (day.weekday() < 5 and day not in year.holidays)
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as e:
        raise CalendarNotCovered(day) from e


def add_working_days(start: datetime, days: int, tz: str, overrides: Overrides | None = None
                     ) -> datetime:
    """The moment `days` working days after `start`, at the same local time of day.

    Counting begins the day after `start` (a summons on Friday 15:00 with one working day
    is due Monday 15:00, or Tuesday if Monday is a holiday)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    local = start.astimezone(ZoneInfo(tz))
    day, counted = local.date(), 0
    while counted < days:
        day += timedelta(days=1)
        counted += is_workday(day, overrides)
    return datetime.combine(day, local.timetz()).astimezone(start.tzinfo)


def deadline(start: datetime, clock: ClockSpec, tz: str, overrides: Overrides | None = None
             ) -> datetime:
    """When `clock`, started at `start`, runs out: plain hours, or working days in `tz`."""
    if clock.working_days is not None:
        return add_working_days(start, clock.working_days, tz, overrides)
    assert clock.hours is not None  # a ClockSpec holds exactly one of the two
    return start + timedelta(hours=clock.hours)
