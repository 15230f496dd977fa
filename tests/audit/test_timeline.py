"""The timeline rebuilt from history alone, and who asked for each step."""

from __future__ import annotations

import json

from temporalio import workflow

from audit.check import ReadModel, check
from audit.history import load_export
from audit.report import FindingKind
from audit.timeline import NO_TIMELINE_UPDATES, STEP_ARGS, entries, reconstruct
from tests.audit.conftest import (
    committed,
    continue_as_new_files,
    edit_update_args,
    history_file,
)
from workflows.case import CaseWorkflow


def history_findings(case):
    """Findings about history itself (steps against the timeline), ignoring SQL."""
    report = check(reconstruct(case), ReadModel(None, [], [], []))
    return [f for f in report.findings if f.table == "history"]


def test_the_worked_example_timeline_says_who_did_what_and_which_update_asked():
    timeline = entries(reconstruct(committed("worked_example")))
    assert [e.kind for e in timeline] == (["opened"] + ["summoned"] * 3 + ["reported_in"] * 3
                                          + ["signed_off"] * 3 + ["outcome", "feedback", "closed"])
    assert [e.seq for e in timeline] == list(range(1, 14))
    assert all(e.projected and e.run == 1 and e.history_event_id for e in timeline)
    assert [e.step for e in timeline[:5]] == ["intake"] * 4 + ["report_in"]
    assert timeline[7].step == "sign_off" and timeline[7].actor == "dept-staff-1"
    assert timeline[10].step == "record_outcome" and timeline[10].label_zh == "结果"
    assert timeline[12].step is None  # closed: follows from the feedback, no step of its own


def test_clocks_and_ladder_steps_are_on_the_timeline_with_the_system_as_actor():
    timeline = entries(reconstruct(committed("ladder_to_the_top")))
    ladder = [(e.kind, e.data.get("action")) for e in timeline if e.actor == "system"]
    assert ladder[0] == ("clock_missed", None)
    assert ("escalated", "remind") in ladder and ("escalated", "notify_supervisor") in ladder
    assert ("escalated", "raise") in ladder and ("escalated", "unresolved_at_top") in ladder


def test_a_case_across_four_runs_has_one_unbroken_timeline():
    [case] = load_export(*continue_as_new_files())
    timeline = entries(reconstruct(case))
    assert [e.seq for e in timeline] == list(range(1, 17))
    assert [e.run for e in timeline][-1] == 4 and timeline[0].run == 1
    assert history_findings(case) == []


def test_the_latest_run_alone_still_holds_the_whole_timeline():
    [case] = load_export(continue_as_new_files()[-1])  # what `temporal workflow show` gives
    timeline = entries(reconstruct(case))
    assert [e.seq for e in timeline] == list(range(1, 17))
    carried = [e for e in timeline if e.history_event_id is None]
    assert carried and all(e.projected for e in carried)
    assert history_findings(case) == []  # earlier steps are not held against missing runs


def test_an_update_whose_actor_differs_from_its_event_is_named():
    doc = json.loads(history_file("worked_example"))
    edit_update_args(doc, "sign_off", lambda arg: arg.update(actor="impostor"), nth=1)
    [case] = load_export(json.dumps(doc))
    [finding] = history_findings(case)
    assert finding.kind == FindingKind.STEP_ACTOR_DIFFERENT
    assert (finding.key, finding.expected, finding.found) == ("seq 9", "impostor", "dept-staff-1")


def test_a_step_with_no_event_and_an_event_with_no_step_are_named():
    doc = json.loads(history_file("worked_example"))
    edit_update_args(doc, "report_in", lambda arg: arg.update(department="xjk-police"))
    [case] = load_export(json.dumps(doc))
    kinds = {f.kind: f for f in history_findings(case)}
    assert set(kinds) == {FindingKind.STEP_WITHOUT_EVENT, FindingKind.EVENT_WITHOUT_STEP}
    assert "reported_in of xjk-police" in kinds[FindingKind.STEP_WITHOUT_EVENT].message
    assert kinds[FindingKind.EVENT_WITHOUT_STEP].key == "seq 5"


def test_every_update_of_the_case_workflow_is_known_to_the_audit():
    defn = workflow._Definition.must_from_class(CaseWorkflow)
    assert set(defn.updates) == set(STEP_ARGS) | NO_TIMELINE_UPDATES
