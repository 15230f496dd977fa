"""Export and load: the `temporal workflow show --output json` shape, one run or several."""

from __future__ import annotations

import json
import random

import pytest
from temporalio import workflow

from audit import history
from audit.history import BadExport, case_id_from, export_document, export_json, load_export
from tests.audit.conftest import committed, continue_as_new_files, history_file
from whistle.domain import workflow_id
from workflows.case import CaseWorkflow


def test_a_single_run_exports_as_the_object_temporal_workflow_show_prints():
    case = committed("worked_example")
    doc = export_document(case)
    assert isinstance(doc, dict) and list(doc) == ["events"]
    assert doc == json.loads(history_file("worked_example"))  # the recorder wrote to_json too
    assert case.workflow_id == workflow_id(case.case_id) and len(case.runs) == 1


def test_a_case_that_continued_as_new_exports_as_a_list_of_runs_oldest_first():
    files = continue_as_new_files()
    random.Random(7).shuffle(files)  # one file per run, in any order
    [case] = load_export(*files)
    assert len(case.runs) == 4 and case.complete
    text = export_json(case)
    doc = json.loads(text)
    assert isinstance(doc, list) and len(doc) == 4
    assert doc == [json.loads(f) for f in continue_as_new_files()]  # run1 … run4
    [again] = load_export(text)
    assert again.run_ids == case.run_ids and again.case_id == case.case_id


def test_the_latest_run_alone_is_an_incomplete_case():
    [case] = load_export(continue_as_new_files()[-1])
    assert len(case.runs) == 1 and not case.complete


def test_files_of_different_cases_come_back_as_different_cases():
    cases = load_export(history_file("worked_example"), history_file("ladder_to_the_top"))
    assert len({c.case_id for c in cases}) == 2


@pytest.mark.parametrize("text", ["not json", "{}", "[]", '[{"events": []}]', '{"events": [{}]}'])
def test_what_is_not_a_history_export_is_refused(text):
    with pytest.raises(BadExport):
        load_export(text)


def test_runs_that_do_not_form_one_chain_are_refused():
    files = continue_as_new_files()
    with pytest.raises(BadExport, match="chain"):
        load_export(files[0], files[2])  # run 2 is missing


def test_a_case_is_named_by_its_id_or_its_workflow_id():
    assert case_id_from("whistle-case-0123456789abcdef") == "0123456789abcdef"
    assert case_id_from("0123456789abcdef") == "0123456789abcdef"


def test_a_history_of_another_workflow_is_refused():
    doc = json.loads(history_file("worked_example"))
    doc["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] = "Other"
    with pytest.raises(BadExport, match="'Other' history"):
        load_export(json.dumps(doc))


def test_the_case_workflow_type_name_is_the_one_histories_carry():
    assert workflow._Definition.must_from_class(CaseWorkflow).name == history._CASE_WORKFLOW
