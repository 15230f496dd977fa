"""Working-day clocks on China's official calendar, with fixed dates (never today's)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.exceptions import ApplicationError

from activities.case import CaseActivities
from whistle.domain import ClockSpec, DeadlineRequest, PlannedDeadline, PlanRequest
from whistle.policy import PolicyError, default_policy_path, load_policy
from whistle.workdays import CalendarNotCovered, count_working_days, is_workday

SH = "Asia/Shanghai"


def shanghai(y: int, m: int, d: int, h: int = 15) -> datetime:
    """`h` o'clock in Shanghai as an aware UTC datetime."""
    return datetime(y, m, d, h, tzinfo=ZoneInfo(SH)).astimezone(UTC)


def test_swapped_weekend_workday_counts_and_holidays_do_not():
    assert is_workday(date(2026, 10, 10))  # Saturday, worked in exchange for National Day
    assert not is_workday(date(2026, 10, 5))  # Monday inside the National Day holiday
    assert not is_workday(date(2026, 10, 11))  # an ordinary Sunday


def test_working_days_skip_the_national_day_holiday_and_keep_the_time_of_day():
    start = shanghai(2026, 9, 30)  # Wednesday 15:00, the eve of National Day
    assert count_working_days(start, 1, SH).due == shanghai(2026, 10, 8)
    # 8 Thu, 9 Fri, 10 Sat (swapped workday), 12 Mon, 13 Tue
    assert count_working_days(start, 5, SH).due == shanghai(2026, 10, 13)


def test_counting_starts_the_day_after_and_a_friday_lands_on_monday():
    assert count_working_days(shanghai(2026, 11, 20), 1, SH).due == shanghai(2026, 11, 23)


def test_local_date_not_utc_date_decides_the_day():
    # 01:00 on Saturday in Shanghai is still Friday in UTC: counting starts from Saturday.
    start = shanghai(2026, 11, 21, 1)
    assert count_working_days(start, 1, SH).due == shanghai(2026, 11, 23, 1)


def test_a_year_no_calendar_covers_is_an_error_not_a_guess():
    with pytest.raises(CalendarNotCovered, match="does not cover 2101"):
        count_working_days(shanghai(2100, 12, 30), 5, SH)
    with pytest.raises(CalendarNotCovered, match="does not cover 2003"):
        count_working_days(shanghai(2003, 3, 2), 1, SH)


def test_zero_working_days_is_refused():
    with pytest.raises(ValueError):
        count_working_days(shanghai(2026, 11, 20), 0, SH)


def test_plan_deadlines_mixes_hours_and_working_days(tmp_path: Path):
    acts = CaseActivities(engine=None, policy_file=default_policy_path())  # type: ignore[arg-type]
    start = shanghai(2026, 9, 30)
    got = acts.plan_deadlines(DeadlineRequest(start=start, clocks=[
        ClockSpec(hours=24), ClockSpec(working_days=5)]))
    assert got == [shanghai(2026, 10, 1), shanghai(2026, 10, 13)]


def test_plan_clocks_fails_at_once_with_the_reason_when_no_calendar_covers_the_year():
    acts = CaseActivities(engine=None, policy_file=default_policy_path())  # type: ignore[arg-type]
    with pytest.raises(ApplicationError) as e:
        acts.plan(PlanRequest(requests=[DeadlineRequest(
            start=shanghai(2100, 12, 30), clocks=[ClockSpec(working_days=5)])]))
    assert e.value.type == "calendar_not_covered" and e.value.non_retryable
    assert "does not cover 2101" in e.value.message


def test_plan_clocks_says_which_deadlines_are_provisional():
    acts = CaseActivities(engine=None, policy_file=default_policy_path())  # type: ignore[arg-type]
    got = acts.plan(PlanRequest(requests=[
        DeadlineRequest(start=shanghai(2026, 12, 28, 10),
                        clocks=[ClockSpec(hours=24), ClockSpec(working_days=10)]),
        DeadlineRequest(start=shanghai(2026, 12, 1, 10), clocks=[ClockSpec(working_days=10)]),
    ]))
    assert got == [
        [PlannedDeadline(due=shanghai(2026, 12, 29, 10)),
         # 29, 30, 31 Dec; 1 Jan 2027 off (元旦); 4-8 Jan; 11, 12 Jan
         PlannedDeadline(due=shanghai(2027, 1, 12, 10), provisional=True)],
        [PlannedDeadline(due=shanghai(2026, 12, 15, 10))],
    ]


def test_a_broken_policy_file_fails_planning_with_the_field_named(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(default_policy_path().read_text(encoding="utf-8"), encoding="utf-8")
    acts = CaseActivities(engine=None, policy_file=policy)  # type: ignore[arg-type]
    request = PlanRequest(requests=[DeadlineRequest(start=shanghai(2026, 12, 1),
                                                    clocks=[ClockSpec(working_days=1)])])
    assert acts.plan(request)
    policy.write_text("version: x\ndefaults: {}\n", encoding="utf-8")
    with pytest.raises(ApplicationError) as e:
        acts.plan(request)
    assert e.value.type == "policy_invalid" and "defaults" in e.value.message


def test_an_arrangement_in_the_policy_covers_a_year_the_package_does_not(tmp_path):
    text = default_policy_path().read_text(encoding="utf-8") + (
        "\ncalendar:\n  2099:\n    holidays: [2099-03-03]\n    workdays: [2099-03-07]\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(text, encoding="utf-8")
    acts = CaseActivities(engine=None, policy_file=policy)  # type: ignore[arg-type]
    start = shanghai(2099, 3, 2)  # a Monday; Tuesday is off, Saturday 7 March is worked
    got = acts.plan_deadlines(DeadlineRequest(start=start, clocks=[ClockSpec(working_days=4)]))
    assert got == [shanghai(2099, 3, 7)]  # Wed 4, Thu 5, Fri 6, Sat 7


def test_a_calendar_date_outside_its_year_is_refused(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(default_policy_path().read_text(encoding="utf-8")
                      + "\ncalendar:\n  2099:\n    holidays: [2098-12-31]\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="2098-12-31 is not in 2099"):
        load_policy(policy)
