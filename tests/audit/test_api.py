"""The audit routes on the real dev server: export, replay verdict, timeline and the
cross-check of a case opened and closed through the API."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from tests.api.test_cases_api import WORKED_EXAMPLE_DEPARTMENTS, open_case, step
from whistle.models import CaseEventRecord, CaseRecord

pytestmark = pytest.mark.devserver


async def worked_example(api) -> str:
    """The README's worked example through the API; returns the case id."""
    cid = (await open_case(api))["case_id"]
    for d in WORKED_EXAMPLE_DEPARTMENTS:
        assert (await step(api, cid, f"summonses/{d}/report-in", {})).is_success
    for d in WORKED_EXAMPLE_DEPARTMENTS:
        r = await step(api, cid, f"summonses/{d}/sign-off",
                       {"opinion": "同意联合调解", "actions_taken": "现场核查"})
        assert r.is_success
    r = await step(api, cid, "outcome", {"kind": "mediated_agreement", "summary": "双方和解",
                                         "agreement_text": "和解协议"})
    assert r.is_success
    r = await step(api, cid, "feedback", {"satisfaction": "satisfied"})
    assert r.json()["status"] == "closed"
    return cid


async def test_a_case_is_exported_replayed_rebuilt_and_checked_by_api(audit_api):
    api, engine = audit_api
    cid = await worked_example(api)
    base = f"/api/v1/audit/cases/{cid}"

    history = (await api.get(f"{base}/history")).json()
    assert list(history) == ["events"]
    assert history["events"][0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"

    verdict = (await api.get(f"{base}/replay")).json()
    assert verdict["deterministic"] is True and len(verdict["runs"]) == 1

    doc = (await api.get(f"{base}/timeline")).json()
    assert doc["complete"] is True and doc["runs"] == 1
    timeline = doc["timeline"]
    signers = {e["department"]: e["actor"] for e in timeline if e["kind"] == "signed_off"}
    assert signers == {d: f"staff-{d}" for d in WORKED_EXAMPLE_DEPARTMENTS}
    assert timeline[0]["actor"] == "coordinator-city" and timeline[0]["step"] == "intake"

    report = (await api.get(f"{base}/check")).json()
    assert report["ok"] is True and report["events"] == 13 and report["findings"] == []

    with Session(engine) as session:  # an auditor's hand edits two rows
        session.get(CaseEventRecord, (cid, 8)).actor = "staff-xjk-police"
        session.get(CaseRecord, cid).status = "open"
        session.commit()
    report = (await api.get(f"{base}/check")).json()
    assert report["ok"] is False
    named = {(f["table"], f["key"], f["field"]) for f in report["findings"]}
    assert named == {("case_event", "seq 8", "actor"), ("case_record", cid, "status")}


async def test_an_unknown_case_is_404_and_a_malformed_id_422(audit_api):
    api, _ = audit_api
    for what in ("history", "replay", "timeline", "check"):
        r = await api.get(f"/api/v1/audit/cases/0123456789abcdef/{what}")
        assert r.status_code == 404 and r.json()["code"] == "case_not_found", r.text
    r = await api.get("/api/v1/audit/cases/not-a-case/check")
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"


async def test_the_audit_routes_only_read(audit_api):
    api, _ = audit_api
    r = await api.post("/api/v1/audit/cases/0123456789abcdef/check")
    assert r.status_code == 405
