"""Working-day clocks through the calendar years, on a time-skipping server of their own
(it is moved to fixed dates in 2026 and 2027, which the session's shared server must not be):
the ladder across the provisional 2027 Spring Festival, planning that fails and is retried,
and provisional deadlines recomputed when an official arrangement arrives.

Every `calendar:` block written below is TEST DATA, not the State Council's arrangement."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy.engine import Engine
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.conftest import start_time_skipping
from tests.helpers import SAMPLE_POLICY, case_state, new_worker, start_case
from tests.workflows.support import (
    COORDINATOR,
    assert_at,
    db_case,
    db_summonses,
    events,
    one,
    outbox_for,
    record_outcome,
    refs,
    rejected,
    report_in,
    settle_all,
    state,
)
from whistle.domain import (
    CaseStatus,
    Clock,
    EventKind,
    LadderAction,
    OutcomeKind,
    RecomputeDeadlines,
    RetryPlanning,
    SummonMore,
)
from whistle.workdays import is_workday
from workflows.case import RETRY_PLANNING, CaseWorkflow

SH = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)


def local(y: int, m: int, d: int, h: int = 10) -> datetime:
    return datetime(y, m, d, h, tzinfo=SH).astimezone(UTC)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for this module alone: its clock is moved to fixed dates."""
    e = await start_time_skipping()
    yield e
    await e.shutdown()


@pytest.fixture
async def handles() -> AsyncIterator[list[WorkflowHandle]]:
    made: list[WorkflowHandle] = []
    yield made
    for h in made:
        with contextlib.suppress(Exception):
            await h.terminate("test over")


async def move_to(env: WorkflowEnvironment, when: datetime) -> None:
    now = await env.get_current_time()
    assert when > now, f"the module's clock is already past {when} ({now}): reorder the tests"
    await env.sleep(when - now)


def policy_copy(tmp_path: Path, calendar: dict[int, dict[str, list[str]]] | None = None,
                **category: dict[str, object]) -> Path:
    """The sample policy (working-day ladder), with categories changed and a TEST-DATA
    calendar block if given."""
    doc = yaml.safe_load(SAMPLE_POLICY.read_text(encoding="utf-8"))
    for name, changes in category.items():
        doc["categories"][name].update(changes)
    if calendar is not None:
        doc["calendar"] = calendar
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# --- the ladder over the 2027 Spring Festival (provisional) --------------------------------


async def test_the_ladder_counts_working_days_over_the_spring_festival(
        env: WorkflowEnvironment, engine: Engine, handles: list[WorkflowHandle]) -> None:
    """Sample policy: report-in 24 h, then 催办 at once, 督办 a working day later, 提级 every
    two working days. Opened Wednesday 3 February 2027: report-in missed Thursday 4th; the
    Spring Festival (除夕 5th to 初三 8th, with the weekend) is no working day, so 督办
    comes Tuesday 9th, 提级 Thursday 11th (to the county) and Monday 15th (to the city) —
    none on a rest day, where plain hours would have sent 督办 on 除夕."""
    await move_to(env, local(2027, 2, 3))
    async with new_worker(env.client, engine, policy=SAMPLE_POLICY) as worker:
        h = await start_case(env.client, worker,
                             case_state(engine, ["xjk-law-enforcement"], category="environment"))
        handles.append(h)
        s = await state(h)
        summons = s.summonses[0]
        assert summons.report_in_due == s.opened_at + 24 * H
        # 10 working days: 4, 9, 10, 11, 12, 15, 16, 17, 18, 19 February
        assert summons.sign_off_due.astimezone(SH).date() == local(2027, 2, 19).date()
        assert summons.provisional == [Clock.SIGN_OFF]
        assert db_summonses(engine, s.case_id)[0].sign_off_provisional

        await env.sleep(local(2027, 2, 16) - await env.get_current_time())
        s = await state(h)
    ladder = [e for e in events(s, EventKind.ESCALATED) if "action" in e.data]
    assert [e.data["action"] for e in ladder] == [
        LadderAction.REMIND, LadderAction.NOTIFY_SUPERVISOR, LadderAction.RAISE,
        LadderAction.RAISE]  # town → county → city; at the city on Wednesday 17th
    opened = s.opened_at
    assert_at(ladder[0], opened + 24 * H)  # Thursday 4th
    assert_at(ladder[1], opened + 6 * 24 * H)  # Tuesday 9th
    assert_at(ladder[2], opened + 8 * 24 * H)  # Thursday 11th
    assert_at(ladder[3], opened + 12 * 24 * H)  # Monday 15th
    for e in ladder[1:]:
        assert is_workday(e.at.astimezone(SH).date()), f"{e.data['action']} on a rest day"
    assert s.level == "city"


