"""Replay verdicts: deterministic, or where and why the code now takes another path."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.workflow import NondeterminismError

from audit.history import load_export
from audit.replay import CaseReplayer, verdict
from tests.audit.conftest import HISTORIES, committed, continue_as_new_files
from tests.replay.test_replay import ReorderedCaseWorkflow


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
