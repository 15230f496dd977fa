"""The domain vocabulary and the messages a case workflow exchanges.

One word per concept (see shared/DOMAIN.md): case, department, summons, report-in,
sign-off, return, extension, escalation level, outcome, feedback. The workflow state is one
pydantic model (`CaseState`) so it rides through continue-as-new whole.

This module is imported by workflow code: it must stay pure (no I/O, no clock).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

# --- vocabulary ---------------------------------------------------------------------------


class Level(StrEnum):
    """A node level of the hierarchy (上下联动), highest first."""

    CITY = "city"
    COUNTY = "county"
    TOWN = "town"
    VILLAGE = "village"
    GRID = "grid"

    @property
    def rank(self) -> int:
        """0 for the city, growing downwards."""
        return list(Level).index(self)

    def above(self) -> Level | None:
        """The next level up, or None at the city."""
        order = list(Level)
        i = order.index(self)
        return order[i - 1] if i > 0 else None


class Role(StrEnum):
    """Who a user is to the system (../shared/DOMAIN.md)."""

    COORDINATOR = "coordinator"  # 综治中心工作人员
    DEPARTMENT = "department"  # 职能部门/派驻人员
    GRID_WORKER = "grid_worker"  # 网格员
    SUPERVISOR = "supervisor"  # 上级综治中心/督办
    AUDITOR = "auditor"  # 评价监督/审计
    ADMIN = "admin"  # 系统管理员: users and reference data, never cases


class CaseStatus(StrEnum):
    OPEN = "open"  # accepted, whistle blown, departments at work
    AWAITING_FEEDBACK = "awaiting_feedback"  # outcome recorded, the parties' say is due
    CLOSED = "closed"


class SummonsStatus(StrEnum):
    SUMMONED = "summoned"  # whistle blown, report-in due
    REPORTED_IN = "reported_in"  # 报到 done, sign-off due
    SIGNED_OFF = "signed_off"  # 办结反馈 done
    RETURNED = "returned"  # 退单: not this department's business
    CANCELLED = "cancelled"  # the case was withdrawn while this summons was open

    @property
    def is_open(self) -> bool:
        return self in (SummonsStatus.SUMMONED, SummonsStatus.REPORTED_IN)


class Clock(StrEnum):
    REPORT_IN = "report_in"
    SIGN_OFF = "sign_off"
    FEEDBACK = "feedback"


class LadderAction(StrEnum):
    REMIND = "remind"  # 催办
    NOTIFY_SUPERVISOR = "notify_supervisor"  # 督办
    RAISE = "raise"  # 提级


class ExtensionStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


class OutcomeKind(StrEnum):
    MEDIATED_AGREEMENT = "mediated_agreement"  # 调解协议
    ADMINISTRATIVE_RESOLUTION = "administrative_resolution"  # 行政处理
    REFERRED_TO_LITIGATION = "referred_to_litigation"  # 诉讼/仲裁 (诉源治理)
    WITHDRAWN = "withdrawn"  # 撤回
    UNRESOLVED = "unresolved"  # 未化解: the case rises a level


class Satisfaction(StrEnum):
    SATISFIED = "satisfied"  # 满意
    BASICALLY_SATISFIED = "basically_satisfied"  # 基本满意
    UNSATISFIED = "unsatisfied"  # 不满意


class CloseReason(StrEnum):
    FEEDBACK = "feedback"  # the parties said satisfied / basically satisfied
    UNSATISFIED = "unsatisfied"  # unsatisfied after the reopen allowance was used
    NO_FEEDBACK = "no_feedback"  # the feedback clock ran out
    WITHDRAWN = "withdrawn"
    CLOSED_BY_COORDINATOR = "closed_by_coordinator"


class EventKind(StrEnum):
    """Every step of the closed loop that lands on the case timeline."""

    OPENED = "opened"
    SUMMONED = "summoned"
    REPORTED_IN = "reported_in"
    SIGNED_OFF = "signed_off"
    RETURNED = "returned"
    REDISPATCHED = "redispatched"
    EXTENSION_REQUESTED = "extension_requested"
    EXTENSION_DECIDED = "extension_decided"
    CLOCK_WARNING = "clock_warning"  # 预警: most of a clock's time is used
    CLOCK_MISSED = "clock_missed"
    ESCALATED = "escalated"
    OUTCOME = "outcome"
    FEEDBACK = "feedback"
    REOPENED = "reopened"
    POLICY_APPLIED = "policy_applied"
    FACT_ADDED = "fact_added"
    TAKEN_OVER = "taken_over"
    NEEDS_ATTENTION = "needs_attention"  # the case cannot go on by itself (planning failed)
    ATTENTION_RESOLVED = "attention_resolved"  # it goes on again
    DEADLINES_RECOMPUTED = "deadlines_recomputed"  # provisional dues counted again
    CLOSED = "closed"


CASE_LABELS_ZH = {
    EventKind.OPENED: "受理",
    EventKind.SUMMONED: "吹哨",
    EventKind.REPORTED_IN: "报到",
    EventKind.SIGNED_OFF: "签收意见",
    EventKind.RETURNED: "退单",
    EventKind.REDISPATCHED: "重新分拨",
    EventKind.EXTENSION_REQUESTED: "延期申请",
    EventKind.EXTENSION_DECIDED: "延期审批",
    EventKind.CLOCK_WARNING: "临期预警",
    EventKind.CLOCK_MISSED: "超时",
    EventKind.ESCALATED: "升级督办",
    EventKind.OUTCOME: "结果",
    EventKind.FEEDBACK: "评估反馈",
    EventKind.REOPENED: "重新办理",
    EventKind.POLICY_APPLIED: "适用新版政策",
    EventKind.FACT_ADDED: "核实情况",
    EventKind.TAKEN_OVER: "上级接管",
    EventKind.NEEDS_ATTENTION: "需人工处理",
    EventKind.ATTENTION_RESOLVED: "恢复办理",
    EventKind.DEADLINES_RECOMPUTED: "期限重算",
    EventKind.CLOSED: "办结归档",
}

# --- constrained text ---------------------------------------------------------------------

Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
Actor = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Message(BaseModel):
    """Base of every workflow message: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