# --- planning that fails: visible, told, recoverable ---------------------------------------


async def test_a_case_whose_planning_fails_is_visible_told_and_recovers(
        env: WorkflowEnvironment, engine: Engine, tmp_path: Path,
        handles: list[WorkflowHandle]) -> None:
    """The policy file is broken (an operator's bad edit) before a case opens: the case is
    opened all the same, listed with the reason, its centre told; no department can be
    summoned and no outcome recorded meanwhile; a retry while still broken says so; once
    the file is mended a coordinator's retry summons the intake's departments."""
    policy = policy_copy(tmp_path)
    good = policy.read_text(encoding="utf-8")
    async with new_worker(env.client, engine, policy=policy) as worker:
        h = await open_on_broken_policy(env, worker, engine, policy, "version: broken\n"
                                        "defaults: {}\n", handles)
        s = await state(h)
        assert s.status == CaseStatus.OPEN and s.summonses == [] and s.policy is None
        assert s.attention is not None and "defaults" in s.attention.reason
        warned = one(events(s, EventKind.NEEDS_ATTENTION))
        assert warned.data["code"] == "planning_failed"
        row = db_case(engine, s.case_id)
        assert row.attention == s.attention.reason and row.status == "open"
        assert outbox_for(engine, s.case_id, warned.seq) == ["centre:xiaojinkou"]

        assert await rejected(h, CaseWorkflow.summon_more, _summon(engine)) == "needs_attention"
        with pytest.raises(WorkflowUpdateFailedError) as again:
            await h.execute_update(CaseWorkflow.retry_planning, RetryPlanning(actor=COORDINATOR))
        assert isinstance(again.value.cause, ApplicationError)
        assert again.value.cause.type == "planning_failed"
        assert (await state(h)).attention.attempts == 2  # type: ignore[union-attr]

        policy.write_text(good, encoding="utf-8")
        await h.execute_update(CaseWorkflow.retry_planning, RetryPlanning(actor=COORDINATOR))
        s = await state(h)
        assert s.attention is None and s.policy is not None
        resolved = one(events(s, EventKind.ATTENTION_RESOLVED))
        assert resolved.actor == COORDINATOR and resolved.data["policy_version"]
        summoned = one(events(s, EventKind.SUMMONED))
        assert summoned.seq > resolved.seq and summoned.actor == s.start.actor
        assert db_case(engine, s.case_id).attention is None
        await settle_all(h, "xjk-police")
        await record_outcome(h, OutcomeKind.ADMINISTRATIVE_RESOLUTION)


async def test_a_case_waiting_for_its_planning_retries_by_itself(
        env: WorkflowEnvironment, engine: Engine, tmp_path: Path,
        handles: list[WorkflowHandle]) -> None:
    policy = policy_copy(tmp_path)
    good = policy.read_text(encoding="utf-8")
    async with new_worker(env.client, engine, policy=policy) as worker:
        h = await open_on_broken_policy(env, worker, engine, policy, "version: [unclosed\n",
                                        handles)
        s = await state(h)
        assert s.attention is not None and "not valid YAML" in s.attention.reason
        policy.write_text(good, encoding="utf-8")
        await env.sleep(RETRY_PLANNING + H)
        s = await state(h)
    assert s.attention is None and len(s.summonses) == 1
    assert one(events(s, EventKind.ATTENTION_RESOLVED)).actor == "system"


async def open_on_broken_policy(env: WorkflowEnvironment, worker: Worker, engine: Engine,
                                policy: Path, broken: str, handles: list[WorkflowHandle]
                                ) -> WorkflowHandle:
    """Break the policy file (an operator's bad edit), then open a neighbour case."""
    policy.write_text(broken, encoding="utf-8")
    h = await start_case(env.client, worker,
                         case_state(engine, ["xjk-police"], category="neighbour"))
    handles.append(h)
    return h


def _summon(engine: Engine) -> SummonMore:
    return SummonMore(actor=COORDINATOR, departments=refs(engine, "xjk-justice"))


# --- provisional deadlines recomputed -----------------------------------------------------


