"""The step catalogue: every human step of a case, once. A step is a CaseWorkflow Update
(its handler says what it does) plus one row here, which the JSON API (its route and body),
the pages (their forms), the audit (which Update takes which message and proves which
timeline event) and the tests all read. README "Adding a step" walks through one.

The request body of a step is its message without the fields the server fills in: the actor
(who is signed in) and, for a summons step, the department (from the path); a department is
named in a request by its code (see `department_fields`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from whistle.domain import (
    AddFact,
    ApplyPolicy,
    CloseCase,
    DecideExtension,
    DepartmentRef,
    EventKind,
    RecomputeDeadlines,
    RecordFeedback,
    RecordOutcome,
    Redispatch,
    ReportIn,
    RequestExtension,
    RetryPlanning,
    ReturnSummons,
    SignOff,
    Step,
    SummonMore,
    TakeOver,
)
from whistle.permissions import Permission


class Scope(StrEnum):
    """What a step acts on: the case, or one department's summons of it."""

    CASE = "case"  # POST /cases/{case_id}/<path>
    SUMMONS = "summons"  # POST /cases/{case_id}/summonses/{department}/<path>


@dataclass(frozen=True)
class StepSpec:
    """One step: the Update it sends, the message it takes, where it is posted, who may
    post it, and the timeline event that proves it happened."""

    update: str  # the CaseWorkflow Update (the handler's name)
    message: type[Step]  # the Update's argument
    scope: Scope
    path: str  # under /cases/{case_id}/, or under …/summonses/{department}/ for a summons
    permission: Permission
    event: EventKind  # what the step records (for summon_more and redispatch: the first)
    label: str  # the pages' button, an English msgid the catalogues translate
    body_optional: bool = False  # may be posted with no body at all

    @property
    def server_fields(self) -> frozenset[str]:
        """The message fields the server fills in, never the request."""
        return frozenset({"actor", "department"} if self.scope == Scope.SUMMONS
                         else {"actor"})

    @property
    def body_fields(self) -> list[str]:
        """The message fields a request gives, in the message's order."""
        return [n for n in self.message.model_fields if n not in self.server_fields]

    @property
    def route(self) -> str:
        """The path under /api/v1 (and under the pages' root)."""
        base = "/cases/{case_id}/" + ("summonses/{department}/" if self.scope == Scope.SUMMONS
                                      else "")
        return base + self.path


C, S = Scope.CASE, Scope.SUMMONS
P = Permission
E = EventKind

STEPS: tuple[StepSpec, ...] = (
    StepSpec("report_in", ReportIn, S, "report-in", P.SUMMONS_ACT, E.REPORTED_IN,
             "Report in", body_optional=True),
    StepSpec("sign_off", SignOff, S, "sign-off", P.SUMMONS_ACT, E.SIGNED_OFF, "Sign off"),
    StepSpec("return_summons", ReturnSummons, S, "return", P.SUMMONS_ACT, E.RETURNED,
             "Return the summons"),
    StepSpec("request_extension", RequestExtension, S, "extension", P.SUMMONS_ACT,
             E.EXTENSION_REQUESTED, "Ask for more time"),
    StepSpec("decide_extension", DecideExtension, S, "extension/decision", P.CASE_COORDINATE,
             E.EXTENSION_DECIDED, "Decide"),
    StepSpec("redispatch", Redispatch, S, "redispatch", P.CASE_COORDINATE, E.REDISPATCHED,
             "Re-dispatch"),
    StepSpec("summon_more", SummonMore, C, "summonses", P.CASE_COORDINATE, E.SUMMONED,
             "Summon more departments"),
    StepSpec("record_outcome", RecordOutcome, C, "outcome", P.CASE_COORDINATE, E.OUTCOME,
             "Record the outcome"),
    StepSpec("record_feedback", RecordFeedback, C, "feedback", P.CASE_COORDINATE, E.FEEDBACK,
             "Record the parties' feedback"),
    StepSpec("close", CloseCase, C, "close", P.CASE_COORDINATE, E.CLOSED, "Close the case"),
    StepSpec("apply_policy", ApplyPolicy, C, "policy", P.CASE_COORDINATE, E.POLICY_APPLIED,
             "Apply the policy in force"),
    StepSpec("add_fact", AddFact, C, "facts", P.CASE_ADD_FACT, E.FACT_ADDED, "Record a fact"),
    StepSpec("take_over", TakeOver, C, "take-over", P.CASE_TAKE_OVER, E.TAKEN_OVER,
             "Take over"),
    StepSpec("recompute_deadlines", RecomputeDeadlines, C, "deadlines/recompute",
             P.CASE_COORDINATE, E.DEADLINES_RECOMPUTED, "Recompute deadlines",
             body_optional=True),
    StepSpec("retry_planning", RetryPlanning, C, "planning/retry", P.CASE_COORDINATE,
             E.ATTENTION_RESOLVED, "Retry planning", body_optional=True),
)

BY_UPDATE: dict[str, StepSpec] = {s.update: s for s in STEPS}


def department_fields(spec: StepSpec) -> dict[str, bool]:
    """The body fields naming departments (field → True if a list of them): requests give
    codes, the server resolves them to departments before the message is made."""
    found = {}
    for name in spec.body_fields:
        annotation = spec.message.model_fields[name].annotation
        if annotation is DepartmentRef:
            found[name] = False
        elif annotation == list[DepartmentRef]:
            found[name] = True
    return found
