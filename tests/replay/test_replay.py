"""Replay guard: every committed history must replay against the current workflow code.
A change that would break cases already running fails here, before it reaches them.
Record the fixtures afresh with `make record-histories` (see record.py for when)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from whistle.domain import CaseState
from workflows.case import CaseWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


def test_there_is_a_history_for_every_path():
    names = {p.stem.split(".")[0].split("@")[0] for p in HISTORIES}
    assert names >= {"worked_example", "ladder_to_the_top", "extension_and_no_feedback",
                     "return_and_redispatch", "reopen_then_unsatisfied", "unresolved_rises",
                     "continue_as_new", "taken_over_with_facts", "working_day_ladder",
                     "needs_attention_retried", "deadlines_recomputed"}
    assert len([p for p in HISTORIES if p.stem.startswith("continue_as_new.run")]) >= 2


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays_on_current_code(path: Path):
    replayer = Replayer(workflows=[CaseWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(load(path))


@workflow.defn(name="CaseWorkflow", sandboxed=False)
class ReorderedCaseWorkflow(CaseWorkflow):
    """A careless edit: the same workflow, but it sleeps a second before opening."""

    @workflow.run
    async def run(self, state: CaseState) -> CaseState:
        return await super().run(state)

    async def _open(self) -> None:
        await workflow.sleep(1)
        await super()._open()

    async def _open_before_calendars(self) -> None:
        await workflow.sleep(1)
        await super()._open_before_calendars()


async def test_a_non_deterministic_change_is_caught():
    replayer = Replayer(workflows=[ReorderedCaseWorkflow],
                        data_converter=pydantic_data_converter)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(HISTORIES[0]))
