"""The escalation ladder (workflows/ladder.py) as plain code, with a hand clock and no
Temporal server: which clock is due when, what a missed clock does rung by rung, and the
rules that keep a case from being lifted twice. The same ladder runs inside the workflow
(tests/workflows/test_clocks.py plays it on the time-skipping server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from whistle.domain import (
    CaseIntake,
    CasePolicy,
    CaseStart,
    CaseState,
    Clock,
    EventKind,
    LadderAction,
    LadderStep,
    Level,
    Node,
    Recipient,
    Summons,
    SummonsStatus,
)
from workflows.ladder import Ladder
from workflows.timeline import Timeline

T0 = datetime(2026, 9, 1, 2, tzinfo=UTC)
H = timedelta(hours=1)
PATH = [Node(code="huizhou", level=Level.CITY), Node(code="huicheng", level=Level.COUNTY),
        Node(code="xiaojinkou", level=Level.TOWN), Node(code="jiulong", level=Level.VILLAGE)]
LADDER = [LadderStep(action=LadderAction.REMIND, after_hours=0),
          LadderStep(action=LadderAction.NOTIFY_SUPERVISOR, after_hours=24),
          LadderStep(action=LadderAction.RAISE, after_hours=48,
                     notify=[Recipient.CENTRE, Recipient.SUPERVISOR])]


class HandClock:
    """A hand clock for the timeline."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def case(*departments: str, warn_at: float | None = None) -> CaseState:
    start = CaseStart(case_id="0123456789abcdef", request_id="r", actor="coordinator-1",
                      intake=CaseIntake(category="neighbour", title="t", description="d",
                                        location="jiulong"),
                      path=PATH, departments=[])
    policy = CasePolicy(version="test", report_in_hours=24, sign_off_hours=120,
                        feedback_hours=168, max_reopens=1, ladder=LADDER, warn_at=warn_at)
    return CaseState(start=start, level=Level.TOWN, owner="xiaojinkou", policy=policy,
                     summonses=[Summons(department=d, supervisor=f"hc-{d}", summoned_at=T0,
                                        report_in_due=T0 + 24 * H, sign_off_due=T0 + 120 * H)
                                for d in departments])


async def plain_hours(start: datetime, step: LadderStep) -> datetime:
    return start + timedelta(hours=step.after_hours or 0)


def ladder_of(state: CaseState, warn: bool = True) -> tuple[Ladder, HandClock]:
    clock = HandClock()
    return Ladder(state, Timeline(state, clock), plain_hours, warn=warn), clock


async def run_until(ladder: Ladder, clock: HandClock, until: datetime) -> None:
    """Fire every due moment up to `until`, as the workflow's loop does."""
    while (due := ladder.next_due()) is not None and due <= until:
        clock.now = due
        await ladder.fire(due)


def kinds(state: CaseState) -> list[tuple[str, str | None]]:
    return [(e.kind, e.data.get("action")) for e in state.events]


async def test_a_missed_report_in_climbs_to_the_city_then_is_flagged_once():
    state = case("police")
    ladder, clock = ladder_of(state)
    assert ladder.next_due() == T0 + 24 * H
    await run_until(ladder, clock, T0 + 30 * 24 * H)
    assert kinds(state) == [
        (EventKind.CLOCK_MISSED, None), (EventKind.ESCALATED, "remind"),
        (EventKind.ESCALATED, "notify_supervisor"), (EventKind.ESCALATED, "raise"),
        (EventKind.ESCALATED, "raise"), (EventKind.ESCALATED, "unresolved_at_top")]
    assert [e.at - T0 for e in state.events] == [24 * H, 24 * H, 48 * H, 96 * H, 144 * H,
                                                 192 * H]
    assert state.level == Level.CITY and state.owner == "huizhou" and state.unresolved_at_top
    assert ladder.next_due() is None  # the top is reached: nothing more is scheduled
    [summons] = state.summonses
    assert summons.overdue and summons.escalations[0].done


