"""Replay a case's history against the workflow code this process runs, and say whether
the code still takes the same decisions: deterministic, or diverges at event N and why.

One `CaseReplayer` keeps one replay worker for any number of histories (starting one costs
far more than replaying a case)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from functools import cache

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer, WorkflowReplayResult
from temporalio.workflow import NondeterminismError

from audit.history import CaseHistory
from audit.report import CaseReplay, Verdict
from workflows.case import CaseWorkflow

# Core's messages look like: `... message: "[TMPRL1100] Nondeterminism error: Timer machine
# does not handle this event: HistoryEvent(id: 6, ActivityTaskScheduled)", ...`
_EVENT_ID = re.compile(r"HistoryEvent\(id: (\d+)|[Ee]vent(?: id)?[ :#]+(\d+)")
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')


@cache
def quiet_runtime() -> Runtime:
    """A runtime for replay whose core logs errors only: a divergence is the verdict we
    report, not a warning for the console."""
    quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    return Runtime(telemetry=TelemetryConfig(logging=quiet))


def verdict(history: WorkflowHistory, run: int, failure: Exception | None) -> Verdict:
    """The verdict on one replayed run from the replayer's failure (None: it replayed)."""
    base = dict(workflow_id=history.workflow_id, run_id=history.run_id, run=run)
    if failure is None:
        return Verdict(**base, deterministic=True)
    text = str(failure)
    inner = _CORE_MESSAGE.search(text)
    reason = _unescape(inner.group(1)) if inner else text
    if not isinstance(failure, NondeterminismError):
        reason = f"replay failed: {reason}"
    found = _EVENT_ID.search(reason)
    event_id = int(found.group(1) or found.group(2)) if found else None
    return Verdict(**base, deterministic=False, event_id=event_id, reason=reason)


def _unescape(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted)


class CaseReplayer:
    """Replays case histories on the current `CaseWorkflow` (or `workflows`, in tests)."""

    def __init__(self, workflows: Sequence[type] = (CaseWorkflow,)) -> None:
        self._replayer = Replayer(workflows=list(workflows),
                                  data_converter=pydantic_data_converter,
                                  runtime=quiet_runtime())

    def stream(self, histories: AsyncIterator[WorkflowHistory]
               ) -> AbstractAsyncContextManager[AsyncIterator[WorkflowReplayResult]]:
        """Replay `histories` one after another on one replay worker; results come in the
        order the histories were given."""
        return self._replayer.workflow_replay_iterator(histories)

    async def replay(self, case: CaseHistory) -> CaseReplay:
        """Replay every run of `case`."""

        async def runs() -> AsyncIterator[WorkflowHistory]:
            for r in case.runs:
                yield r

        verdicts = []
        async with self.stream(runs()) as results:
            async for result in results:
                verdicts.append(verdict(result.history, len(verdicts) + 1,
                                        result.replay_failure))
        return CaseReplay(case_id=case.case_id, workflow_id=case.workflow_id, runs=verdicts)
