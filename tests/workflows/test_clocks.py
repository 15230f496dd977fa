"""Clocks of a case on the time-skipping server: report-in, sign-off, feedback, and the
escalation ladder a missed clock climbs (催办 → 督办 → 提级, every 48 h up to the city).

Sample policy (whistle/data/policy.yaml): report-in 24 h, sign-off 120 h after the summons
(land 240 h), feedback 168 h; ladder remind @0 h → notify_supervisor @+24 h → raise @+48 h,
repeating every 48 h."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.testing import WorkflowEnvironment

from tests.helpers import POLICY, new_worker
from tests.workflows.conftest import Cases
from tests.workflows.support import (
    assert_at,
    db_case,
    db_summonses,
    decide_extension,
    events,
    fresh_queue,
    one,
    outbox_for,
    record_outcome,
    report_in,
    request_extension,
    settle_all,
    sign_off,
    skip,
    skip_past,
    state,
    worker_on,
)
from whistle.domain import (
    ActivityName,
    CaseStatus,
    Clock,
    ClockSpec,
    CloseReason,
    EventKind,
    ExtensionStatus,
    LadderAction,
    Level,
    OutcomeKind,
    PlannedDeadline,
    PlanRequest,
)

H = timedelta(hours=1)
REMIND, NOTIFY, RAISE = LadderAction.REMIND, LadderAction.NOTIFY_SUPERVISOR, LadderAction.RAISE


async def test_missed_report_in_climbs_the_ladder_to_the_city_and_stops(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police"])
        s = await state(h)
        case_id, due = s.case_id, s.summonses[0].report_in_due
        assert due == s.opened_at + 24 * H

        await skip_past(time_env, due - H)
        assert not events(await state(h), EventKind.CLOCK_MISSED)

        # at due: missed, and the department is reminded (催办)
        await skip_past(time_env, due)
        s = await state(h)
        missed = one(events(s, EventKind.CLOCK_MISSED))
        assert (missed.department, missed.data["clock"]) == ("xjk-police", "report_in")
        assert missed.data["due"] == due.isoformat()
        assert_at(missed, due)
        remind = one(events(s, action=REMIND))
        assert_at(remind, due)
        assert outbox_for(engine, case_id, remind.seq) == ["department:xjk-police"]
        assert s.overdue and s.summonses[0].overdue
        assert db_case(engine, case_id).overdue
        assert db_summonses(engine, case_id)[0].escalation == "remind"

        # +24 h: its supervisor is told (督办)
        await skip_past(time_env, due + 24 * H)
        notify = one(events(await state(h), action=NOTIFY))
        assert_at(notify, due + 24 * H)
        assert outbox_for(engine, case_id, notify.seq) == ["department:hc-police"]

        # +48 h: the case rises to the county centre (提级)
        await skip_past(time_env, due + 72 * H)
        s = await state(h)
        raised = one(events(s, action=RAISE))
        assert_at(raised, due + 72 * H)
        assert raised.data.items() >= {"from_level": "town", "level": "county",
                                       "owner": "huicheng"}.items()
        assert (s.level, s.owner) == (Level.COUNTY, "huicheng")
        # the sample policy's raise step notifies [centre, supervisor]
        assert outbox_for(engine, case_id, raised.seq) == ["centre:huicheng",
                                                           "department:hc-police"]
        row = db_case(engine, case_id)
        assert (row.level, row.owner, row.overdue) == ("county", "huicheng", True)

        # +48 h more: the city
        await skip_past(time_env, due + 120 * H)
        s = await state(h)
        to_city = events(s, action=RAISE)[-1]
        assert_at(to_city, due + 120 * H)
        assert (to_city.data["from_level"], to_city.data["level"]) == ("county", "city")
        assert (s.level, s.owner) == (Level.CITY, "huizhou")
        assert outbox_for(engine, case_id, to_city.seq) == ["centre:huizhou",
                                                            "department:hc-police"]
        assert not s.unresolved_at_top

        # +48 h more: nothing above the city, the case is flagged and the ladder stops
        await skip_past(time_env, due + 168 * H)
        s = await state(h)
        top = one(events(s, action="unresolved_at_top"))
        assert_at(top, due + 168 * H)
        assert outbox_for(engine, case_id, top.seq) == ["centre:huizhou"]
        assert s.unresolved_at_top and db_case(engine, case_id).unresolved_at_top
        assert s.status == CaseStatus.OPEN

        await skip(time_env, days=20)
        later = await state(h)
        assert later.events == s.events
        assert [e.kind for e in events(later, after=missed.seq - 1)] == [
            EventKind.CLOCK_MISSED] + [EventKind.ESCALATED] * 5


async def test_summons_still_overdue_after_the_ladder_tops_out(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police"])
        due = (await state(h)).summonses[0].report_in_due
        await skip_past(time_env, due + 168 * H)
        s = await state(h)
        assert s.unresolved_at_top
        assert s.summonses[0].reported_in_at is None
        assert s.overdue


async def test_missed_sign_off_climbs_the_ladder_after_report_in(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police"])
        await skip(time_env, hours=2)
        await report_in(h, "xjk-police")
        s = await state(h)
        due = s.summonses[0].sign_off_due
        assert due == s.summonses[0].summoned_at + 120 * H  # counted from the summons

        await skip_past(time_env, due - H)
        assert not events(await state(h), EventKind.CLOCK_MISSED)

        await skip_past(time_env, due)
        s = await state(h)
        missed = one(events(s, EventKind.CLOCK_MISSED))
        assert missed.data["clock"] == Clock.SIGN_OFF
        assert_at(missed, due)
        assert_at(one(events(s, action=REMIND)), due)
        assert one(events(s, action=REMIND)).data["clock"] == "sign_off"
        assert db_case(engine, s.case_id).overdue

        await skip_past(time_env, due + 24 * H)
        notify = one(events(await state(h), action=NOTIFY))
        assert_at(notify, due + 24 * H)
        assert outbox_for(engine, s.case_id, notify.seq) == ["department:hc-police"]

        await skip_past(time_env, due + 72 * H)
        s = await state(h)
        assert_at(one(events(s, action=RAISE)), due + 72 * H)
        assert s.level == Level.COUNTY

        result = await sign_off(h, "xjk-police")
        s = await state(h)
        assert one(events(s, EventKind.SIGNED_OFF)).data["late"] is True
        assert not s.overdue and not db_case(engine, s.case_id).overdue
        await skip(time_env, days=10)
        assert (await state(h)).events[-1].seq == result.seq


async def test_two_departments_missing_together_raise_the_case_one_level(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police", "xjk-justice"])
        due = (await state(h)).summonses[0].report_in_due

        await skip_past(time_env, due)
        s = await state(h)
        assert len(events(s, EventKind.CLOCK_MISSED)) == 2
        assert len(events(s, action=REMIND)) == 2

        await skip_past(time_env, due + 72 * H)
        s = await state(h)
        assert (s.level, s.owner) == (Level.COUNTY, "huicheng")
        raises = events(s, action=RAISE)
        assert len(raises) == 2
        assert [r.data.get("from_level") for r in raises] == ["town", None]
        assert raises[1].data["already_at"] == "county"  # recorded, not lifted again
        assert len([e for e in s.events if e.data.get("level") == "city"]) == 0

        await skip_past(time_env, due + 120 * H)
        s = await state(h)
        assert s.level == Level.CITY
        assert [r.data.get("from_level") for r in events(s, action=RAISE)] == [
            "town", None, "county", None]

        await skip_past(time_env, due + 168 * H)
        s = await state(h)
        assert s.unresolved_at_top
        assert len(events(s, action="unresolved_at_top")) == 1


async def test_late_report_in_stops_the_ladder_and_clears_overdue(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-land-office"], category="land")  # sign-off 240 h
        due = (await state(h)).summonses[0].report_in_due
        await skip_past(time_env, due + 30 * H)  # reminded and its supervisor told
        s = await state(h)
        assert [e.data["action"] for e in events(s, EventKind.ESCALATED)] == [REMIND, NOTIFY]
        assert s.overdue and db_case(engine, s.case_id).overdue

        result = await report_in(h, "xjk-land-office")
        s = await state(h)
        reported = one(events(s, EventKind.REPORTED_IN))
        assert reported.data["late"] is True
        assert not s.overdue and not s.summonses[0].overdue
        assert all(e.done for e in s.summonses[0].escalations)
        assert not db_case(engine, s.case_id).overdue
        assert not db_summonses(engine, s.case_id)[0].overdue

        await skip(time_env, days=6)  # the raise would have come at due + 72 h
        s = await state(h)
        # No ladder step after the late report-in; only the sign-off clock's warning at 80%
        # of its 240 h (192 h after the summons).
        assert [e.kind for e in s.events if e.seq > result.seq] == [EventKind.CLOCK_WARNING]
        assert s.level == Level.TOWN


async def test_steps_after_the_ladder_topped_out_are_still_late(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    """Once a ladder has run out at the city it is done, not running: `late` must still
    say the department was late (it feeds the on-time rates)."""
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-land-office"], category="land")
        x = (await state(h)).summonses[0]
        await skip_past(time_env, x.report_in_due + 168 * H)
        s = await state(h)
        assert s.unresolved_at_top and all(e.done for e in s.summonses[0].escalations)
        await report_in(h, "xjk-land-office")
        assert one(events(await state(h), EventKind.REPORTED_IN)).data["late"] is True

        await skip_past(time_env, x.sign_off_due + 168 * H)
        assert all(e.done for e in (await state(h)).summonses[0].escalations)
        await sign_off(h, "xjk-land-office")
        assert one(events(await state(h), EventKind.SIGNED_OFF)).data["late"] is True


async def test_approved_extension_moves_sign_off_due_and_stops_its_ladder(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police"])
        await report_in(h, "xjk-police")
        old_due = (await state(h)).summonses[0].sign_off_due
        await skip_past(time_env, old_due)  # missed and reminded
        assert (await state(h)).overdue

        new_due = old_due + 72 * H
        await request_extension(h, "xjk-police", new_due)
        s = await state(h)
        ext = s.summonses[0].extension
        assert ext is not None and ext.status == ExtensionStatus.PENDING
        assert s.summonses[0].sign_off_due == old_due  # nothing moves before the decision
        assert outbox_for(engine, s.case_id, s.events[-1].seq) == ["centre:xiaojinkou"]

        result = await decide_extension(h, "xjk-police", approve=True)
        s = await state(h)
        x = s.summonses[0]
        assert x.extension is not None and x.extension.status == ExtensionStatus.APPROVED
        assert x.sign_off_due == new_due
        assert not s.overdue and all(e.done for e in x.escalations)
        decided = one(events(s, EventKind.EXTENSION_DECIDED))
        assert decided.data["approved"] is True
        assert decided.data["sign_off_due"] == new_due.isoformat()
        assert outbox_for(engine, s.case_id, decided.seq) == ["department:xjk-police"]
        assert db_summonses(engine, s.case_id)[0].sign_off_due == new_due
        assert db_summonses(engine, s.case_id)[0].extension_status == "approved"

        await skip_past(time_env, old_due + 30 * H)  # past where 督办 would have come
        assert (await state(h)).events[-1].seq == result.seq

        await skip_past(time_env, new_due)  # the new deadline is a clock of its own
        s = await state(h)
        missed = events(s, EventKind.CLOCK_MISSED)
        assert [m.data["due"] for m in missed] == [old_due.isoformat(), new_due.isoformat()]
        assert_at(missed[-1], new_due)


async def test_refused_extension_keeps_the_deadline(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police"])
        await report_in(h, "xjk-police")
        due = (await state(h)).summonses[0].sign_off_due
        await request_extension(h, "xjk-police", due + 48 * H)
        await decide_extension(h, "xjk-police", approve=False)
        s = await state(h)
        x = s.summonses[0]
        assert x.extension is not None and x.extension.status == ExtensionStatus.REFUSED
        assert x.sign_off_due == due
        assert one(events(s, EventKind.EXTENSION_DECIDED)).data["approved"] is False

        await skip_past(time_env, due)  # the clock runs out when it always would have
        assert_at(one(events(await state(h), EventKind.CLOCK_MISSED)), due)

        # a refused request may be followed by a new one
        await request_extension(h, "xjk-police", due + 48 * H)
        x = (await state(h)).summonses[0]
        assert x.extension is not None and x.extension.status == ExtensionStatus.PENDING


async def test_no_feedback_within_168h_closes_the_case(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police"])
        await settle_all(h, "xjk-police")
        await record_outcome(h, OutcomeKind.ADMINISTRATIVE_RESOLUTION)
        s = await state(h)
        feedback_due = s.feedback_due
        assert feedback_due == one(events(s, EventKind.OUTCOME)).at + 168 * H
        assert db_case(engine, s.case_id).feedback_due == feedback_due

        await skip_past(time_env, feedback_due - H)
        assert (await state(h)).status == CaseStatus.AWAITING_FEEDBACK

        await skip_past(time_env, feedback_due)
        final = await h.result()
    assert (final.status, final.close_reason) == (CaseStatus.CLOSED, CloseReason.NO_FEEDBACK)
    closed = one(events(final, EventKind.CLOSED))
    assert (closed.actor, closed.data["reason"]) == ("system", "no_feedback")
    assert_at(closed, feedback_due)
    assert db_case(engine, final.case_id).close_reason == "no_feedback"


async def test_working_day_clocks_are_planned_by_the_calendar_activity(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    """An environment case's sign-off clock is 10 working days: the workflow hands the
    clock spec to plan_clocks and uses the deadline it returns, unchanged, with its
    provisional mark kept on the summons, the timeline and the read model."""
    seen: list[PlanRequest] = []

    @activity.defn(name=ActivityName.PLAN_CLOCKS)
    def plan_clocks(req: PlanRequest) -> list[list[PlannedDeadline]]:
        seen.append(req)
        return [[PlannedDeadline(due=r.start + timedelta(days=3 + i),
                                 provisional=c.working_days is not None)
                 for i, c in enumerate(r.clocks)] for r in req.requests]

    async with worker_on(time_env.client, engine, fresh_queue(), plan_clocks) as worker:
        h = await cases.start(worker, ["xjk-law-enforcement"], category="environment")
        s = await state(h)
    [request] = seen[0].requests
    assert request.clocks == [ClockSpec(hours=24), ClockSpec(working_days=10)]
    summons = s.summonses[0]
    assert summons.report_in_due == request.start + timedelta(days=3)
    assert summons.sign_off_due == request.start + timedelta(days=4)
    assert summons.provisional == [Clock.SIGN_OFF]
    assert one(events(s, EventKind.SUMMONED)).data["provisional"] == ["sign_off"]
    [row] = db_summonses(engine, s.case_id)
    assert (row.report_in_provisional, row.sign_off_provisional) == (False, True)
    assert db_case(engine, s.case_id).provisional  # the sign-off clock is still to run


# --- early warning (预警) -------------------------------------------------------------------


async def test_a_clock_warns_once_at_its_policy_share_then_the_next_clock_warns(
        time_env: WorkflowEnvironment, engine: Engine, cases: Cases) -> None:
    """Sample policy: warn at 80% of a clock. Neighbour report-in is 24 h: warned at 19.2 h,
    to the department and its centre, once; missed at 24 h with no second warning. The
    sign-off clock (120 h from the summons) warns at 96 h on its own."""
    async with new_worker(time_env.client, engine) as worker:
        h = await cases.start(worker, ["xjk-police"])
        s = await state(h)
        summoned, due = s.summonses[0].summoned_at, s.summonses[0].report_in_due
        await skip_past(time_env, summoned + 19 * H)
        assert events(await state(h), EventKind.CLOCK_WARNING) == []

        await skip_past(time_env, summoned + 19.2 * H)
        s = await state(h)
        warning = one(events(s, EventKind.CLOCK_WARNING))
        assert_at(warning, summoned + 19.2 * H)
        assert warning.department == "xjk-police"
        assert warning.data == {"clock": Clock.REPORT_IN, "due": due.isoformat()}
        await settle_for(h)
        assert sorted(outbox_for(engine, s.case_id, warning.seq)) == [
            "centre:xiaojinkou", "department:xjk-police"]

        await skip_past(time_env, due + H)  # missed: the ladder, not another warning
        s = await state(h)
        assert len(events(s, EventKind.CLOCK_WARNING)) == 1
        one(events(s, EventKind.CLOCK_MISSED))

        await report_in(h, "xjk-police")  # late
        await skip_past(time_env, summoned + 96 * H)
        s = await state(h)
        warnings = events(s, EventKind.CLOCK_WARNING)
        assert [w.data["clock"] for w in warnings] == [Clock.REPORT_IN, Clock.SIGN_OFF]
        assert_at(warnings[1], summoned + 96 * H)


async def test_no_warning_when_the_policy_sets_none(
        time_env: WorkflowEnvironment, engine: Engine, tmp_path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.read_text().replace("warn_at: 0.8", "warn_at: null"))
    async with new_worker(time_env.client, engine, policy=policy) as worker:
        c = Cases(time_env, engine)
        h = await c.start(worker, ["xjk-police"])
        due = (await state(h)).summonses[0].report_in_due
        await skip_past(time_env, due + H)
        s = await state(h)
        assert events(s, EventKind.CLOCK_WARNING) == []
        one(events(s, EventKind.CLOCK_MISSED))
        await h.terminate("test over")


async def settle_for(h) -> None:
    """Wait until the case's events are in the read model."""
    for _ in range(100):
        s = await state(h)
        if s.projected_seq == s.events[-1].seq:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the read model did not catch up")