async def test_provisional_deadlines_move_when_the_arrangement_arrives_and_fired_stay_fired(
        env: WorkflowEnvironment, engine: Engine, tmp_path: Path,
        handles: list[WorkflowHandle]) -> None:
    """Environment cases with report-in 1 working day and sign-off 10, opened Monday 1 March
    2027 (provisional): report-in due Tuesday 2nd, sign-off Monday 15th. Report-in is missed.
    Then a TEST-DATA arrangement for 2027 makes 2 and 8 March holidays and Saturday 6th a
    workday: recomputing keeps the fired report-in clock where it fired (noting the official
    due, 3rd) and moves sign-off to Tuesday 16th, no longer provisional, as a recorded step
    that tells the department and the centre. A case recomputed before the arrangement
    arrives is refused as unchanged, and nothing is left to recompute afterwards."""
    env_category = {"report_in_working_days": 1}
    policy = policy_copy(tmp_path, environment=env_category)
    await move_to(env, local(2027, 3, 1))
    async with new_worker(env.client, engine, policy=policy) as worker:
        a = await start_case(env.client, worker, case_state(
            engine, ["xjk-law-enforcement"], category="environment"))
        b = await start_case(env.client, worker, case_state(
            engine, ["xjk-law-enforcement"], category="environment"))
        handles += [a, b]
        s = await state(a)
        summons = s.summonses[0]
        t0 = summons.summoned_at  # 1 March, 10:00 and a few milliseconds

        def march(day: int) -> datetime:
            return t0 + timedelta(days=day - 1)  # Shanghai has no daylight saving

        assert (summons.report_in_due, summons.sign_off_due) == (march(2), march(15))
        assert summons.provisional == [Clock.REPORT_IN, Clock.SIGN_OFF]
        assert db_case(engine, s.case_id).provisional

        before = await state(b)
        with pytest.raises(WorkflowUpdateFailedError) as unchanged:
            await b.execute_update(CaseWorkflow.recompute_deadlines,
                                   RecomputeDeadlines(actor=COORDINATOR))
        assert unchanged.value.cause.type == "deadlines_unchanged"  # type: ignore[union-attr]
        assert (await state(b)).events == before.events

        await env.sleep(local(2027, 3, 2, 11) - await env.get_current_time())
        missed = one(events(await state(a), EventKind.CLOCK_MISSED))
        policy_copy(tmp_path, calendar={2027: {  # TEST DATA, not the real arrangement
            "holidays": ["2027-03-02", "2027-03-08"], "workdays": ["2027-03-06"]}},
            environment=env_category)
        result = await a.execute_update(CaseWorkflow.recompute_deadlines, RecomputeDeadlines(
            actor=COORDINATOR, reason="2027 arrangement published"))
        s = await state(a)
        assert await rejected(a, CaseWorkflow.recompute_deadlines,
                              RecomputeDeadlines(actor=COORDINATOR)) == "nothing_provisional"
    step = one(events(s, EventKind.DEADLINES_RECOMPUTED))
    assert step.seq == result.seq and step.actor == COORDINATOR
    assert step.data["changes"] == [
        {"department": "xjk-law-enforcement", "clock": "report_in",
         "from": march(2).isoformat(), "kept": "fired", "official_due": march(3).isoformat()},
        {"department": "xjk-law-enforcement", "clock": "sign_off",
         "from": march(15).isoformat(), "to": march(16).isoformat(), "provisional": False}]
    summons = s.summonses[0]
    assert summons.report_in_due == march(2)  # fired, stays fired
    assert summons.escalations[0].missed_at == march(2) and missed.seq < step.seq
    assert (summons.sign_off_due, summons.provisional) == (march(16), [])
    row = db_summonses(engine, s.case_id)[0]
    assert row.sign_off_due == march(16) and not row.sign_off_provisional
    assert not row.report_in_provisional and not db_case(engine, s.case_id).provisional
    assert sorted(outbox_for(engine, s.case_id, step.seq)) == [
        "centre:xiaojinkou", "department:xjk-law-enforcement"]


async def test_recompute_is_refused_when_nothing_is_provisional(
        env: WorkflowEnvironment, engine: Engine, handles: list[WorkflowHandle]) -> None:
    async with new_worker(env.client, engine, policy=SAMPLE_POLICY) as worker:
        h = await start_case(env.client, worker, case_state(engine, ["xjk-police"],
                                                            category="neighbour"))
        handles.append(h)
        await report_in(h, "xjk-police")
        code = await rejected(h, CaseWorkflow.recompute_deadlines,
                              RecomputeDeadlines(actor=COORDINATOR))
    assert code == "nothing_provisional"

