"""The provisional calendar (暂定) is the law, not a guess: proved against the published
arrangements of 2025 and 2026 (chinese-calendar's data), the first years of the 2024
revision of the national holiday measures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from whistle.workdays import (
    Source,
    YearArrangement,
    count_working_days,
    is_workday,
    official_until,
    provisional_is_workday,
    source,
    statutory_holidays,
)

SH = "Asia/Shanghai"
OFFICIAL_NAME = {"元旦": "New Year's Day", "春节": "Spring Festival", "清明节": "Tomb-sweeping Day",
                 "劳动节": "Labour Day", "端午节": "Dragon Boat Festival",
                 "中秋节": "Mid-autumn Festival", "国庆节": "National Day"}


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]


def rest_runs(year: int) -> list[set[date]]:
    """The official arrangement's runs of consecutive days off (weekends included)."""
    runs: list[set[date]] = []
    current: set[date] = set()
    for d in days_of(year):
        if chinese_calendar.is_workday(d):
            if current:
                runs.append(current)
            current = set()
        else:
            current.add(d)
    return runs + ([current] if current else [])


@pytest.mark.parametrize("year", [2025, 2026])
def test_every_statutory_day_computed_is_that_festival_in_the_official_arrangement(year):
    computed = statutory_holidays(year)
    assert len(computed) == 13  # 1 + 4 + 1 + 2 + 1 + 1 + 3 days
    for day, name in computed.items():
        is_off, official = chinese_calendar.get_holiday_detail(day)
        assert is_off, f"{day} ({name}) is a working day in the {year} arrangement"
        assert official == OFFICIAL_NAME[name], (day, official)


@pytest.mark.parametrize("year", [2025, 2026])
def test_provisional_and_official_differ_only_on_swap_days_and_bridge_days(year):
    statutory = set(statutory_holidays(year))
    runs = rest_runs(year)
    differences = 0
    for d in days_of(year):
        official, provisional = chinese_calendar.is_workday(d), provisional_is_workday(d)
        if official == provisional:
            continue
        differences += 1
        if official:  # a weekend day worked in exchange (调休上班), published with the notice
            assert d.weekday() >= 5 and d in chinese_calendar.workdays, d
        else:  # a weekday off in a festival's break (bridge or make-up day), also published
            assert d.weekday() < 5 and d in chinese_calendar.holidays, d
            [run] = [r for r in runs if d in r]
            assert run & statutory, f"{d} is off in no statutory festival's break"
    assert differences > 0  # the published years do have swaps: the comparison is real


def test_2027_has_the_statutory_holidays_of_the_2024_revision():
    assert list(statutory_holidays(2027)) == [
        date(2027, 1, 1),
        date(2027, 2, 5), date(2027, 2, 6), date(2027, 2, 7), date(2027, 2, 8),  # 除夕-初三
        date(2027, 4, 5),  # 清明
        date(2027, 5, 1), date(2027, 5, 2),
        date(2027, 6, 9),  # 端午
        date(2027, 9, 15),  # 中秋
        date(2027, 10, 1), date(2027, 10, 2), date(2027, 10, 3),
    ]


def test_a_provisional_year_has_no_swapped_workdays_and_no_bridge_days():
    assert not is_workday(date(2027, 2, 6))  # a Saturday stays a rest day
    assert is_workday(date(2027, 2, 9))  # the Tuesday after the festival is worked
    assert is_workday(date(2027, 10, 4))  # no Golden Week beyond the three statutory days


def test_the_policy_block_beats_the_package_which_beats_the_provisional_model():
    block = {2026: YearArrangement(holidays=[date(2026, 12, 31)]),
             2027: YearArrangement(workdays=[date(2027, 2, 6)])}
    assert source(2026) == Source.PACKAGE and source(2026, block) == Source.POLICY
    assert source(2027) == Source.PROVISIONAL and source(2027, block) == Source.POLICY
    assert is_workday(date(2026, 12, 31)) and not is_workday(date(2026, 12, 31), block)
    assert not is_workday(date(2027, 2, 6)) and is_workday(date(2027, 2, 6), block)


def test_the_official_horizon_is_the_end_of_the_last_published_year_in_a_row():
    assert official_until() == date(2026, 12, 31)
    assert official_until({2027: YearArrangement()}) == date(2027, 12, 31)
    assert official_until({2028: YearArrangement()}) == date(2026, 12, 31)  # 2027 missing
    assert official_until(since=2027) is None


def at(y: int, m: int, d: int, h: int = 10) -> datetime:
    return datetime(y, m, d, h, tzinfo=ZoneInfo(SH)).astimezone(UTC)


def test_a_deadline_is_provisional_only_if_it_counts_over_a_provisional_day():
    assert not count_working_days(at(2026, 12, 1), 10, SH).provisional
    assert count_working_days(at(2026, 12, 30), 1, SH).due == at(2026, 12, 31)
    assert not count_working_days(at(2026, 12, 30), 1, SH).provisional
    across = count_working_days(at(2026, 12, 30), 2, SH)  # 31 Dec, then 1 Jan is off: 4 Jan
    assert across.due == at(2027, 1, 4) and across.provisional
    published = count_working_days(at(2026, 12, 30), 2, SH, {2027: YearArrangement()})
    assert published.due == at(2027, 1, 1) and not published.provisional  # no 元旦 listed


def test_the_spring_festival_2027_is_counted_over():
    # Wed 3 Feb: Thu 4 Feb is worked; 5 (除夕) to 8 Feb (初三) are not, 6-7 being a weekend
    assert count_working_days(at(2027, 2, 3), 1, SH).due == at(2027, 2, 4)
    assert count_working_days(at(2027, 2, 3), 2, SH).due == at(2027, 2, 9)
