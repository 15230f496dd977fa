"""Replay a case's history against the workflow code this process runs, and say whether
the code still takes the same decisions: deterministic, or diverges at event N and why.

One `CaseReplayer` replays any number of histories, one after another, on one replay
worker per `stream`.

The audit replays outside the workflow sandbox (see `CaseReplayer`) and with a data
converter that keeps one payload converter (see `replay_data_converter`): replaying a case
costs about half of what it costs in the sandbox, and the verdicts are the same.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from functools import cache

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadConverter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowReplayResult
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
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


def _shared_payload_converter() -> PayloadConverter:
    return pydantic_data_converter.payload_converter


@cache
def replay_data_converter() -> DataConverter:
    """`pydantic_data_converter`, except that every converter the SDK derives from it shares
    its one payload converter. The SDK derives a data converter for each workflow
    activation (twice) and each one builds its payload converter afresh, type-adapter cache
    included: about a tenth of the time of a replay. Converting is the same either way: same
    class, same options; the pydantic converter keeps no state but that cache."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=_shared_payload_converter,  # type: ignore[arg-type]
    )


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
    if event_id is None and (local := _LOCAL_ACTIVITY.search(reason)):
        event_id = _local_activity_marker(history, int(local.group(1)))
    return Verdict(**base, deterministic=False, event_id=event_id, reason=reason)


# Core names a local activity it cannot match by its sequence number, not by an event.
_LOCAL_ACTIVITY = re.compile(r"LocalActivity\((\d+)\)")


def _local_activity_marker(history: WorkflowHistory, n: int) -> int | None:
    """The event of the n-th local activity of the run: its marker in history."""
    markers = [e.event_id for e in history.events
               if e.HasField("marker_recorded_event_attributes")
               and e.marker_recorded_event_attributes.marker_name == "core_local_activity"]
    return markers[n - 1] if 0 < n <= len(markers) else None


def _unescape(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted)


class CaseReplayer:
    """Replays case histories on the current `CaseWorkflow` (or `workflows`, in tests).

    Outside the workflow sandbox unless `sandboxed`. Whether replay is deterministic does
    not depend on the sandbox: core compares the commands the code issues with the events
    in history, and code that keeps the sandbox's rules issues the same commands in or out
    of it. The sandbox guards the *writing* of workflow code: it refuses clocks, randomness
    and I/O in a workflow and isolates module state by re-importing the workflow's modules
    for every run (most of the cost of a sandboxed replay). The test suite runs CaseWorkflow
    sandboxed and tests/replay replays every committed history in the sandbox, so code that
    breaks those rules fails there, before it is deployed for the worker (unsandboxed by
    default, WHISTLE_WORKFLOW_SANDBOX) or the audit to run; CaseWorkflow keeps no module
    state. `sandboxed=True` replays in the sandbox, at about twice the cost."""

    def __init__(self, workflows: Sequence[type] = (CaseWorkflow,), *,
                 sandboxed: bool = False) -> None:
        runner = SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner()
        self._replayer = Replayer(workflows=list(workflows),
                                  data_converter=replay_data_converter(),
                                  workflow_runner=runner,
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
