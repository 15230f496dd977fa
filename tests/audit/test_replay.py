"""Replay verdicts: deterministic, or where and why the code now takes another path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.workflow import NondeterminismError

from audit.history import load_export
from audit.replay import CaseReplayer, replay_data_converter, verdict
from tests.audit.conftest import HISTORIES, committed, continue_as_new_files
from tests.replay.test_replay import ReorderedCaseWorkflow
from whistle.domain import CaseState


@pytest.fixture(scope="module")
def replayer() -> CaseReplayer:
    return CaseReplayer()


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_every_committed_history_replays_deterministically(replayer, path: Path):
    [case] = load_export(path.read_text(encoding="utf-8"))
    report = await replayer.replay(case)
    assert report.deterministic and report.runs[0].reason is None


async def test_every_run_of_a_continued_case_gets_a_verdict(replayer):
    [case] = load_export(*continue_as_new_files())
    report = await replayer.replay(case)
    assert [v.run for v in report.runs] == [1, 2, 3, 4]
    assert [v.run_id for v in report.runs] == case.run_ids and report.deterministic


async def test_a_careless_change_diverges_at_the_event_it_no_longer_matches():
    report = await CaseReplayer([ReorderedCaseWorkflow]).replay(committed("worked_example"))
    [v] = report.runs
    assert not report.deterministic and not v.deterministic
    assert v.event_id == 5  # the load_policy activity, where the new code starts a timer
    assert "Nondeterminism" in v.reason and "HistoryEvent(id: 5" in v.reason


def test_a_failure_that_is_not_a_divergence_is_reported_as_such():
    [case] = load_export((HISTORIES / "worked_example.json").read_text())
    v = verdict(case.runs[0], 1, RuntimeError("LangFail: boom at event 12"))
    assert not v.deterministic and v.reason.startswith("replay failed") and v.event_id == 12
    v = verdict(case.runs[0], 1, NondeterminismError('x message: "a \\"quoted\\" text" y'))
    assert v.reason == 'a "quoted" text' and v.event_id is None


@pytest.fixture(scope="module")
def sandboxed() -> CaseReplayer:
    return CaseReplayer(sandboxed=True)


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_in_the_sandbox_or_out_of_it_the_verdicts_are_the_same(replayer, sandboxed,
                                                                     path: Path):
    """The audit replays outside the sandbox (faster); the worker runs in it."""
    [case] = load_export(path.read_text(encoding="utf-8"))
    assert (await replayer.replay(case)).model_dump() == (
        await sandboxed.replay(case)).model_dump()


def test_the_replay_converter_converts_as_the_worker_does_with_one_payload_converter():
    [case] = load_export((HISTORIES / "worked_example.json").read_text())
    [payload] = case.runs[0].events[0].workflow_execution_started_event_attributes.input.payloads
    converter = replay_data_converter()
    [state] = converter.payload_converter.from_payloads([payload], [CaseState])
    [again] = pydantic_data_converter.payload_converter.from_payloads([payload], [CaseState])
    assert state == again
    assert (converter.payload_converter.to_payloads([state])
            == pydantic_data_converter.payload_converter.to_payloads([state]))
    derived = dataclasses.replace(converter)  # as the SDK derives one per activation
    assert derived.payload_converter is converter.payload_converter
