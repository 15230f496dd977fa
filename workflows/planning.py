"""How a case plans its clocks, and what it does when it cannot: the part of CaseWorkflow
(a mixin of it) that reads the policy, counts deadlines on the working-day calendar
(official or provisional, whistle/workdays.py, always in an activity), marks a case that
cannot go on as needing attention (需人工处理) and resumes it, and recounts provisional
deadlines when an official arrangement arrives (期限重算).

It uses what CaseWorkflow holds: `case` (the state), `_calendar` and `_local_reads` (the
patches this run follows), `_busy`, `_summoning` and `_resuming` (steps in flight), and its
`_event`, `_notify`, `_planning`, `_commit`, `_flush` and `_policy`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from whistle.domain import (
        ActivityName,
        Attention,
        CasePolicy,
        CaseState,
        CaseStatus,
        Clock,
        ClockSpec,
        DeadlineRequest,
        DepartmentRef,
        EventKind,
        LadderStep,
        PlannedDeadline,
        PlanRequest,
        RecomputeDeadlines,
        RetryPlanning,
        StepResult,
        Summons,
    )
    from workflows.timeline import centre, department

# Reading the policy or the read model may wait for a database that is down: keep trying,
# the case just waits (nothing a user submitted is lost, it is in history already).
IO_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))
IO_TIMEOUT = timedelta(seconds=30)
# Planning (policy and calendar) is a pure computation on local files: what fails three
# times fails for a reason (a broken policy file, a year no calendar covers) that waiting
# does not mend. It is given up quickly and the case says so (needs attention) instead of
# retrying unseen; the case tries again every RETRY_PLANNING and on a coordinator's request.
_PLAN_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
RETRY_PLANNING = timedelta(hours=1)
T = TypeVar("T")


class StepRejected(ApplicationError):
    """A step that does not fit the case's state; `code` is stable for API clients."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, type=code, non_retryable=True)


