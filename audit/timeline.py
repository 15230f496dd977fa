"""The case timeline rebuilt from its history alone.

The workflow writes its read model only through the `project_case` activity, and an
activity's input is recorded in history (ActivityTaskScheduled): every timeline event, the
case snapshot after it, and the notifications it caused are there, exactly as the worker
was asked to write them. A continued run also starts with the whole case state. The
Updates accepted in history say who asked for each human step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.contrib.pydantic import pydantic_data_converter

from audit.history import CaseHistory, initial_state
from audit.report import CaseTimeline, TimelineEntry
from whistle.domain import (
    CASE_LABELS_ZH,
    ActivityName,
    CaseEvent,
    CaseState,
    EventKind,
    Notification,
    Projection,
    Redispatch,
    Step,
    SummonMore,
)
from whistle.steps import BY_UPDATE, STEPS

# The argument of every step Update of CaseWorkflow. "opened" takes none and adds nothing
# to the timeline. tests/audit checks this covers every Update the workflow defines.
STEP_ARGS: dict[str, type[Step]] = {s.update: s.message for s in STEPS}
NO_TIMELINE_UPDATES = {"opened"}

Fact = tuple[EventKind, str | None]  # a timeline event a step must have caused: kind, department

# Kinds only a person's step causes (CLOSED and REOPENED may follow from a step or a clock).
HUMAN_KINDS = {EventKind.OPENED, EventKind.SUMMONED, EventKind.REPORTED_IN,
               EventKind.SIGNED_OFF, EventKind.RETURNED, EventKind.REDISPATCHED,
               EventKind.EXTENSION_REQUESTED, EventKind.EXTENSION_DECIDED, EventKind.OUTCOME,
               EventKind.FEEDBACK, EventKind.POLICY_APPLIED, EventKind.FACT_ADDED,
               EventKind.TAKEN_OVER, EventKind.DEADLINES_RECOMPUTED}


@dataclass
class ProvenEvent:
    """A timeline event and where history holds it."""

    event: CaseEvent
    run: int
    history_event_id: int | None  # the ActivityTaskScheduled; None: the run's start state
    projected: bool  # its projection completed (or it predates the run: carried over)


@dataclass
class Snapshot:
    """The case state one projection wrote, and the last event seq it wrote with it."""

    state: CaseState
    last_seq: int
    projected: bool


@dataclass
class AcceptedStep:
    """An Update history accepted: who asked for what, and how it ended."""

    name: str
    update_id: str
    run: int
    history_event_id: int
    step: Step | None
    succeeded: bool | None = None  # None while it runs; a failed one caused nothing


@dataclass
class Reconstruction:
    case_id: str
    workflow_id: str
    runs: int
    complete: bool  # the original run is there: every step can be matched to its Update
    start: CaseState  # the state the earliest available run started with
    events: dict[int, ProvenEvent] = field(default_factory=dict)  # by seq
    snapshots: list[Snapshot] = field(default_factory=list)
    notifications: list[tuple[Notification, EventKind, bool]] = field(default_factory=list)
    steps: list[AcceptedStep] = field(default_factory=list)

    @property
    def first_seq(self) -> int:
        """The first event whose step and notifications the available runs hold (earlier
        ones came carried over from a run no longer available)."""
        if self.complete or not self.start.events:
            return 1
        return self.start.events[-1].seq + 1

    def timeline(self) -> list[ProvenEvent]:
        return [self.events[seq] for seq in sorted(self.events)]

    def last_projected(self) -> Snapshot | None:
        done = [s for s in self.snapshots if s.projected]
        return done[-1] if done else None


def reconstruct(case: CaseHistory) -> Reconstruction:
    """The timeline, snapshots, notifications and accepted steps of `case`, from history."""
    start = initial_state(case.runs[0])
    r = Reconstruction(case.case_id, case.workflow_id, len(case.runs), case.complete, start)
    _carried_over(r, start)
    for run, run_history in enumerate(case.runs, start=1):
        _read_run(r, run, run_history.events)
    return r


def _carried_over(r: Reconstruction, start: CaseState) -> None:
    """Events a continued run started with: projected by the run before it (continue-as-new
    waits for every projection)."""
    for e in start.events:
        r.events[e.seq] = ProvenEvent(e, 1, None, e.seq <= start.projected_seq)


# The event types read below, as plain ints: each `EventType.X` is a lookup in Python
# (protobuf's enum wrapper), and a history has a hundred events or more.
_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
_COMPLETED = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
_UPDATE_ACCEPTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
_UPDATE_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED


def _read_run(r: Reconstruction, run: int, events: Any) -> None:
    """Add run number `run`: its projections (done or still running) and its Updates."""
    completed_activities = set()
    projections: list[tuple[HistoryEvent, Projection]] = []
    steps: dict[str, AcceptedStep] = {}
    for e in events:
        t = e.event_type
        if t == _SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            if a.activity_type.name == ActivityName.PROJECT_CASE:
                projections.append((e, _decode(a.input, Projection)))
        elif t == _COMPLETED:
            completed_activities.add(e.activity_task_completed_event_attributes.scheduled_event_id)
        elif t == _UPDATE_ACCEPTED:
            s = _accepted(e, run)
            steps[s.update_id] = s
        elif t == _UPDATE_COMPLETED:
            c = e.workflow_execution_update_completed_event_attributes
            if c.meta.update_id in steps:
                steps[c.meta.update_id].succeeded = c.outcome.HasField("success")
    for e, p in projections:
        _add_projection(r, run, e, p, e.event_id in completed_activities)
    r.steps += [s for s in steps.values() if s.name not in NO_TIMELINE_UPDATES]


def _add_projection(r: Reconstruction, run: int, e: HistoryEvent, p: Projection,
                    projected: bool) -> None:
    kinds = {ev.seq: ev.kind for ev in p.events}
    for ev in p.events:
        r.events[ev.seq] = ProvenEvent(ev, run, e.event_id, projected)
    r.notifications += [(n, kinds[n.seq], projected) for n in p.notifications if n.seq in kinds]
    r.snapshots.append(Snapshot(p.state, max(kinds, default=0), projected))


def _accepted(e: HistoryEvent, run: int) -> AcceptedStep:
    req = e.workflow_execution_update_accepted_event_attributes.accepted_request
    name = req.input.name
    arg_type = STEP_ARGS.get(name)
    step = _decode(req.input.args, arg_type) if arg_type and req.input.args.payloads else None
    return AcceptedStep(name, req.meta.update_id, run, e.event_id, step)


def _decode(payloads: Payloads, type_: type[Any]) -> Any:
    [value] = pydantic_data_converter.payload_converter.from_payloads(payloads.payloads, [type_])
    return value


# --- who did which step -------------------------------------------------------------------


def step_facts(name: str, step: Step) -> list[Fact]:
    """The timeline events the step Update `name` with argument `step` must have caused."""
    if isinstance(step, SummonMore):
        return [(EventKind.SUMMONED, d.code) for d in step.departments]
    if isinstance(step, Redispatch):
        return [(EventKind.REDISPATCHED, step.department), (EventKind.SUMMONED, step.to.code)]
    kind = BY_UPDATE[name].event
    return [(kind, getattr(step, "department", None))]


def intake_facts(start: CaseState, summoned: bool = True) -> list[Fact]:
    """The events opening the case caused: opened, and the intake's summonses (unless its
    planning failed and was never resumed: `summoned` False)."""
    return [(EventKind.OPENED, None)] + [(EventKind.SUMMONED, d.code)
                                         for d in start.start.departments if summoned]


def intake_summoned(events: list[CaseEvent]) -> bool:
    """Were the intake's summonses made? Not while its planning failed and was not resumed
    (a planning failure is followed by its resumption, or by nothing)."""
    waiting = False
    for e in events:
        if e.kind == EventKind.NEEDS_ATTENTION and e.data.get("code") == "planning_failed":
            waiting = True
        elif e.kind == EventKind.ATTENTION_RESOLVED:
            waiting = False
    return not waiting


@dataclass
class StepMatch:
    """A step fact paired with the timeline event it caused (None: none found)."""

    fact: Fact
    actor: str
    source: AcceptedStep | None  # None: the intake
    event: CaseEvent | None

    @property
    def finished(self) -> bool:
        """The step has finished, so its event must be on the timeline."""
        return self.source is None or self.source.succeeded is True


def match_steps(r: Reconstruction) -> Iterator[StepMatch | CaseEvent]:
    """Each fact of each step (the intake, then every Update not failed) paired, in order,
    with the timeline events of its kind and department; events of a human kind no step
    accounts for come out alone. Events a continued run carried over from a run no longer
    available are skipped: their Updates are gone with it."""
    queues: dict[Fact, list[CaseEvent]] = {}
    for pe in r.timeline():
        if pe.event.seq >= r.first_seq:
            queues.setdefault((pe.event.kind, pe.event.department), []).append(pe.event)
    wanted: list[tuple[Fact, str, AcceptedStep | None]] = []
    if r.complete:
        summoned = intake_summoned([pe.event for pe in r.timeline()])
        wanted += [(f, r.start.start.actor, None) for f in intake_facts(r.start, summoned)]
    for s in r.steps:
        if s.succeeded is not False and s.step is not None:
            wanted += [(f, s.step.actor, s) for f in step_facts(s.name, s.step)]
    for fact, actor, source in wanted:
        queue = queues.get(fact)
        yield StepMatch(fact, actor, source, queue.pop(0) if queue else None)
    for (kind, _), left in queues.items():
        if kind in HUMAN_KINDS:
            yield from left


def case_timeline(r: Reconstruction) -> CaseTimeline:
    """The page-ready timeline of the case `r` rebuilt."""
    return CaseTimeline(case_id=r.case_id, workflow_id=r.workflow_id, runs=r.runs,
                        complete=r.complete, timeline=entries(r))


def entries(r: Reconstruction) -> list[TimelineEntry]:
    """The timeline as page-ready entries, each with the Update that asked for it."""
    by_seq = {m.event.seq: m.source for m in match_steps(r)
              if isinstance(m, StepMatch) and m.event is not None}
    out = []
    for pe in r.timeline():
        e = pe.event
        source = by_seq.get(e.seq)
        out.append(TimelineEntry(
            seq=e.seq, kind=e.kind, label_zh=CASE_LABELS_ZH[e.kind], at=e.at, actor=e.actor,
            department=e.department, data=e.data, run=pe.run,
            history_event_id=pe.history_event_id, projected=pe.projected,
            step=source.name if source else ("intake" if e.seq in by_seq else None),
        ))
    return out