async def test_each_rung_tells_whom_the_policy_says():
    state = case("police")
    ladder, clock = ladder_of(state)
    await run_until(ladder, clock, T0 + 4 * 24 * H)
    told = {}
    for n in state.notifications:
        told.setdefault(state.events[n.seq - 1].data.get("action"), []).append(n.recipient)
    assert told == {"remind": ["department:police"],
                    "notify_supervisor": ["department:hc-police"],
                    "raise": ["centre:huicheng", "department:hc-police"]}


async def test_two_departments_missing_the_same_clock_lift_the_case_one_level():
    state = case("police", "justice")
    ladder, clock = ladder_of(state)
    await run_until(ladder, clock, T0 + 97 * H)  # both ladders take their first raise (96 h)
    raises = [e for e in state.events if e.data.get("action") == "raise"]
    assert len(raises) == 2 and state.level == Level.COUNTY
    assert raises[1].data["already_at"] == "county"


async def test_reporting_in_stops_the_report_in_ladder_and_the_sign_off_clock_runs():
    state = case("police")
    ladder, clock = ladder_of(state)
    await run_until(ladder, clock, T0 + 25 * H)  # missed, reminded
    summons = state.summonses[0]
    summons.status = SummonsStatus.REPORTED_IN
    for e in summons.escalations:
        e.done = True  # what the report-in step does (_settle)
    assert summons.running_clock == (Clock.SIGN_OFF, T0 + 120 * H)
    assert not summons.overdue
    assert ladder.next_due() == T0 + 120 * H


async def test_a_clock_warns_once_at_its_share_and_a_missed_one_gets_no_warning():
    state = case("police", warn_at=0.8)
    ladder, clock = ladder_of(state)
    assert ladder.next_due() == T0 + 24 * H * 0.8
    await run_until(ladder, clock, T0 + 24 * H * 0.8)
    assert kinds(state) == [(EventKind.CLOCK_WARNING, None)]
    assert sorted(n.recipient for n in state.notifications) == [
        "centre:xiaojinkou", "department:police"]
    late = case("justice", warn_at=0.8)
    ladder, clock = ladder_of(late)
    clock.now = T0 + 30 * H  # the worker was away past the due: the ladder, not a warning
    await ladder.fire(clock.now)
    assert [k for k, _ in kinds(late)][:2] == [EventKind.CLOCK_MISSED, EventKind.ESCALATED]
    assert EventKind.CLOCK_WARNING not in [k for k, _ in kinds(late)]


async def test_runs_recorded_before_warnings_give_none():
    state = case("police", warn_at=0.8)
    ladder, _ = ladder_of(state, warn=False)
    assert ladder.next_due() == T0 + 24 * H


@pytest.mark.parametrize("wait_days", [1, 2])
async def test_a_rung_in_working_days_is_counted_by_the_calendar_it_is_given(wait_days):
    """The workflow counts working days through the calendar activity; here a stand-in
    that skips a fixed 'weekend' proves the ladder asks it for every such rung."""
    asked = []

    async def calendar(start: datetime, step: LadderStep) -> datetime:
        asked.append((start, step.action))
        if step.after_working_days:
            return start + timedelta(days=step.after_working_days + 2)
        return start + timedelta(hours=step.after_hours or 0)

    state = case("police")
    assert state.policy is not None
    state.policy.ladder = [LADDER[0], LadderStep(action=LadderAction.NOTIFY_SUPERVISOR,
                                                 after_working_days=wait_days)]
    clock = HandClock()
    ladder = Ladder(state, Timeline(state, clock), calendar)
    await run_until(ladder, clock, T0 + 10 * 24 * H)
    notified = [e for e in state.events if e.data.get("action") == "notify_supervisor"]
    assert notified[0].at == T0 + 24 * H + timedelta(days=wait_days + 2)
    assert asked[0] == (T0 + 24 * H, LadderAction.REMIND)
