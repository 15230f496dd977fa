"""The floor: a bare Temporal workflow of the same shape as a Whistle case, and nothing else.

open → summon 3 departments → 3 report-ins and 3 sign-offs (Updates with validators) →
outcome → close; one activity per step, each writing one row to SQLite. No policy, no
clocks, no read model, no search attributes: what the engine costs for this shape on this
machine. Kept lean (temporalio and the standard library only) so the sandbox stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

TASK_QUEUE = "bench-floor"
RECORD = "floor_record"
DEPARTMENTS = ("d1", "d2", "d3")


@dataclass
class Row:
    case_id: str
    kind: str
    department: str = ""


@dataclass
class Step:
    department: str = ""


class Rejected(ApplicationError):
    def __init__(self, message: str) -> None:
        super().__init__(message, type="rejected", non_retryable=True)


@workflow.defn
class FloorCase:
    @workflow.init
    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        self.summons: dict[str, str] = {}
        self.is_open = False
        self.outcome = False
        self.closed = False
        self.seq = 0

    @workflow.run
    async def run(self, case_id: str) -> int:
        await self._record("opened")
        await self._record("summoned")
        self.summons = {d: "summoned" for d in DEPARTMENTS}
        self.is_open = True
        await workflow.wait_condition(lambda: self.closed and workflow.all_handlers_finished())
        return self.seq

    async def _record(self, kind: str, department: str = "") -> int:
        self.seq += 1
        await workflow.execute_activity(RECORD, Row(self.case_id, kind, department),
                                        start_to_close_timeout=timedelta(seconds=30))
        return self.seq

    @workflow.update
    async def opened(self) -> int:
        await workflow.wait_condition(lambda: self.is_open)
        return self.seq

    @workflow.update
    async def report_in(self, step: Step) -> int:
        self.summons[step.department] = "reported_in"
        return await self._record("reported_in", step.department)

    @report_in.validator
    def _v_report_in(self, step: Step) -> None:
        if self.summons.get(step.department) != "summoned":
            raise Rejected(f"{step.department} cannot report in")

    @workflow.update
    async def sign_off(self, step: Step) -> int:
        self.summons[step.department] = "signed_off"
        return await self._record("signed_off", step.department)

    @sign_off.validator
    def _v_sign_off(self, step: Step) -> None:
        if self.summons.get(step.department) != "reported_in":
            raise Rejected(f"{step.department} cannot sign off")

    @workflow.update
    async def record_outcome(self) -> int:
        self.outcome = True
        return await self._record("outcome")

    @record_outcome.validator
    def _v_outcome(self) -> None:
        if self.outcome or any(s != "signed_off" for s in self.summons.values()):
            raise Rejected("summonses open")

    @workflow.update
    async def close(self) -> int:
        seq = await self._record("closed")
        self.closed = True
        return seq

    @close.validator
    def _v_close(self) -> None:
        if not self.outcome or self.closed:
            raise Rejected("no outcome yet")

