"""What an audit answers, as JSON-ready models: the timeline history proves, replay
verdicts, cross-check findings, and the bulk summary."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, computed_field

from whistle.domain import EventKind


class TimelineEntry(BaseModel):
    """One timeline event as the case's history records it, and where: the history event
    of the projection that carried it (absent when it came in the run's starting state)."""

    seq: int
    kind: EventKind
    label_zh: str
    at: datetime
    actor: str
    department: str | None = None
    data: dict[str, Any]
    run: int  # 1 = the oldest run available
    history_event_id: int | None = None
    projected: bool  # the projection activity completed: the read model must have it
    step: str | None = None  # the Update (accepted in history) that did this step


class CaseTimeline(BaseModel):
    """A case's timeline as its history proves it. `complete` is False when the earliest
    run is gone (retention) or left out of an export: the events are all there (a run
    starts with the whole case), but the steps of the missing runs cannot be traced."""

    case_id: str
    workflow_id: str
    runs: int
    complete: bool
    timeline: list[TimelineEntry]


class Verdict(BaseModel):
    """Replaying one run of a case against the current workflow code."""

    workflow_id: str
    run_id: str
    run: int
    deterministic: bool
    event_id: int | None = None  # the history event where the code took another path
    reason: str | None = None


class CaseReplay(BaseModel):
    """Replaying every run of a case."""

    case_id: str
    workflow_id: str
    runs: list[Verdict]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def deterministic(self) -> bool:
        return all(v.deterministic for v in self.runs)


class FindingKind(StrEnum):
    EVENT_MISSING = "event_missing"  # in history, projected, not in SQL
    EVENT_EXTRA = "event_extra"  # in SQL, not in history
    EVENT_DIFFERENT = "event_different"
    CASE_MISSING = "case_missing"
    CASE_DIFFERENT = "case_different"
    SUMMONS_MISSING = "summons_missing"
    SUMMONS_EXTRA = "summons_extra"
    SUMMONS_DIFFERENT = "summons_different"
    OUTBOX_MISSING = "outbox_missing"
    OUTBOX_EXTRA = "outbox_extra"
    STEP_WITHOUT_EVENT = "step_without_event"  # an accepted Update left no timeline event
    EVENT_WITHOUT_STEP = "event_without_step"  # a human step no accepted Update asked for
    STEP_ACTOR_DIFFERENT = "step_actor_different"  # the Update's actor is not the event's


class Finding(BaseModel):
    """One place where the read model (or the timeline) does not tell what history says.
    `expected` is history's value, `found` the other side's."""

    kind: FindingKind
    table: str  # case_record, summons, case_event, outbox, or history
    key: str  # which row: "seq 7", "xjk-police round 1", the case id, "update <id>"
    field: str | None = None
    expected: Any = None
    found: Any = None
    message: str


class CheckReport(BaseModel):
    """The read model of one case cross-checked against its history."""

    case_id: str
    workflow_id: str
    runs: int
    events: int  # timeline events history holds
    pending: int  # of them, still on their way to the read model (projection running)
    steps: int  # accepted Updates cross-checked against the timeline
    findings: list[Finding]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.findings


class CaseAudit(BaseModel):
    """Replay verdicts and cross-check of one case (a bulk audit's line)."""

    case_id: str
    workflow_id: str
    replay: list[Verdict] = []
    check: CheckReport | None = None
    error: str | None = None  # the case could not be audited (fetch or decode failed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def deterministic(self) -> bool:
        return self.error is None and all(v.deterministic for v in self.replay)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.deterministic and self.check is not None and self.check.ok


class BulkSummary(BaseModel):
    checked: int = 0  # cases
    runs: int = 0  # workflow runs replayed
    deterministic: int = 0
    diverged: int = 0
    mismatched: int = 0  # cases whose read model (or timeline) disagrees with history
    errors: int = 0
    seconds: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cases_per_second(self) -> float:
        return round(self.checked / self.seconds, 1) if self.seconds else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.diverged == 0 and self.mismatched == 0 and self.errors == 0

    def add(self, case: CaseAudit) -> None:
        """Count one audited case."""
        self.checked += 1
        self.runs += len(case.replay)
        if case.error is not None:
            self.errors += 1
            return
        if case.deterministic:
            self.deterministic += 1
        else:
            self.diverged += 1
        if case.check is not None and not case.check.ok:
            self.mismatched += 1


class BulkReport(BaseModel):
    query: str
    summary: BulkSummary
    cases: list[CaseAudit]