class PlanningFailed(Exception):
    """The policy could not be read or a deadline could not be planned; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Due:
    """A provisional deadline to count again: its clock, where it stands, what it was
    counted from, and whose it is (None: the case's feedback clock)."""

    clock: Clock
    due: datetime
    start: datetime
    length: ClockSpec
    summons: Summons | None


class Planning:
    """The planning part of CaseWorkflow (see the module's docstring): opening a case,
    summoning, counting deadlines, needing attention, recounting."""

    case: CaseState
    _calendar: bool
    _local_reads: bool
    _busy: set[str]
    _summoning: set[str]
    _resuming: bool
    _event: Any
    _notify: Any
    _planning: Any
    _commit: Any
    _flush: Any
    _policy: CasePolicy

    async def _open(self) -> None:
        """受理: read the policy, plan the intake's summonses, and record the case. If
        planning fails the case is recorded all the same, marked as needing attention with
        the reason (its centre told), and tries again later: a case is never invisible."""
        now = workflow.now()
        self.case.opened_at = now
        problem = None
        try:
            self.case.policy = await self._load_policy()
            planned = await self._plan_summonses(now)
        except PlanningFailed as e:
            problem = e.reason
        intake = self.case.start.intake
        self._event(EventKind.OPENED, self.case.start.actor, None, at=now,
                    category=intake.category, level=self.case.level, owner=self.case.owner,
                    policy_version=self.case.policy.version if self.case.policy else None,
                    repeat_of=self.case.start.repeat_of or None)
        if problem is None:
            self._add_summonses(self.case.start.departments, now, planned,
                                self.case.start.actor, reason="intake")
        else:
            self._needs_attention(problem)
        await self._flush()

    async def _open_before_calendars(self) -> None:
        """`_open` as runs recorded before provisional calendars did it (replay only)."""
        self.case.policy = await self._load_policy()
        now = workflow.now()
        self.case.opened_at = now
        intake = self.case.start.intake
        self._event(
            EventKind.OPENED,
            self.case.start.actor,
            None,
            category=intake.category,
            level=self.case.level,
            owner=self.case.owner,
            policy_version=self.case.policy.version,
            repeat_of=self.case.start.repeat_of or None,
        )
        await self._summon(self.case.start.departments, self.case.start.actor, reason="intake")
        await self._flush()

    async def _summon(self, departments: list[DepartmentRef], actor: str, reason: str | None
                      ) -> None:
        """吹哨: plan both clocks from now and summon `departments` (a step that cannot be
        planned is refused, nothing summoned)."""
        codes = {d.code for d in departments}
        self._summoning |= codes
        try:
            now = workflow.now()
            with refused_if_unplanned():
                planned = await self._plan_summonses(now)
        finally:
            self._summoning -= codes
        self._add_summonses(departments, now, planned, actor, reason)

    def _add_summonses(self, departments: list[DepartmentRef], now: datetime,
                       planned: tuple[PlannedDeadline, PlannedDeadline], actor: str,
                       reason: str | None) -> None:
        report_in, sign_off = planned
        provisional = [c for c, p in ((Clock.REPORT_IN, report_in), (Clock.SIGN_OFF, sign_off))
                       if p.provisional]
        for d in departments:
            previous = self.case.current(d.code)
            self.case.summonses.append(Summons(
                department=d.code, supervisor=d.supervisor, lead=d.lead,
                round=previous.round + 1 if previous else 1, summoned_at=now,
                report_in_due=report_in.due, sign_off_due=sign_off.due,
                report_in_clock=self._policy.clock("report_in"),
                sign_off_clock=self._policy.clock("sign_off"), provisional=list(provisional),
            ))
            seq = self._event(EventKind.SUMMONED, actor, d.code, at=now, reason=reason,
                              report_in_due=report_in.due, sign_off_due=sign_off.due,
                              lead=d.lead or None, provisional=provisional or None)
            self._notify(seq, department(d.code))

    async def _load_policy(self) -> CasePolicy:
        """The policy in force now for the case's category; PlanningFailed when it cannot
        be read (runs before provisional calendars retry for ever instead)."""
        if not self._calendar:
            return await self._read(ActivityName.LOAD_POLICY, self.case.start.intake.category,
                                    CasePolicy)
        return await self._bounded(ActivityName.LOAD_POLICY, self.case.start.intake.category,
                                   CasePolicy)

    async def _bounded(self, name: str, arg: object, result_type: type[T]) -> T:
        try:
            return await workflow.execute_local_activity(
                name, arg, result_type=result_type, start_to_close_timeout=IO_TIMEOUT,
                retry_policy=_PLAN_RETRY)
        except (ActivityError, ApplicationError, ActivityTimeout) as e:
            # A local activity's last failure arrives as itself (ApplicationError), not
            # wrapped in an ActivityError as a remote activity's does.
            cause = e.cause if isinstance(e, ActivityError) else e
            raise PlanningFailed(cause.message if isinstance(cause, ApplicationError)
                                 else str(cause or e)) from e

    async def _plan(self, requests: list[DeadlineRequest]) -> list[list[PlannedDeadline]]:
        """The deadlines of each request, each saying whether it rests on a provisional
        calendar. One local activity for all; PlanningFailed when it cannot be done. Runs
        started before provisional calendars ask the old activity, once per request, as
        their histories recorded (and it retries for ever)."""
        if not self._calendar:
            return [[PlannedDeadline(due=d) for d in await self._read(
                ActivityName.PLAN_DEADLINES, r, list[datetime])]  # type: ignore[arg-type]
                for r in requests]
        return await self._bounded(ActivityName.PLAN_CLOCKS, PlanRequest(requests=requests),
                                   list[list[PlannedDeadline]])  # type: ignore[arg-type]

    async def _read(self, name: str, arg: object, result_type: type[T]) -> T:
        """Read the policy or plan deadlines: small reads of local files, each needed before
        the step can go on. Runs started since the `local-reads` patch run them as local
        activities (in the worker, inside the workflow task, recorded as one marker): an
        activity task of their own cost the server and the worker a round trip and a
        workflow task each, three per case. Older runs replay as they were recorded."""
        if self._local_reads:
            return await workflow.execute_local_activity(
                name, arg, result_type=result_type, start_to_close_timeout=IO_TIMEOUT,
                retry_policy=IO_RETRY)
        return await workflow.execute_activity(
            name, arg, result_type=result_type, start_to_close_timeout=IO_TIMEOUT,
            retry_policy=IO_RETRY)

    def _needs_attention(self, reason: str) -> None:
        """Mark the case as unable to go on, tell its centre (once per new reason), and
        set when it tries again."""
        now, was = workflow.now(), self.case.attention
        self.case.attention = Attention(
            code="planning_failed", reason=reason, since=was.since if was else now,
            retry_at=now + RETRY_PLANNING, attempts=was.attempts + 1 if was else 1)
        if was is None or was.reason != reason:
            self._tell_attention("planning_failed", reason, self.case.attention.retry_at)

    def _tell_attention(self, code: str, reason: str, retry_at: datetime | None = None) -> None:
        seq = self._event(EventKind.NEEDS_ATTENTION, "system", None, code=code, reason=reason,
                          retry_at=retry_at)
        self._notify(seq, centre(self.case.owner))

    def _retry_due(self) -> bool:
        a = self.case.attention
        return a is not None and not self._resuming and a.retry_at <= workflow.now()

    async def _resume(self, actor: str) -> bool:
        """Try the intake's planning again; on success summon its departments and clear the
        attention mark. False (the reason recorded, the next try set) when it fails again."""
        if self._resuming or self.case.attention is None:
            return self.case.attention is None
        self._resuming = True
        try:
            now = workflow.now()
            loaded = self.case.policy is None
            if loaded:
                self.case.policy = await self._load_policy()
            planned = await self._plan_summonses(now)
        except PlanningFailed as e:
            self._needs_attention(e.reason)
            return False
        finally:
            self._resuming = False
        if self.case.status == CaseStatus.CLOSED or self.case.attention is None:
            return True  # withdrawn meanwhile, or another retry got there first
        self.case.attention = None
        self._event(EventKind.ATTENTION_RESOLVED, actor, None, at=now,
                    policy_version=self._policy.version if loaded else None)
        # the intake's summonses, as its coordinator asked for them
        self._add_summonses(self.case.start.departments, now, planned, self.case.start.actor,
                            reason="intake")
        return True

    async def _after(self, start: datetime, step: LadderStep) -> datetime:
        """When ladder `step` is due, `start` being when the step before it was (or the
        clock was missed). Plain hours are counted here; working days ask the calendar. If
        the calendar cannot answer, the step is estimated in calendar days and the case
        marked for attention with the reason, never dropped."""
        wait = step.wait
        if wait is None:
            return start
        if wait.hours is not None:
            return start + timedelta(hours=wait.hours)
        try:
            [[planned]] = await self._plan([DeadlineRequest(start=start, clocks=[wait])])
        except PlanningFailed as e:
            self._tell_attention("ladder_estimated", f"ladder step {step.action} counted in "
                                 f"calendar days, the calendar failing: {e.reason}")
            return start + timedelta(days=wait.working_days or 0)
        return planned.due

    @workflow.update
    async def recompute_deadlines(self, step: RecomputeDeadlines) -> StepResult:
        """期限重算: count the provisional deadlines of the clocks still running again, on
        the calendar known now (an official arrangement published since), and record what
        moved; a clock that already fired stays fired."""
        targets = self._provisional_dues()
        async with self._planning("step:recompute"):
            with refused_if_unplanned():
                planned = await self._plan(
                    [DeadlineRequest(start=t.start, clocks=[t.length]) for t in targets])
        changes = [c for t, [p] in zip(targets, planned, strict=True)
                   if (c := self._move(t, p)) is not None]
        if not changes:
            raise StepRejected("deadlines_unchanged",
                               "every provisional deadline stays where it is: the calendar "
                               "has not changed for the days they count over")
        seq = self._event(EventKind.DEADLINES_RECOMPUTED, step.actor, None, reason=step.reason,
                          changes=changes)
        self._notify(seq, centre(self.case.owner))
        for d in sorted({c["department"] for c in changes if c.get("department")}):
            self._notify(seq, department(d))
        return await self._commit()

    @recompute_deadlines.validator
    def _check_recompute(self, step: RecomputeDeadlines) -> None:
        if self.case.status == CaseStatus.CLOSED:
            raise StepRejected("case_closed", "cannot recompute deadlines: the case is closed")
        if "step:recompute" in self._busy:
            raise StepRejected("step_in_progress", "a recomputation is already running")
        if not self._provisional_dues():
            raise StepRejected("nothing_provisional",
                               "no running clock of this case has a provisional deadline")

    @workflow.update
    async def retry_planning(self, step: RetryPlanning) -> StepResult:
        """恢复办理: try again now the planning a case needing attention waits for (after
        the policy file or the calendar was mended); on success its departments are
        summoned as the intake asked."""
        if not await self._resume(step.actor):
            assert self.case.attention is not None
            await self._flush()  # the failed attempt is on the record
            raise StepRejected("planning_failed",
                               f"planning failed again: {self.case.attention.reason}")
        return await self._commit()

    @retry_planning.validator
    def _check_retry_planning(self, step: RetryPlanning) -> None:
        if self.case.status == CaseStatus.CLOSED:
            raise StepRejected("case_closed", "cannot retry planning: the case is closed")
        if self.case.attention is None:
            raise StepRejected("nothing_to_retry", "the case is not waiting for its planning")
        if self._resuming:
            raise StepRejected("step_in_progress", "planning is being retried already")

    def _provisional_dues(self) -> list[_Due]:
        """The provisional deadlines of clocks still running (or still to run), with what
        they were counted from."""
        found = []
        for s in self.case.open_summonses():
            for clock in s.pending_provisional():
                if (length := s.length_of(clock)) is not None:
                    found.append(_Due(clock, s.due_of(clock), s.summoned_at, length, s))
        outcome = self.case.outcome
        if (self.case.status == CaseStatus.AWAITING_FEEDBACK and self.case.feedback_provisional
                and self.case.feedback_due and self.case.feedback_clock and outcome):
            found.append(_Due(Clock.FEEDBACK, self.case.feedback_due, outcome.recorded_at,
                              self.case.feedback_clock, None))
        return found

    def _move(self, t: _Due, p: PlannedDeadline) -> dict[str, object] | None:
        """Apply a recounted deadline; the change as timeline data, or None if none."""
        s = t.summons
        if s is not None:
            if s.due_of(t.clock) != t.due or t.clock not in s.provisional \
                    or not s.status.is_open:
                return None  # moved or settled while it was recounted
            fired = s.escalation(t.clock, t.due) is not None
        else:
            if self.case.feedback_due != t.due or self.case.status != CaseStatus.AWAITING_FEEDBACK:
                return None
            fired = False  # a fired feedback clock closed the case
        change: dict[str, object] = {"department": s.department if s else None,
                                     "clock": str(t.clock), "from": t.due.isoformat()}
        if fired:
            if p.provisional:
                return None  # still not official: nothing to say yet
            change |= {"kept": "fired", "official_due": p.due.isoformat()}
        elif p.due == t.due and p.provisional:
            return None
        else:
            change |= {"to": p.due.isoformat(), "provisional": p.provisional}
        if s is None:
            self.case.feedback_provisional = p.provisional
            self.case.feedback_due = p.due
            return change
        if not p.provisional or fired:
            s.provisional.remove(t.clock)
        if not fired:
            if t.clock == Clock.REPORT_IN:
                s.report_in_due = p.due
            else:
                s.sign_off_due = p.due
            if t.due in s.warned:  # the warning given stays given for the moved due
                s.warned[s.warned.index(t.due)] = p.due
        return change

    async def _plan_summonses(self, now: datetime) -> tuple[PlannedDeadline, PlannedDeadline]:
        """The report-in and sign-off deadlines of a summons made `now`."""
        [[report_in, sign_off]] = await self._plan([DeadlineRequest(
            start=now, clocks=[self._policy.clock("report_in"), self._policy.clock("sign_off")])])
        return report_in, sign_off


@contextlib.contextmanager
def refused_if_unplanned(what: str = "deadlines cannot be planned now") -> Iterator[None]:
    """Inside a step: planning that fails refuses the step (409 planning_failed, with the
    reason), before the step has changed anything."""
    try:
        yield
    except PlanningFailed as e:
        raise StepRejected("planning_failed", f"{what}: {e.reason}") from e