# --- policy snapshot (decided once, in an activity, carried in the state) ------------------


class Recipient(StrEnum):
    """Who a ladder step notifies."""

    DEPARTMENT = "department"  # the summoned department
    SUPERVISOR = "supervisor"  # its supervising department (else the centre above)
    CENTRE = "centre"  # the centre owning the case (after a raise: the new one)
    CENTRE_ABOVE = "centre_above"  # the centre one level above the owner


class LadderStep(Message):
    """One rung of the ladder, taken a while after the one before (the first: after the
    clock was missed): `after_hours` plain hours or `after_working_days` working days."""

    action: LadderAction
    after_hours: float | None = Field(default=None, ge=0, le=24 * 365)
    after_working_days: int | None = Field(default=None, ge=1, le=60)
    notify: list[Recipient] | None = None  # None: remind → department, 督办 → supervisor,
    # raise → the new owning centre

    @model_validator(mode="after")
    def _one_wait(self) -> LadderStep:
        if (self.after_hours is None) == (self.after_working_days is None):
            raise ValueError("give after_hours or after_working_days, not both or neither")
        return self

    @property
    def wait(self) -> ClockSpec | None:
        """How long after the previous rung this one comes; None: at once."""
        if self.after_working_days is not None:
            return ClockSpec(working_days=self.after_working_days)
        return ClockSpec(hours=self.after_hours) if self.after_hours else None


class ClockSpec(Message):
    """One clock's length: plain hours, or working days on the official calendar."""

    hours: float | None = Field(default=None, gt=0, le=24 * 365)
    working_days: int | None = Field(default=None, ge=1, le=250)

    @model_validator(mode="after")
    def _exactly_one(self) -> ClockSpec:
        if (self.hours is None) == (self.working_days is None):
            raise ValueError("give a clock in hours or in working_days, not both or neither")
        return self


