"""Working-day clocks on China's official calendar (holidays and swapped workdays, 调休).

Backed by `chinese-calendar`, which carries the State Council's arrangement year by year and
refuses a year it does not know. `holidays` was compared: it also knows 2026, but for a year
whose arrangement is not yet published it computes holidays by rule *without* the swapped
workdays — a silent guess, which a deadline must never be. So: a clear error instead.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from whistle.domain import ClockSpec


class CalendarNotCovered(LookupError):
    """The official calendar for this year is not known to this deployment."""

    def __init__(self, day: date) -> None:
        super().__init__(
            f"the working-day calendar does not cover {day.year} (asked for {day.isoformat()}): "
            "upgrade the chinese-calendar package once the State Council has published that "
            "year's arrangement"
        )
        self.year = day.year


def is_workday(day: date) -> bool:
    """True on a working day, counting swapped weekend workdays (调休上班) and not holidays."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as e:
        raise CalendarNotCovered(day) from e


def add_working_days(start: datetime, days: int, tz: str) -> datetime:
    """The moment `days` working days after `start`, at the same local time of day.

    Counting begins the day after `start` (a summons on Friday 15:00 with one working day
    is due Monday 15:00, or Tuesday if Monday is a holiday)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    local = start.astimezone(ZoneInfo(tz))
    day, counted = local.date(), 0
    while counted < days:
        day += timedelta(days=1)
        counted += is_workday(day)
    return datetime.combine(day, local.timetz()).astimezone(start.tzinfo)


def deadline(start: datetime, clock: ClockSpec, tz: str) -> datetime:
    """When `clock`, started at `start`, runs out: plain hours, or working days in `tz`."""
    if clock.working_days is not None:
        return add_working_days(start, clock.working_days, tz)
    assert clock.hours is not None  # a ClockSpec holds exactly one of the two
    return start + timedelta(hours=clock.hours)
