"""A case's history: every run of its workflow, fetched from the server or loaded from an
export, and written back out in the format of `temporal workflow show --output json`.

Export format (what `whistle audit export` and `GET /api/v1/audit/cases/{id}/history`
write):

- a case that ran in one workflow run: one JSON object `{"events": [...]}`, the protobuf
  JSON of its History, as `temporal workflow show -w ID --output json` prints it;
- a case that continued as new: a JSON array of such objects, one per run, oldest first.

`load_export` reads both, and also several files holding one run each (for instance one
`temporal workflow show` file per run, or the replay fixtures under tests/replay/).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from whistle.domain import CaseState, workflow_id

_WORKFLOW_ID_PREFIX = workflow_id("")
_CASE_WORKFLOW = "CaseWorkflow"  # the workflow type name (the class name: no override)


class CaseNotFound(LookupError):
    """No workflow of that case exists on the server (or the export holds none)."""


class BadExport(ValueError):
    """A file that is not a workflow history export."""


@dataclass(frozen=True)
class CaseHistory:
    """Every run of one case's workflow that is still available, oldest first.

    `complete` is False when the earliest run available continued from a run the server no
    longer keeps (retention) or the export left out: the timeline is still whole (each run
    starts with the full case state), but steps before it cannot be matched to their
    Updates."""

    case_id: str
    workflow_id: str
    runs: tuple[WorkflowHistory, ...]

    @property
    def complete(self) -> bool:
        return not _started(self.runs[0]).continued_execution_run_id

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]


def case_id_from(ref: str) -> str:
    """The case id of `ref`, given as a case id or as its workflow id."""
    return ref.removeprefix(_WORKFLOW_ID_PREFIX)


def _started(run: WorkflowHistory) -> Any:
    if not run.events or not run.events[0].HasField("workflow_execution_started_event_attributes"):
        raise BadExport("a history must begin with its WorkflowExecutionStarted event")
    return run.events[0].workflow_execution_started_event_attributes


def initial_state(run: WorkflowHistory) -> CaseState:
    """The case state a run started with (the whole case so far, for a continued run)."""
    started = _started(run)
    if started.workflow_type.name != _CASE_WORKFLOW:
        raise BadExport(f"a {started.workflow_type.name!r} history, not a case's")
    try:
        [state] = pydantic_data_converter.payload_converter.from_payloads(
            started.input.payloads, [CaseState])
    except ValidationError as e:
        raise BadExport(f"the history's input is not a case: {e}") from e
    return state  # type: ignore[no-any-return]


# --- from the server ----------------------------------------------------------------------


async def fetch_case(client: Client, case_id: str) -> CaseHistory:
    """Every run of the case's workflow, by following the continue-as-new chain back from
    the latest run. The chain is in the histories themselves, so unlike a visibility
    listing it cannot miss a run that closed a moment ago."""
    wid = workflow_id(case_id_from(case_id))
    try:
        latest = await client.get_workflow_handle(wid).fetch_history()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise CaseNotFound(f"no workflow {wid!r} on the server") from e
        raise
    return await with_earlier_runs(client, latest)


async def with_earlier_runs(client: Client, latest: WorkflowHistory) -> CaseHistory:
    """`latest` preceded by the runs it continued from, as far as the server keeps them."""
    runs = [latest]
    while previous := _started(runs[0]).continued_execution_run_id:
        handle = client.get_workflow_handle(latest.workflow_id, run_id=previous)
        try:
            runs.insert(0, await handle.fetch_history())
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            break  # past retention: the latest runs still carry the whole case state
    return _case(runs, case_id_from(latest.workflow_id))


def _case(runs: list[WorkflowHistory], case_id: str | None = None) -> CaseHistory:
    case_id = case_id or initial_state(runs[-1]).case_id
    wid = workflow_id(case_id)
    return CaseHistory(case_id, wid, tuple(WorkflowHistory(wid, r.events) for r in runs))


# --- export files -------------------------------------------------------------------------


def export_document(case: CaseHistory) -> dict[str, Any] | list[dict[str, Any]]:
    """The export of `case` as JSON data (see the module docstring for the format)."""
    runs = [r.to_json_dict() for r in case.runs]
    return runs[0] if len(runs) == 1 else runs


def export_json(case: CaseHistory) -> str:
    """The export of `case` as JSON text."""
    return json.dumps(export_document(case), ensure_ascii=False, indent=2) + "\n"


def load_export(*texts: str) -> list[CaseHistory]:
    """The cases in one or more export files (a single run or a list of runs each), runs
    grouped by case and put in the order they ran."""
    runs: list[WorkflowHistory] = []
    for text in texts:
        runs += _runs_in(text)
    by_case: dict[str, list[WorkflowHistory]] = {}
    for run in runs:
        by_case.setdefault(initial_state(run).case_id, []).append(run)
    return [_case(_chain_order(rs), case_id) for case_id, rs in by_case.items()]


def _runs_in(text: str) -> list[WorkflowHistory]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadExport(f"not JSON: {e}") from e
    docs = doc if isinstance(doc, list) else [doc]
    if not docs or not all(isinstance(d, dict) and "events" in d for d in docs):
        raise BadExport('expected {"events": [...]} or a list of them '
                        "(the output of `temporal workflow show --output json`)")
    # The id is set once the case is known (from the input); the replayer needs one.
    runs = [WorkflowHistory.from_json("unknown", d) for d in docs]
    for run in runs:
        _started(run)
    return runs


def _chain_order(runs: Iterable[WorkflowHistory]) -> list[WorkflowHistory]:
    """Runs oldest first, following continued-from links (files may come in any order)."""
    by_id = {r.run_id: r for r in runs}
    successor = {_started(r).continued_execution_run_id: r for r in by_id.values()}
    first = [r for r in by_id.values() if _started(r).continued_execution_run_id not in by_id]
    if len(first) != 1:
        raise BadExport("the runs of a case must form one continue-as-new chain")
    ordered = first
    while (nxt := successor.get(ordered[-1].run_id)) is not None:
        ordered.append(nxt)
    if len(ordered) != len(by_id):
        raise BadExport("the runs of a case must form one continue-as-new chain")
    return ordered