class CasePolicy(Message):
    """The clocks and ladder one case runs under, frozen when the case starts. Each clock is
    in hours or, where its `*_working_days` is set, in working days."""

    version: str
    report_in_hours: float | None = Field(default=None, gt=0)
    sign_off_hours: float | None = Field(default=None, gt=0)
    feedback_hours: float | None = Field(default=None, gt=0)
    report_in_working_days: int | None = Field(default=None, ge=1)
    sign_off_working_days: int | None = Field(default=None, ge=1)
    feedback_working_days: int | None = Field(default=None, ge=1)
    max_reopens: int = Field(ge=0, le=10)
    ladder: list[LadderStep] = Field(min_length=1)
    # 监测预警: warn the department and its centre when this share of a clock is used.
    warn_at: float | None = Field(default=None, gt=0, lt=1)

    def clock(self, name: str) -> ClockSpec:
        """The length of clock `name` (report_in, sign_off or feedback)."""
        return ClockSpec(hours=getattr(self, f"{name}_hours"),
                         working_days=getattr(self, f"{name}_working_days"))


class DepartmentRef(Message):
    """A department as the workflow needs it: who to summon and whom to tell above it."""

    code: Code
    supervisor: Code | None = None
    lead: bool = False  # 牵头单位: the department that leads; the others assist


# --- intake -------------------------------------------------------------------------------


class Party(Message):
    name: ShortText
    role: Annotated[str, StringConstraints(max_length=50)] = "party"
    contact: Annotated[str, StringConstraints(max_length=100)] | None = None


class CaseIntake(Message):
    """What a coordinator submits to open a case (validated before the workflow starts)."""

    category: Code
    title: ShortText
    description: LongText
    parties: list[Party] = Field(default_factory=list, max_length=50)
    location: Code
    level: Level | None = None
    source_channel: Code = "walk_in"
    departments: list[Code] | None = Field(default=None, max_length=30)
    external_ref: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class Node(Message):
    """A node of the hierarchy, as far as a case needs to know it."""

    code: Code
    level: Level


class CaseStart(Message):
    """A new case: the intake, resolved against reference data by the API."""

    case_id: str
    request_id: str
    actor: Actor
    intake: CaseIntake
    path: list[Node]  # city … location: whose jurisdiction the case falls in
    departments: list[DepartmentRef]
    # 重复纠纷: earlier cases at the same place or with a party in common, newest first
    repeat_of: list[str] = Field(default_factory=list, max_length=20)


class DeadlineRequest(Message):
    """Ask for the deadlines of `clocks` counted from `start`. Computed in an activity, so
    the calendar (with its yearly holiday arrangement) never enters workflow code."""

    start: datetime
    clocks: list[ClockSpec]


class PlanRequest(Message):
    """Several deadline requests answered by one activity call, in order."""

    requests: list[DeadlineRequest] = Field(min_length=1)


class PlannedDeadline(Message):
    """A deadline, and whether it rests on a provisional calendar (暂定): a working-day
    clock that counted over a day of a year whose official arrangement is not published,
    so it may move when it is (see whistle/workdays.py)."""

    due: datetime
    provisional: bool = False


# --- steps (Update arguments) -------------------------------------------------------------


class Step(Message):
    actor: Actor


class DepartmentStep(Step):
    department: Code


class ReportIn(DepartmentStep):
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


class SignOff(DepartmentStep):
    opinion: LongText
    actions_taken: LongText


class ReturnSummons(DepartmentStep):
    reason: LongText


class RequestExtension(DepartmentStep):
    new_deadline: AwareDatetime
    reason: LongText


class DecideExtension(DepartmentStep):
    approve: bool
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class SummonMore(Step):
    departments: list[DepartmentRef] = Field(min_length=1, max_length=30)
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


class Redispatch(DepartmentStep):
    """Re-dispatch the returned summons of `department` to `to`."""

    to: DepartmentRef
    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


class RecordOutcome(Step):
    kind: OutcomeKind
    summary: LongText
    agreement_text: LongText | None = None


