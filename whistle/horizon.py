"""How far the official working-day calendar reaches, against the clocks of the policy.

A working-day deadline counted over a year whose arrangement the State Council has not
published yet is provisional (暂定, whistle/workdays.py). That is safe but not final, so an
operator wants to know in advance when official arrangements run out: `whistle
check-policy`, GET /api/v1/health and /metrics all ask `calendar_horizon`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from whistle.policy import CLOCKS, Policy
from whistle.workdays import official_until, plan

# The official calendar should reach at least this far beyond the latest deadline a case
# opened today could get: the ladder's steps and extensions run on past a missed clock.
MARGIN_DAYS = 30


@dataclass(frozen=True)
class Horizon:
    """The last officially arranged day, and whether it is too close to the clocks."""

    today: date
    official_until: date | None  # None: no year up to today has an official arrangement
    latest_due: date  # the latest due of any clock of any category, started now
    latest_clock: str  # which: "categories.environment.sign_off", "defaults.feedback", …
    short: bool  # official_until < latest_due + MARGIN_DAYS: add the next year soon

    @property
    def days_left(self) -> int | None:
        """Days from today to official_until (negative once it has passed)."""
        return None if self.official_until is None else (self.official_until - self.today).days

    @property
    def next_year(self) -> int:
        """The first year without an official arrangement."""
        return self.official_until.year + 1 if self.official_until else self.today.year


def calendar_horizon(policy: Policy, now: datetime, tz: str) -> Horizon:
    """The official calendar's reach seen from `now` (aware), with the policy's longest
    clock started now, both in the deployment time zone `tz`."""
    today = now.astimezone(ZoneInfo(tz)).date()
    overrides = policy.spec.calendar
    # The unbroken run of official years from this one; once this year itself is not
    # official, the end of the run that stopped before it (a day already past).
    until = official_until(overrides, since=today.year) or official_until(overrides)
    latest_clock, latest = _latest_due(policy, now, tz)
    short = until is None or until < latest + timedelta(days=MARGIN_DAYS)
    return Horizon(today=today, official_until=until, latest_due=latest,
                   latest_clock=latest_clock, short=short)


def _latest_due(policy: Policy, now: datetime, tz: str) -> tuple[str, date]:
    """The latest local due date of any clock a case opened `now` would run, and its name."""
    zone = ZoneInfo(tz)
    named = {f"categories.{c}": policy.for_category(c) for c in policy.spec.categories}
    # An unlisted category runs on the defaults ("" is never a category code).
    named["defaults"] = policy.for_category("")
    dues = {f"{where}.{clock}": plan(now, case.clock(clock), tz, policy.spec.calendar)
            .due.astimezone(zone).date()
            for where, case in named.items() for clock in CLOCKS}
    name = max(dues, key=lambda k: dues[k])
    return name, dues[name]
