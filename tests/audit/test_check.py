"""The read model cross-checked against history: a row edited by hand is named.

The read model is written here exactly as the worker wrote it, by running the projection
activity on the inputs history recorded, then edited as a careless (or dishonest) hand
would."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import inspect
from sqlmodel import Session, col, delete, select

from audit.check import check_cases, check_in
from audit.history import CaseHistory, load_export
from audit.report import FindingKind
from audit.timeline import reconstruct
from tests.audit.conftest import committed, continue_as_new_files, project
from whistle.models import CaseEventRecord, CaseRecord, OutboxMessage, SummonsRecord
from whistle.projection import case_row, summons_row

PATHS = ["worked_example", "ladder_to_the_top", "extension_and_no_feedback",
         "return_and_redispatch", "reopen_then_unsatisfied", "unresolved_rises"]


def audit(engine, case):
    with Session(engine) as session:
        return check_in(session, reconstruct(case))


def worked_example(engine):
    case = committed("worked_example")
    project(engine, case)
    return case


def edit(engine, model, key, **values):
    with Session(engine) as session:
        row = session.get(model, key)
        for k, v in values.items():
            setattr(row, k, v)
        session.commit()


@pytest.mark.parametrize("name", PATHS)
def test_a_read_model_projected_from_history_agrees_with_it(read_model, name):
    case = committed(name)
    project(read_model, case)
    report = audit(read_model, case)
    assert report.ok, report.findings
    assert report.events == len(reconstruct(case).events) and report.pending == 0


def test_a_case_across_runs_agrees_too(read_model):
    [case] = load_export(*continue_as_new_files())
    project(read_model, case)
    report = audit(read_model, case)
    assert report.ok and report.runs == 4 and report.events == 16


def test_an_edited_actor_is_named_with_both_values(read_model):
    case = worked_example(read_model)
    cid = case.case_id
    edit(read_model, CaseEventRecord, (cid, 8), actor="someone-else")
    [f] = audit(read_model, case).findings
    assert (f.kind, f.table, f.key, f.field) == (FindingKind.EVENT_DIFFERENT, "case_event",
                                                 "seq 8", "actor")
    assert (f.expected, f.found) == ("dept-staff-1", "someone-else")


def test_edited_time_data_and_department_are_each_named(read_model):
    case = worked_example(read_model)
    cid = case.case_id
    with Session(read_model) as session:
        row = session.get(CaseEventRecord, (cid, 11))
        at = row.at
    edit(read_model, CaseEventRecord, (cid, 11), at=at + timedelta(days=1),
         data={"kind": "withdrawn"}, department="xjk-police")
    fields = {f.field for f in audit(read_model, case).findings}
    assert fields == {"at", "data", "department"}


def test_a_deleted_event_is_missing_and_an_added_one_is_extra(read_model):
    case = worked_example(read_model)
    cid = case.case_id
    with Session(read_model) as session:
        session.exec(delete(CaseEventRecord).where(col(CaseEventRecord.case_id) == cid,
                                                   col(CaseEventRecord.seq) == 6))
        template = session.get(CaseEventRecord, (cid, 13))
        session.add(CaseEventRecord(case_id=cid, seq=14, kind="reopened", at=template.at,
                                    actor="forger", data={}))
        session.commit()
    found = {(f.kind, f.key) for f in audit(read_model, case).findings}
    assert found == {(FindingKind.EVENT_MISSING, "seq 6"), (FindingKind.EVENT_EXTRA, "seq 14")}


def test_a_flipped_case_status_is_named(read_model):
    case = worked_example(read_model)
    edit(read_model, CaseRecord, case.case_id, status="open", close_reason=None)
    found = {(f.kind, f.field, f.expected, f.found) for f in audit(read_model, case).findings}
    assert found == {(FindingKind.CASE_DIFFERENT, "status", "closed", "open"),
                     (FindingKind.CASE_DIFFERENT, "close_reason", "feedback", None)}


def test_a_missing_case_row_is_named(read_model):
    case = worked_example(read_model)
    with Session(read_model) as session:
        session.exec(delete(CaseRecord).where(col(CaseRecord.case_id) == case.case_id))
        session.commit()
    [f] = audit(read_model, case).findings
    assert f.kind == FindingKind.CASE_MISSING


def test_summons_rows_edited_deleted_or_added_are_named(read_model):
    case = worked_example(read_model)
    cid = case.case_id
    edit(read_model, SummonsRecord, (cid, "xjk-petition", 1), status="returned")
    with Session(read_model) as session:
        row = session.get(SummonsRecord, (cid, "xjk-land-office", 1))
        extra = SummonsRecord.model_validate(row.model_dump() | {"department": "xjk-police"})
        session.delete(row)
        session.add(extra)
        session.commit()
    found = {(f.kind, f.key, f.field) for f in audit(read_model, case).findings}
    assert found == {
        (FindingKind.SUMMONS_DIFFERENT, "xjk-petition round 1", "status"),
        (FindingKind.SUMMONS_MISSING, "xjk-land-office round 1", None),
        (FindingKind.SUMMONS_EXTRA, "xjk-police round 1", None),
    }


def test_a_lost_notification_is_named(read_model):
    case = worked_example(read_model)
    with Session(read_model) as session:
        msg = session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case.case_id,
                                                       OutboxMessage.seq == 2)).one()
        session.delete(msg)
        session.commit()
    [f] = audit(read_model, case).findings
    assert (f.kind, f.key) == (FindingKind.OUTBOX_MISSING, "seq 2 to department:xjk-petition")


def test_a_projection_still_running_is_pending_not_a_mismatch(read_model):
    whole = committed("worked_example")
    last = max(e.event_id for e in whole.runs[0].events
               if e.activity_task_scheduled_event_attributes.activity_type.name == "project_case")
    [cut] = load_export(_history_up_to(whole, last))  # the last projection scheduled, not done
    project(read_model, whole, upto_event=last)  # … and its write not landed yet
    report = audit(read_model, cut)
    assert report.ok and report.pending == 2  # feedback and closed
    project(read_model, whole)  # now it has landed, before history heard back
    assert audit(read_model, cut).ok


def _history_up_to(case, event_id):
    doc = case.runs[0].to_json_dict()
    doc["events"] = [e for e in doc["events"] if int(e["eventId"]) <= event_id]
    return json.dumps(doc)


def test_every_column_the_projection_writes_is_checked():
    case_cols = {c.name for c in inspect(CaseRecord).columns}
    summons_cols = {c.name for c in inspect(SummonsRecord).columns}
    state = reconstruct(committed("worked_example")).last_projected().state
    assert case_cols - set(case_row(state, 1)) == {"case_id", "updated_at"}
    assert summons_cols - set(summons_row(state.summonses[0])) == {
        "case_id", "department", "round"}


def test_cases_checked_together_get_the_findings_each_gets_alone(read_model):
    """The bulk audit reads a batch of cases in one query per table: each case must get
    exactly the report it gets when checked alone, a tampered one included, and a history
    that cannot be rebuilt its error, in its place, without stopping the others."""
    cases = [committed(name) for name in PATHS] + [load_export(*continue_as_new_files())[0]]
    for case in cases:
        project(read_model, case)
    edit(read_model, CaseEventRecord, (cases[0].case_id, 8), actor="someone-else")
    edit(read_model, CaseRecord, cases[2].case_id, status="open")
    broken = CaseHistory("broken", "whistle-case-broken", cases[1].runs[:0])  # no run at all
    together = check_cases(read_model, [cases[0], broken, *cases[1:]])
    assert isinstance(together[1], IndexError)
    assert [r.model_dump() for r in together[:1] + together[2:]] == [
        audit(read_model, c).model_dump() for c in cases]
    assert [len(r.findings) for r in together[:1] + together[2:]] == [1, 0, 1, 0, 0, 0, 0]