class RecordFeedback(Step):
    satisfaction: Satisfaction
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class CloseCase(Step):
    reason: LongText


class ApplyPolicy(Step):
    """Move an open case to the policy in force now."""

    reason: LongText


class AddFact(Step):
    """核实情况: a fact found on site (by the grid worker) or gathered by the centre."""

    text: LongText


class TakeOver(Step):
    """上级接管: a supervisor of the level the case stands at takes charge of it."""

    reason: LongText


class RetryPlanning(Step):
    """恢复办理: retry the planning a case needing attention waits for."""


class RecomputeDeadlines(Step):
    """期限重算: count the case's provisional deadlines again on the calendar known now (an
    official arrangement published since)."""

    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


# --- state --------------------------------------------------------------------------------


class Escalation(Message):
    """Where one missed clock stands on the ladder."""

    clock: Clock
    missed_at: datetime
    from_level: Level
    next_step: int = 0  # index into the policy ladder
    next_due: datetime
    raised_to: Level | None = None  # where this clock's ladder last lifted the case
    last_action: LadderAction | None = None
    done: bool = False  # the clock was met late, stopped, or the top was reached


class Attention(Message):
    """需人工处理: why the case cannot go on by itself, and when it tries again."""

    code: str  # planning_failed
    reason: str
    since: datetime
    retry_at: datetime
    attempts: int = 1


class Extension(Message):
    requested_at: datetime
    new_deadline: datetime
    reason: str
    status: ExtensionStatus = ExtensionStatus.PENDING
    decided_at: datetime | None = None


class Summons(Message):
    department: Code
    supervisor: Code | None = None
    lead: bool = False
    round: int = 1
    status: SummonsStatus = SummonsStatus.SUMMONED
    summoned_at: datetime
    report_in_due: datetime
    sign_off_due: datetime
    reported_in_at: datetime | None = None
    signed_off_at: datetime | None = None
    opinion: str | None = None
    actions_taken: str | None = None
    return_reason: str | None = None
    redispatched_to: Code | None = None
    extension: Extension | None = None
    escalations: list[Escalation] = Field(default_factory=list)
    warned: list[datetime] = Field(default_factory=list)  # the dues a warning was given for
    # The lengths both dues were counted with (None: summoned before they were kept), and
    # the clocks whose due rests on a provisional calendar (暂定) until recomputed.
    report_in_clock: ClockSpec | None = None
    sign_off_clock: ClockSpec | None = None
    provisional: list[Clock] = Field(default_factory=list)

    def is_provisional(self, clock: Clock) -> bool:
        return clock in self.provisional

    def due_of(self, clock: Clock) -> datetime:
        """The due of `clock` (report-in or sign-off)."""
        return self.report_in_due if clock == Clock.REPORT_IN else self.sign_off_due

    def length_of(self, clock: Clock) -> ClockSpec | None:
        """The length `clock`'s due was counted with (None: summoned before they were kept)."""
        return self.report_in_clock if clock == Clock.REPORT_IN else self.sign_off_clock

    def pending_provisional(self) -> list[Clock]:
        """The clocks still to run out whose due is provisional (none once settled)."""
        if self.status == SummonsStatus.SUMMONED:
            return list(self.provisional)
        if self.status == SummonsStatus.REPORTED_IN:
            return [c for c in self.provisional if c == Clock.SIGN_OFF]
        return []

    @property
    def running_clock(self) -> tuple[Clock, datetime]:
        """The clock that runs while the summons is open, and its due: report-in until the
        department reports in, sign-off after."""
        clock = Clock.REPORT_IN if self.status == SummonsStatus.SUMMONED else Clock.SIGN_OFF
        return clock, self.due_of(clock)

    def escalation(self, clock: Clock, due: datetime) -> Escalation | None:
        """The ladder of `clock` missed at `due`, if it was missed."""
        return next((e for e in self.escalations if e.clock == clock and e.missed_at == due),
                    None)

    @property
    def overdue(self) -> bool:
        """The clock running now was missed (true until it is met or moved, also after
        its ladder has topped out)."""
        return self.status.is_open and self.escalation(*self.running_clock) is not None


