"""The case workflow: one durable workflow per dispute, from intake to archive.

Human steps arrive as Updates. Each has a validator that rejects a step which does not fit
the state; a rejected Update is never written to history, so a wrong click leaves no trace.
Every clock of the case (report-in, sign-off, each ladder step, feedback) is folded into
one loop that sleeps until the earliest deadline, so the state object alone says what
happens next and continue-as-new carries it without losing a timer.

The ladder a missed clock climbs is in workflows/ladder.py, the timeline it writes in
workflows/timeline.py; opening, summoning, deadline planning, needing attention and
recounting provisional deadlines in workflows/planning.py (a mixin of this class).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from whistle import search_attributes as sa
    from whistle.domain import (
        ActivityName,
        AddFact,
        ApplyPolicy,
        CasePolicy,
        CaseState,
        CaseStatus,
        Clock,
        CloseCase,
        CloseReason,
        DeadlineRequest,
        DecideExtension,
        EventKind,
        Extension,
        ExtensionStatus,
        Feedback,
        OpenedResult,
        Outcome,
        OutcomeKind,
        PlannedDeadline,
        Projection,
        RecordFeedback,
        RecordOutcome,
        Redispatch,
        ReportIn,
        RequestExtension,
        ReturnSummons,
        Satisfaction,
        SignOff,
        StepResult,
        SummonMore,
        Summons,
        SummonsStatus,
        TakeOver,
    )
    from workflows.ladder import Ladder
    from workflows.planning import (
        IO_RETRY,
        IO_TIMEOUT,
        RETRY_PLANNING,
        Planning,
        StepRejected,
        refused_if_unplanned,
    )
    from workflows.timeline import Timeline, centre, department

__all__ = ["RETRY_PLANNING", "CaseWorkflow", "StepRejected"]


@workflow.defn
class CaseWorkflow(Planning):
    """One dispute (矛盾纠纷) through the closed loop, from 受理 to 办结归档."""

    @workflow.init
    def __init__(self, state: CaseState) -> None:
        # Built in __init__ so an Update that arrives with the start finds the state ready.
        self.case = state
        self._timeline = Timeline(state, workflow.now)
        self._ladder = Ladder(state, self._timeline, self._after, warn=False)
        self._lock = asyncio.Lock()
        self._summoning: set[str] = set()  # departments being summoned by a running handler
        self._upserted: dict[str, object] = {}
        self._local_reads = False  # policy and deadlines as local activities (see _read)
        self._calendar = False  # provisional calendars and bounded planning (see _plan)
        self._busy: set[str] = set()  # steps awaiting their planning: see _expect_going
        self._resuming = False  # a retry of the intake's planning is running

    # --- the main loop --------------------------------------------------------------------

    @workflow.run
    async def run(self, state: CaseState) -> CaseState:
        # Decided once per run, at its start: histories recorded before early warnings
        # replay without them (no marker), every run started since has them.
        self._ladder.warn = workflow.patched(CLOCK_WARNINGS)
        self._local_reads = workflow.patched(LOCAL_READS)
        self._calendar = workflow.patched(PROVISIONAL_CALENDAR)
        if self.case.opened_at is None:
            await (self._open() if self._calendar else self._open_before_calendars())
        while self.case.status != CaseStatus.CLOSED:
            if workflow.info().is_continue_as_new_suggested():
                await self._quiesce()
                self.case.runs += 1
                workflow.continue_as_new(self.case)
            await self._sleep_until(self._next_due())
            if self._retry_due():
                await self._resume("system")
            await self._fire_due_clocks()
            await self._flush()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._flush()
        return self.case

    async def _quiesce(self) -> None:
        """Wait until no step is running and everything is projected: a step accepted by
        this run must finish in it, not be cut off by continue-as-new."""
        idle = lambda: workflow.all_handlers_finished() and not self._summoning  # noqa: E731
        await workflow.wait_condition(idle)
        while self.case.projected_seq < self.case.events[-1].seq or not idle():
            await self._flush()
            await workflow.wait_condition(idle)

    async def _sleep_until(self, due: datetime | None) -> None:
        """Sleep until `due`, or until a step moves the earliest deadline or closes the case."""

        def changed() -> bool:
            return (
                self._next_due() != due
                or self.case.status == CaseStatus.CLOSED
                or workflow.info().is_continue_as_new_suggested()
            )

        if due is None:
            await workflow.wait_condition(changed)
            return
        timeout = (due - workflow.now()).total_seconds()
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):  # the deadline came: the loop fires it
            await workflow.wait_condition(changed, timeout=timeout)

    # --- clocks (the ladder itself: workflows/ladder.py) ---------------------------------

    def _next_due(self) -> datetime | None:
        dues = [] if (due := self._ladder.next_due()) is None else [due]
        if self.case.status == CaseStatus.AWAITING_FEEDBACK and self.case.feedback_due:
            dues.append(self.case.feedback_due)
        if self.case.attention is not None and not self._resuming:
            dues.append(self.case.attention.retry_at)
        return min(dues, default=None)

    async def _fire_due_clocks(self) -> None:
        now = workflow.now()
        await self._ladder.fire(now)
        feedback_due = self.case.feedback_due
        if self.case.status == CaseStatus.AWAITING_FEEDBACK and feedback_due \
                and feedback_due <= now:
            self._close(CloseReason.NO_FEEDBACK, "system")

    # --- department steps -----------------------------------------------------------------

    @workflow.update
    async def report_in(self, step: ReportIn) -> StepResult:
        """报到: the department acknowledges the summons and takes part."""
        s = self._summons(step.department)
        s.status = SummonsStatus.REPORTED_IN
        s.reported_in_at = workflow.now()
        # Late if its ladder was running, or had already run out at the top (done).
        late = self._settle(s, Clock.REPORT_IN) or s.reported_in_at > s.report_in_due
        self._event(EventKind.REPORTED_IN, step.actor, s.department, late=late, note=step.note)
        return await self._commit()

    @report_in.validator
    def _check_report_in(self, step: ReportIn) -> None:
        self._expect(step.department, SummonsStatus.SUMMONED, "report in")

    @workflow.update
    async def sign_off(self, step: SignOff) -> StepResult:
        """签收意见/办结: the department states what it did and its opinion."""
        s = self._summons(step.department)
        s.status = SummonsStatus.SIGNED_OFF
        s.signed_off_at = workflow.now()
        s.opinion, s.actions_taken = step.opinion, step.actions_taken
        late = self._settle(s, Clock.SIGN_OFF) or s.signed_off_at > s.sign_off_due
        seq = self._event(EventKind.SIGNED_OFF, step.actor, s.department, late=late,
                          opinion=step.opinion, actions_taken=step.actions_taken)
        if not self.case.open_summonses():
            self._notify(seq, centre(self.case.owner))  # every department has signed off
        return await self._commit()

    @sign_off.validator
    def _check_sign_off(self, step: SignOff) -> None:
        self._expect(step.department, SummonsStatus.REPORTED_IN, "sign off")

    @workflow.update
    async def return_summons(self, step: ReturnSummons) -> StepResult:
        """退单: the summons is not this department's business; the hub re-dispatches."""
        s = self._summons(step.department)
        s.status = SummonsStatus.RETURNED
        s.return_reason = step.reason
        self._settle(s, None)
        seq = self._event(EventKind.RETURNED, step.actor, s.department, reason=step.reason)
        self._notify(seq, centre(self.case.owner))
        return await self._commit()

    @return_summons.validator
    def _check_return(self, step: ReturnSummons) -> None:
        self._expect(step.department, None, "return the summons")

    @workflow.update
    async def request_extension(self, step: RequestExtension) -> StepResult:
        """延期申请: ask for a later sign-off deadline; the hub decides."""
        s = self._summons(step.department)
        s.extension = Extension(
            requested_at=workflow.now(), new_deadline=step.new_deadline, reason=step.reason
        )
        seq = self._event(EventKind.EXTENSION_REQUESTED, step.actor, s.department,
                          new_deadline=step.new_deadline, reason=step.reason)
        self._notify(seq, centre(self.case.owner))
        return await self._commit()

    @request_extension.validator
    def _check_request_extension(self, step: RequestExtension) -> None:
        s = self._expect(step.department, SummonsStatus.REPORTED_IN, "ask for an extension")
        if s.extension and s.extension.status == ExtensionStatus.PENDING:
            raise StepRejected("extension_pending", "an extension request is already pending")
        if step.new_deadline <= max(s.sign_off_due, workflow.now()):
            raise StepRejected(
                "invalid_deadline",
                f"new_deadline must be later than the current sign-off deadline "
                f"({s.sign_off_due.isoformat()}) and than now",
            )

    # --- coordinator steps ----------------------------------------------------------------

    @workflow.update
    async def decide_extension(self, step: DecideExtension) -> StepResult:
        """延期审批: approve (the sign-off clock moves) or refuse an extension request."""
        s = self._summons(step.department)
        ext = s.extension
        assert ext is not None  # the validator saw it pending
        ext.status = ExtensionStatus.APPROVED if step.approve else ExtensionStatus.REFUSED
        ext.decided_at = workflow.now()
        if step.approve:
            self._settle(s, Clock.SIGN_OFF)  # the old deadline no longer counts
            s.sign_off_due = ext.new_deadline  # a date agreed, not counted: never provisional
            if Clock.SIGN_OFF in s.provisional:
                s.provisional.remove(Clock.SIGN_OFF)
        seq = self._event(EventKind.EXTENSION_DECIDED, step.actor, s.department,
                          approved=step.approve, comment=step.comment,
                          sign_off_due=s.sign_off_due)
        self._notify(seq, department(s.department))
        return await self._commit()

    @decide_extension.validator
    def _check_decide_extension(self, step: DecideExtension) -> None:
        s = self._expect(step.department, SummonsStatus.REPORTED_IN, "have an extension decided")
        if not s.extension or s.extension.status != ExtensionStatus.PENDING:
            raise StepRejected("no_pending_extension",
                               f"department {step.department} has no pending extension request")

    @workflow.update
    async def summon_more(self, step: SummonMore) -> StepResult:
        """吹哨: summon further departments to the case."""
        await self._summon(step.departments, step.actor, reason=step.reason)
        return await self._commit()

    @summon_more.validator
    def _check_summon_more(self, step: SummonMore) -> None:
        self._expect_case(CaseStatus.OPEN, "summon departments")
        self._expect_going("summon departments")
        codes = [d.code for d in step.departments]
        if len(set(codes)) != len(codes):
            raise StepRejected("duplicate_department", "a department is listed twice")
        for code in codes:
            self._expect_summonable(code)

    @workflow.update
    async def redispatch(self, step: Redispatch) -> StepResult:
        """重新分拨: send a returned summons to the department it belongs to."""
        s = self._summons(step.department)
        async with self._planning(f"redispatch:{step.department}", f"summon:{step.to.code}"):
            now = workflow.now()
            with refused_if_unplanned():
                planned = await self._plan_summonses(now)
        s.redispatched_to = step.to.code
        self._event(EventKind.REDISPATCHED, step.actor, s.department, at=now, to=step.to.code,
                    reason=step.reason)
        self._add_summonses([step.to], now, planned, step.actor,
                            reason=step.reason or "redispatch")
        return await self._commit()

    @redispatch.validator
    def _check_redispatch(self, step: Redispatch) -> None:
        self._expect_case(CaseStatus.OPEN, "re-dispatch")
        s = self._expect(step.department, SummonsStatus.RETURNED, "be re-dispatched")
        if s.redispatched_to or f"redispatch:{step.department}" in self._busy:
            raise StepRejected("already_redispatched",
                               f"this summons was already re-dispatched to {s.redispatched_to}")
        if step.to.code == step.department:
            raise StepRejected("same_department", "re-dispatch to another department")
        self._expect_summonable(step.to.code)

    @workflow.update
    async def record_outcome(self, step: RecordOutcome) -> StepResult:
        """结果: mediated agreement, administrative resolution, referral, withdrawal or
        unresolved (which raises the case a level)."""
        now = workflow.now()
        feedback: PlannedDeadline | None = None
        rises = step.kind == OutcomeKind.UNRESOLVED and self.case.level.above() is not None
        if step.kind != OutcomeKind.WITHDRAWN and not rises:  # the parties' say is due
            async with self._planning("step:outcome"):
                with refused_if_unplanned():
                    [[feedback]] = await self._plan([DeadlineRequest(
                        start=now, clocks=[self._policy.clock("feedback")])])
        outcome = Outcome(kind=step.kind, summary=step.summary, agreement_text=step.agreement_text,
                          recorded_at=now, actor=step.actor)
        self.case.outcomes.append(outcome)
        self._event(EventKind.OUTCOME, step.actor, None, at=now, kind=step.kind,
                    summary=step.summary, agreement_text=step.agreement_text)
        if step.kind == OutcomeKind.WITHDRAWN:
            self.case.outcome = outcome
            for s in self.case.open_summonses():
                s.status = SummonsStatus.CANCELLED
                self._settle(s, None)
            self._close(CloseReason.WITHDRAWN, step.actor)
        elif step.kind == OutcomeKind.UNRESOLVED and self._ladder.raise_case(step.summary, None):
            pass  # the centre above takes the case over; it stays open
        else:
            assert feedback is not None  # planned above: neither withdrawn nor rising
            self.case.outcome = outcome
            self.case.status = CaseStatus.AWAITING_FEEDBACK
            self.case.feedback_due = feedback.due
            self.case.feedback_provisional = feedback.provisional
            self.case.feedback_clock = self._policy.clock("feedback")
        return await self._commit()

    @record_outcome.validator
    def _check_outcome(self, step: RecordOutcome) -> None:
        self._expect_case(CaseStatus.OPEN, "record an outcome")
        if step.kind != OutcomeKind.WITHDRAWN:
            self._expect_going("record an outcome")
        if step.kind == OutcomeKind.MEDIATED_AGREEMENT and not step.agreement_text:
            raise StepRejected("agreement_text_required",
                               "a mediated agreement needs agreement_text (调解协议)")
        busy = [s.department for s in self.case.open_summonses()] + sorted(self._summoning)
        if busy and step.kind != OutcomeKind.WITHDRAWN:
            raise StepRejected(
                "summonses_open",
                "summonses still open: " + ", ".join(busy)
                + " (they must sign off or be returned first; 'withdrawn' ends the case now)",
            )

    @workflow.update
    async def record_feedback(self, step: RecordFeedback) -> StepResult:
        """评估反馈: the parties rate the result; unsatisfied reopens the case once."""
        self.case.feedback = Feedback(satisfaction=step.satisfaction, comment=step.comment,
                                      recorded_at=workflow.now(), actor=step.actor)
        seq = self._event(EventKind.FEEDBACK, step.actor, None,
                          satisfaction=step.satisfaction, comment=step.comment)
        if step.satisfaction != Satisfaction.UNSATISFIED:
            self._close(CloseReason.FEEDBACK, step.actor)
        elif self.case.reopen_count < self._policy.max_reopens:
            self.case.reopen_count += 1
            self.case.status = CaseStatus.OPEN
            self.case.outcome = self.case.feedback_due = None
            self.case.feedback_provisional = False
            self._event(EventKind.REOPENED, step.actor, None, reopen_count=self.case.reopen_count)
            self._notify(seq, centre(self.case.owner))
        else:
            self._close(CloseReason.UNSATISFIED, step.actor)
        return await self._commit()

    @record_feedback.validator
    def _check_feedback(self, step: RecordFeedback) -> None:
        self._expect_case(CaseStatus.AWAITING_FEEDBACK, "record feedback")

    @workflow.update
    async def close(self, step: CloseCase) -> StepResult:
        """办结归档: close a case whose outcome is recorded without waiting for feedback."""
        # `reason` in the event data is the close reason; the coordinator's words are a note.
        self._close(CloseReason.CLOSED_BY_COORDINATOR, step.actor, note=step.reason)
        return await self._commit()

    @close.validator
    def _check_close(self, step: CloseCase) -> None:
        if self.case.status == CaseStatus.OPEN:
            raise StepRejected("outcome_required",
                               "record an outcome before closing ('withdrawn' ends a case early)")
        self._expect_case(CaseStatus.AWAITING_FEEDBACK, "close")

    @workflow.update
    async def apply_policy(self, step: ApplyPolicy) -> StepResult:
        """适用新版政策: move the case to the policy in force now. Deadlines already set
        stand; summonses, ladder steps and the feedback window from now on follow it."""
        with refused_if_unplanned("the policy cannot be read now"):
            fresh = await self._load_policy()
        if fresh.version == self._policy.version:
            raise StepRejected("policy_unchanged",
                               f"the case already runs under policy {fresh.version}")
        previous, self.case.policy = self._policy.version, fresh
        self._event(EventKind.POLICY_APPLIED, step.actor, None, from_version=previous,
                    to_version=fresh.version, reason=step.reason)
        return await self._commit()

    @apply_policy.validator
    def _check_apply_policy(self, step: ApplyPolicy) -> None:
        if self.case.status == CaseStatus.CLOSED:
            raise StepRejected("case_closed", "cannot apply a policy: the case is closed")
        if self.case.policy is None:
            raise StepRejected("needs_attention", "the case is waiting for its planning: "
                               "retry its planning instead")

    @workflow.update
    async def add_fact(self, step: AddFact) -> StepResult:
        """核实情况: put a fact on the case record (a site visit, a document, a call)."""
        self._event(EventKind.FACT_ADDED, step.actor, None, text=step.text)
        return await self._commit()

    @add_fact.validator
    def _check_add_fact(self, step: AddFact) -> None:
        if self.case.status == CaseStatus.CLOSED:
            raise StepRejected("case_closed", "cannot add a fact: the case is closed")

    @workflow.update
    async def take_over(self, step: TakeOver) -> StepResult:
        """上级接管: a supervisor takes charge of the case at the level it stands at."""
        self.case.handler = step.actor
        self._event(EventKind.TAKEN_OVER, step.actor, None, reason=step.reason,
                    level=self.case.level, owner=self.case.owner)
        return await self._commit()

    @take_over.validator
    def _check_take_over(self, step: TakeOver) -> None:
        if self.case.status == CaseStatus.CLOSED:
            raise StepRejected("case_closed", "cannot take over: the case is closed")
        if self.case.handler is not None:
            raise StepRejected("already_taken_over",
                               f"{self.case.handler} already took this case over at the "
                               f"{self.case.level} level")

    @workflow.update
    async def opened(self) -> OpenedResult:
        """Returns once the case is open and in the read model (sent with the start)."""
        await workflow.wait_condition(lambda: self.case.projected_seq > 0)
        return OpenedResult(case_id=self.case.case_id, request_id=self.case.start.request_id,
                            status=self.case.status, level=self.case.level)

    @workflow.query
    def state(self) -> CaseState:
        """The whole case: summonses and their clocks, ladder, timeline."""
        return self.case

    # --- helpers --------------------------------------------------------------------------

    @property
    def _policy(self) -> CasePolicy:
        assert self.case.policy is not None  # loaded before any clock or step can run
        return self.case.policy

    def _expect_case(self, status: CaseStatus, what: str) -> None:
        if self.case.status != status:
            if self.case.status == CaseStatus.CLOSED:
                raise StepRejected("case_closed", f"cannot {what}: the case is closed")
            raise StepRejected("wrong_case_status",
                               f"cannot {what}: the case is {self.case.status}, not {status}")

    def _expect(self, department: str, status: SummonsStatus | None, what: str) -> Summons:
        """The department's current summons, if it can `what` now; else a clear rejection.
        `status` None means any open summons."""
        if self.case.status == CaseStatus.CLOSED:
            raise StepRejected("case_closed", f"cannot {what}: the case is closed")
        s = self.case.current(department)
        if s is None:
            raise StepRejected("not_summoned",
                               f"department {department} was not summoned to this case")
        ok = s.status.is_open if status is None else s.status == status
        if not ok:
            hint = {
                SummonsStatus.SUMMONED: "it has not reported in yet",
                SummonsStatus.REPORTED_IN: "it has already reported in",
                SummonsStatus.SIGNED_OFF: "it has already signed off",
                SummonsStatus.RETURNED: "it returned the summons",
                SummonsStatus.CANCELLED: "the summons was cancelled",
            }[s.status]
            raise StepRejected("wrong_summons_status",
                               f"department {department} cannot {what}: {hint}")
        return s

    def _expect_going(self, what: str) -> None:
        """Refuse a step that would change the case's stage while it waits for its planning
        or while another such step is planning."""
        if self.case.attention is not None and not self.case.summonses:
            raise StepRejected("needs_attention",
                               f"cannot {what}: the case's departments are not summoned yet "
                               f"({self.case.attention.reason}); retry its planning first")
        if self._busy & {"step:outcome", "step:recompute"}:
            raise StepRejected("step_in_progress",
                               f"cannot {what}: another step is being planned; try again")

    @contextlib.asynccontextmanager
    async def _planning(self, *marks: str) -> AsyncIterator[None]:
        """Mark a step as planning (validators of conflicting steps see it)."""
        self._busy |= set(marks)
        try:
            yield
        finally:
            self._busy -= set(marks)

    def _expect_summonable(self, code: str) -> None:
        current = self.case.current(code)
        if code in self._summoning or f"summon:{code}" in self._busy \
                or (current and current.status.is_open):
            raise StepRejected("already_summoned",
                               f"department {code} is already summoned to this case")

    def _summons(self, department: str) -> Summons:
        s = self.case.current(department)
        assert s is not None  # the validator checked it
        return s

    def _settle(self, s: Summons, clock: Clock | None) -> bool:
        """Stop the ladders of `clock` (all clocks if None); True if one was running."""
        running = [e for e in s.escalations if not e.done and (clock is None or e.clock == clock)]
        for e in running:
            e.done = True
        return bool(running)

    def _close(self, reason: CloseReason, actor: str, **data: object) -> None:
        self.case.status = CaseStatus.CLOSED
        self.case.close_reason = reason
        self.case.closed_at = workflow.now()
        self._event(EventKind.CLOSED, actor, None, reason=reason, **data)

    def _event(self, kind: EventKind, actor: str, department: str | None, /, *,
               at: datetime | None = None, **data: object) -> int:
        return self._timeline.event(kind, actor, department, at=at, **data)

    def _notify(self, seq: int, recipient: str) -> None:
        self._timeline.notify(seq, recipient)

    async def _commit(self) -> StepResult:
        await self._flush()
        return StepResult(case_id=self.case.case_id, seq=self.case.events[-1].seq,
                          status=self.case.status, level=self.case.level)

    async def _flush(self) -> None:
        """Project new events into the read model, then refresh the search attributes.
        Serialised so concurrent steps cannot write an older snapshot over a newer one."""
        async with self._lock:
            self._upsert_search_attributes()
            events = [e for e in self.case.events if e.seq > self.case.projected_seq]
            if not events:
                return
            notes = [n for n in self.case.notifications if n.seq > self.case.projected_seq]
            snapshot = self.case.model_copy(update={"events": [], "notifications": []})
            await workflow.execute_activity(
                ActivityName.PROJECT_CASE,
                Projection(state=snapshot, events=events, notifications=notes),
                start_to_close_timeout=IO_TIMEOUT,
                retry_policy=IO_RETRY,
            )
            self.case.projected_seq = events[-1].seq
            # Delivered to the outbox: no need to carry them through continue-as-new.
            self.case.notifications = [n for n in self.case.notifications if n.seq > events[-1].seq]

    def _upsert_search_attributes(self) -> None:
        values: dict[str, object] = {
            sa.STATUS.name: str(self.case.status),
            sa.LEVEL.name: str(self.case.level),
            sa.CATEGORY.name: self.case.start.intake.category,
            sa.JURISDICTION.name: [n.code for n in self.case.start.path],
            sa.OVERDUE.name: self.case.overdue,
            sa.DEPARTMENTS.name: sorted({s.department for s in self.case.summonses}),
        }
        changed = [k for k, v in values.items() if self._upserted.get(k) != v]
        if not changed:
            return
        updates = [_SA_UPDATE[k](values[k]) for k in changed]
        workflow.upsert_search_attributes(updates)
        self._upserted.update(values)


_SA_UPDATE: dict[str, Callable[[object], object]] = {
    key.name: key.value_set for key in sa.ALL  # type: ignore[misc]
}


CLOCK_WARNINGS = "clock-warnings"  # the patch id of early warnings
LOCAL_READS = "local-reads"  # the patch id of policy and deadlines as local activities
# The patch id of provisional calendars: planning says which deadlines are provisional and
# gives up (the case needing attention) instead of retrying unseen; a case is recorded before
# its summonses are planned; ladder steps may count working days.
PROVISIONAL_CALENDAR = "provisional-calendar"
