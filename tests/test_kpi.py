"""The dashboard's figures (whistle/kpi.py) on seeded read-model rows, on SQLite and
PostgreSQL: each rate's numerator and denominator, the period, the scope, the overdue list,
and an empty read model (no division by zero)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from api.access import case_scope
from whistle.db import make_engine, migrate
from whistle.domain import Level, Role
from whistle.identity import Principal
from whistle.kpi import Kpis, Period, Rate, Rates, area_of, compute, overdue_summonses
from whistle.models import CaseRecord, SummonsRecord

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
PERIOD = Period(datetime(2026, 9, 1, tzinfo=UTC), NOW)
JIULONG = "/huizhou/huicheng/xiaojinkou/jiulong/"
DALIANG = "/huizhou/huicheng/ruhu/daliang/"
DAOLIU = "/huizhou/longmen/lantian/daoliu/"
H = timedelta(hours=1)


def case(case_id: str, path: str, opened: datetime, *, category: str = "land",
         level: str = "town", status: str = "open", outcome: str | None = None,
         satisfaction: str | None = None) -> CaseRecord:
    return CaseRecord(case_id=case_id, title=f"case {case_id}", description="d",
                      category=category, status=status, level=level,
                      owner=path.strip("/").split("/")[2], location=path.strip("/").split("/")[-1],
                      jurisdiction_path=path, source_channel="walk_in", opened_by="coord",
                      opened_at=opened, updated_at=opened, outcome_kind=outcome,
                      satisfaction=satisfaction)


def summons(case_id: str, department: str, summoned: datetime, *, round: int = 1,
            status: str = "summoned", reported: timedelta | None = None,
            signed: timedelta | None = None, report_in: timedelta = 24 * H,
            sign_off: timedelta = 120 * H) -> SummonsRecord:
    """A summons; `reported`/`signed` are offsets from `summoned`, clocks too."""
    report_due, sign_due = summoned + report_in, summoned + sign_off
    running = report_due if status == "summoned" else sign_due
    return SummonsRecord(
        case_id=case_id, department=department, round=round, status=status,
        summoned_at=summoned, report_in_due=report_due, sign_off_due=sign_due,
        next_due=running if status in ("summoned", "reported_in") else None,
        reported_in_at=summoned + reported if reported is not None else None,
        signed_off_at=summoned + signed if signed is not None else None)


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = make_engine(database_url)
    migrate(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


@pytest.fixture
def seeded(session: Session) -> Session:
    """Five cases (one opened before the period) across two counties and three towns."""
    t = datetime(2026, 9, 5, 9, 0, tzinfo=UTC)
    session.add_all([
        # A, Jiulong: open. petition on time both; land late both; enforcement missed its
        # report-in (overdue now); police reported in on time, sign-off not due yet.
        case("A", JIULONG, t),
        summons("A", "xjk-petition", t, status="signed_off", reported=2 * H, signed=100 * H),
        summons("A", "xjk-land-office", t, status="signed_off", reported=30 * H,
                signed=130 * H),
        summons("A", "xjk-law-enforcement", NOW - 30 * H, status="summoned"),
        summons("A", "xjk-police", NOW - 2 * H, status="reported_in", reported=H),
        # B, Jiulong: closed, mediated, satisfied. petition returned round 1 (neither), then
        # on time in round 2; a department summoned twice counts the case once.
        case("B", JIULONG, t + H, category="neighbour", status="closed",
             outcome="mediated_agreement", satisfaction="satisfied"),
        summons("B", "xjk-petition", t + H, status="returned"),
        summons("B", "xjk-petition", t + 3 * H, round=2, status="signed_off", reported=H,
                signed=2 * H),
        # C, Daliang (Ruhu): withdrawn, its summons cancelled: in no rate.
        case("C", DALIANG, t + 2 * H, status="closed", outcome="withdrawn"),
        summons("C", "xjk-petition", t + 2 * H, status="cancelled"),
        # E, Daoliu (Longmen county): referred to litigation, unsatisfied; the extension
        # moved the sign-off deadline, and it signed off before the extended one.
        case("E", DAOLIU, t + 3 * H, category="family", level="county",
             status="awaiting_feedback", outcome="referred_to_litigation",
             satisfaction="unsatisfied"),
        summons("E", "lm-justice", t + 3 * H, status="signed_off", reported=H, signed=200 * H,
                sign_off=240 * H),
        # D, Jiulong, opened in August: out of every period figure, but overdue now.
        case("D", JIULONG, datetime(2026, 8, 1, tzinfo=UTC)),
        summons("D", "xjk-land-office", datetime(2026, 8, 1, tzinfo=UTC), status="reported_in",
                reported=H),
    ])
    session.commit()
    return session


def by_key(rows: list[Rates]) -> dict[str, Rates]:
    return {r.key: r for r in rows}


def test_rates_count_only_decided_summonses_and_cases(seeded: Session) -> None:
    k = compute(seeded, period=PERIOD, scope=None, now=NOW)
    # report-in: A petition ✓, A land ✗, A enforcement ✗ (missed, open), A police ✓,
    # B petition r2 ✓, E justice ✓ — B r1 returned and C cancelled count in neither
    assert k.overall.report_in == Rate(4, 6)
    # sign-off: A petition ✓, A land ✗, B r2 ✓, E ✓ (extended deadline); A enforcement and
    # A police not yet due for sign-off: neither
    assert k.overall.sign_off == Rate(3, 4)
    # resolution: B mediated ✓, E referred ✗; A has no outcome, C withdrawn: neither
    assert k.overall.resolution == Rate(1, 2)
    assert k.overall.satisfaction == Rate(1, 2)
    assert k.cases == 4  # D was opened before the period


def test_rates_by_department_count_each_case_once(seeded: Session) -> None:
    k = compute(seeded, period=PERIOD, scope=None, now=NOW)
    d = by_key(k.by_department)
    assert d["xjk-petition"].report_in == Rate(2, 2)
    assert d["xjk-petition"].sign_off == Rate(2, 2)
    # petition was summoned to A, B (twice) and C: B resolved, C withdrawn, A undecided
    assert d["xjk-petition"].resolution == Rate(1, 1)
    assert d["xjk-petition"].satisfaction == Rate(1, 1)
    assert d["xjk-land-office"].report_in == Rate(0, 1)
    assert d["xjk-land-office"].sign_off == Rate(0, 1)
    assert d["xjk-law-enforcement"].report_in == Rate(0, 1)
    assert d["xjk-law-enforcement"].sign_off == Rate(0, 0)
    assert d["xjk-law-enforcement"].sign_off.value is None
    assert d["lm-justice"].resolution == Rate(0, 1)


def test_rates_by_area_roll_up_to_county_and_town(seeded: Session) -> None:
    k = compute(seeded, period=PERIOD, scope=None, now=NOW)
    towns, counties = by_key(k.by_town), by_key(k.by_county)
    assert set(towns) == {"xiaojinkou", "ruhu", "lantian"}
    assert towns["xiaojinkou"].report_in == Rate(3, 5)
    assert towns["ruhu"].report_in == Rate(0, 0)  # only a cancelled summons
    assert towns["ruhu"].resolution == Rate(0, 0)  # withdrawn
    assert counties["huicheng"].report_in == Rate(3, 5)
    assert counties["huicheng"].resolution == Rate(1, 1)
    assert counties["longmen"].satisfaction == Rate(0, 1)


def test_counts_by_category_and_level_follow_the_period(seeded: Session) -> None:
    k = compute(seeded, period=PERIOD, scope=None, now=NOW)
    assert k.by_category == {"land": 2, "neighbour": 1, "family": 1}
    assert k.by_level == {"town": 3, "county": 1}
    august = compute(seeded, period=Period(datetime(2026, 8, 1, tzinfo=UTC),
                                           datetime(2026, 9, 1, tzinfo=UTC)),
                     scope=None, now=NOW)
    assert august.by_category == {"land": 1} and august.cases == 1
    assert august.overall.report_in == Rate(1, 1)


def test_overdue_list_is_now_and_longest_overdue_first(seeded: Session) -> None:
    k = compute(seeded, period=PERIOD, scope=None, now=NOW)
    assert [(o.case_id, o.department, o.clock) for o in k.overdue] == [
        ("D", "xjk-land-office", "sign_off"),
        ("A", "xjk-law-enforcement", "report_in"),
    ]
    assert overdue_summonses(seeded, scope=None, now=NOW, limit=1)[0].case_id == "D"
    assert k.overdue_total == 2
    capped = compute(seeded, period=PERIOD, scope=None, now=NOW, overdue_limit=1)
    assert len(capped.overdue) == 1 and capped.overdue_total == 2


def test_scope_by_place_prefixes(seeded: Session) -> None:
    k = compute(seeded, period=PERIOD, scope=["/huizhou/huicheng/ruhu/"], now=NOW)
    assert k.cases == 1 and k.by_category == {"land": 1}
    assert k.overall.report_in == Rate(0, 0) and k.overdue == []
    assert [r.key for r in k.by_department] == ["xjk-petition"]
    both = compute(seeded, period=PERIOD, now=NOW,
                   scope=["/huizhou/huicheng/ruhu/", "/huizhou/longmen/"])
    assert both.cases == 2 and {r.key for r in both.by_county} == {"huicheng", "longmen"}
    nothing = compute(seeded, period=PERIOD, scope=[], now=NOW)
    assert nothing.cases == 0 and nothing.by_department == [] and nothing.overdue == []


def test_scope_prefix_does_not_match_a_sibling_with_a_longer_code(session: Session) -> None:
    t = datetime(2026, 9, 5, tzinfo=UTC)
    session.add_all([case("X", "/huizhou/huicheng/ruhu_2/v/", t),
                     case("Y", "/huizhou/huicheng/ruhu/daliang/", t)])
    session.commit()
    k = compute(session, period=PERIOD, scope=["/huizhou/huicheng/ruhu/"], now=NOW)
    assert k.cases == 1


def test_scope_as_the_access_rule_of_a_supervisor(seeded: Session) -> None:
    """A county supervisor sees the county's cases at county level or above only."""
    boss = Principal(username="s", role=Role.SUPERVISOR, jurisdiction="longmen",
                     jurisdiction_path="/huizhou/longmen/", level=Level.COUNTY,
                     department=None, display_name="s")
    k = compute(seeded, period=PERIOD, scope=case_scope(boss), now=NOW)
    assert k.by_level == {"county": 1}
    assert [r.key for r in k.by_department] == ["lm-justice"]


def test_an_empty_read_model_gives_no_rate_and_no_error(session: Session) -> None:
    k = compute(session, period=PERIOD, scope=None, now=NOW)
    assert isinstance(k, Kpis)
    assert k.cases == 0 and k.by_category == {} and k.by_level == {} and k.overdue == []
    assert k.by_department == k.by_town == k.by_county == []
    for rate in (k.overall.report_in, k.overall.sign_off, k.overall.resolution,
                 k.overall.satisfaction):
        assert rate == Rate(0, 0) and rate.value is None


def test_area_of_a_place_above_the_level_is_none() -> None:
    assert area_of(JIULONG, Level.COUNTY) == "huicheng"
    assert area_of(JIULONG, Level.TOWN) == "xiaojinkou"
    assert area_of("/huizhou/huicheng/", Level.TOWN) is None
    assert area_of("/huizhou/", Level.COUNTY) is None