class Outcome(Message):
    kind: OutcomeKind
    summary: str
    agreement_text: str | None = None
    recorded_at: datetime
    actor: str


class Feedback(Message):
    satisfaction: Satisfaction
    comment: str | None = None
    recorded_at: datetime
    actor: str


class CaseEvent(Message):
    """One line of the append-only timeline; `seq` makes projection idempotent."""

    seq: int
    kind: EventKind
    at: datetime
    actor: str
    department: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Notification(Message):
    """A message for the outbox, tied to the event that caused it; the projection
    renders its text."""

    seq: int
    recipient: str  # department:CODE | centre:JURISDICTION


class Projection(Message):
    """What one projection activity writes: the case as it stands plus its new events."""

    state: CaseState
    events: list[CaseEvent]
    notifications: list[Notification]


class OpenedResult(Message):
    case_id: str
    request_id: str  # the request that created the case: tells a repeat from a first open
    status: CaseStatus
    level: Level


class CaseState(Message):
    """Everything a case knows. Carried whole through continue-as-new."""

    start: CaseStart
    policy: CasePolicy | None = None
    status: CaseStatus = CaseStatus.OPEN
    level: Level
    owner: Code  # the jurisdiction node whose centre owns the case now
    handler: str | None = None  # the supervisor who took the case over, if one did
    opened_at: datetime | None = None
    summonses: list[Summons] = Field(default_factory=list)
    outcome: Outcome | None = None
    outcomes: list[Outcome] = Field(default_factory=list)  # every outcome, reopen included
    feedback: Feedback | None = None
    feedback_due: datetime | None = None
    feedback_clock: ClockSpec | None = None  # the length feedback_due was counted with
    feedback_provisional: bool = False  # feedback_due rests on a provisional calendar
    attention: Attention | None = None  # 需人工处理: set while the case cannot go on
    reopen_count: int = 0
    unresolved_at_top: bool = False
    close_reason: CloseReason | None = None
    closed_at: datetime | None = None
    events: list[CaseEvent] = Field(default_factory=list)
    notifications: list[Notification] = Field(default_factory=list)
    projected_seq: int = 0  # events up to here are in the read model
    runs: int = 1  # continue-as-new count + 1

    @property
    def case_id(self) -> str:
        return self.start.case_id

    @property
    def overdue(self) -> bool:
        return any(s.overdue for s in self.summonses)

    @property
    def provisional(self) -> bool:
        """A clock still to run out has a provisional due (暂定): an open summons' report-in
        (before it reports in) or sign-off, or the feedback clock."""
        if self.status == CaseStatus.AWAITING_FEEDBACK and self.feedback_provisional:
            return True
        return any(s.pending_provisional() for s in self.open_summonses())

    def current(self, department: str) -> Summons | None:
        """The latest summons of `department`, or None if it was never summoned."""
        for s in reversed(self.summonses):
            if s.department == department:
                return s
        return None

    def open_summonses(self) -> list[Summons]:
        return [s for s in self.summonses if s.status.is_open]


class ActivityName(StrEnum):
    """Activities the workflow calls by name, so workflow code never imports their modules."""

    LOAD_POLICY = "load_policy"
    PLAN_DEADLINES = "plan_deadlines"  # histories before provisional calendars
    PLAN_CLOCKS = "plan_clocks"  # deadlines that say whether they are provisional
    PROJECT_CASE = "project_case"


class StepResult(Message):
    """What a successful step returns to the caller."""

    case_id: str
    seq: int
    status: CaseStatus
    level: Level


def department_address(code: str) -> str:
    """The outbox and channel address of a department."""
    return f"department:{code}"


def centre_address(node: str) -> str:
    """The outbox and channel address of the centre (综治中心) of jurisdiction node `node`."""
    return f"centre:{node}"


def workflow_id(case_id: str) -> str:
    """The one workflow id of a case: a repeated start is a no-op."""
    return f"whistle-case-{case_id}"
