"""The closed loop through the pages, on the dev Temporal server: a coordinator opens a
case with the form, departments report in and sign off with theirs, refusals show on the
page in the user's language and keep what was typed."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from tests.helpers import POLICY
from tests.web.conftest import Site, csrf_of, running_site
from whistle.models import AccessDenial, CaseRecord, SummonsRecord
from whistle.settings import Settings

pytestmark = pytest.mark.devserver

INTAKE = {"category": "land", "location": "jiulong", "level": "town",
          "title": "九龙村土地使用权转让纠纷", "description": "多年前的土地使用权转让纠纷",
          "source_channel": "walk_in", "party_name_0": "张某", "party_role_0": "applicant",
          "party_name_1": "李某", "party_role_1": "respondent"}
ROUTED = ["xjk-petition", "xjk-land-office", "xjk-law-enforcement"]


async def open_case(site: Site, coord: httpx.AsyncClient) -> str:
    """Preview the routing, then open with what the policy proposes; the new case id."""
    r = await site.post_form(coord, "/cases/new", "/cases/new",
                             {**INTAKE, "action": "preview"})
    assert r.status_code == 200, r.text
    for code in ROUTED:
        assert f'name="departments" value="{code}" checked' in r.text
    ticked = re.findall(r'name="departments" value="([a-z0-9-]+)" checked', r.text)
    r = await coord.post("/cases/new", data={
        **INTAKE, "action": "open", "proposal_shown": "1", "departments": ticked,
        "csrf_token": csrf_of(r.text)})
    assert r.status_code == 303, r.text
    m = re.fullmatch(r"/cases/([0-9a-f]{16})\?done=opened", r.headers["location"])
    assert m, r.headers["location"]
    return m.group(1)


async def step(site: Site, client: httpx.AsyncClient, case_id: str, action: str,
               data: dict[str, str]) -> httpx.Response:
    return await site.post_form(client, f"/cases/{case_id}", action, data)


async def test_coordinator_opens_a_case_and_departments_report_in_and_sign_off(
        web: Site) -> None:
    coord = web.signed_in("coord", "coordinator", "xiaojinkou")
    case_id = await open_case(web, coord)
    r = await coord.get(f"/cases/{case_id}?done=opened")
    assert r.status_code == 200
    assert "案件已受理" in r.text and "吹哨报到看板" in r.text
    assert "小金口街道信访办" in r.text or "xjk-petition" in r.text
    assert f"/namespaces/default/workflows/whistle-case-{case_id}" in r.text
    with Session(web.engine) as session:
        row = session.get(CaseRecord, case_id)
        assert row is not None and set(row.departments) == set(ROUTED)
        lead = session.exec(select(SummonsRecord).where(
            SummonsRecord.case_id == case_id, SummonsRecord.lead)).one()
        assert lead.department == "xjk-petition"  # not adjusted: the policy's lead stands

    staff = web.signed_in("staff", "department", department="xjk-land-office", lang="en")
    inbox = await staff.get("/inbox")
    assert inbox.status_code == 200 and case_id in inbox.text and "left" in inbox.text
    base = f"/cases/{case_id}/summonses/xjk-land-office"
    assert f'action="{base}/report-in"' in inbox.text  # report in straight from the inbox
    r = await web.post_form(staff, "/inbox", f"{base}/report-in", {})
    assert r.status_code == 303 and r.headers["location"].startswith(f"/cases/{case_id}?done=")
    r = await staff.get(r.headers["location"])
    assert "Done: the step is on the case" in r.text and "Sign off" in r.text
    r = await step(web, staff, case_id, f"{base}/sign-off",
                   {"opinion": "同意联合调解", "actions_taken": "实地核查"})
    assert r.status_code == 303
    with Session(web.engine) as session:
        s = session.exec(select(SummonsRecord).where(
            SummonsRecord.case_id == case_id,
            SummonsRecord.department == "xjk-land-office")).one()
        assert s.status == "signed_off" and s.opinion == "同意联合调解"
    r = await coord.get(f"/cases/{case_id}")
    assert "同意联合调解" in r.text and "已办结" in r.text


async def test_a_step_the_workflow_refuses_shows_its_reason_and_keeps_the_input(
        web: Site) -> None:
    coord = web.signed_in("coord", "coordinator", "xiaojinkou")
    case_id = await open_case(web, coord)
    staff = web.signed_in("staff", "department", department="xjk-petition")
    # signing off before reporting in: the workflow's validator refuses (409)
    r = await step(web, staff, case_id, f"/cases/{case_id}/summonses/xjk-petition/sign-off",
                   {"opinion": "我的意见", "actions_taken": "我做了什么"})
    assert r.status_code == 409
    assert "案件引擎拒绝了此操作" in r.text and "该事项当前状态不允许此操作" in r.text
    # the coordinator's outcome while summonses are open, in English
    en = web.signed_in("coord-en", "coordinator", "xiaojinkou", lang="en")
    r = await step(web, en, case_id, f"/cases/{case_id}/outcome",
                   {"kind": "mediated_agreement", "summary": "双方和解"})
    assert r.status_code == 409, r.text
    assert "The case engine refused this step" in r.text and "双方和解" in r.text


async def test_a_validation_error_rerenders_the_form_with_what_was_typed(web: Site) -> None:
    coord = web.signed_in("coord", "coordinator", "xiaojinkou")
    r = await web.post_form(coord, "/cases/new", "/cases/new",
                            {**INTAKE, "title": "", "action": "open"})
    assert r.status_code == 422
    assert 'id="title-error"' in r.text and "此项必填" in r.text
    assert "多年前的土地使用权转让纠纷" in r.text and 'value="张某"' in r.text
    case_id = await open_case(web, coord)
    staff = web.signed_in("staff", "department", department="xjk-petition")
    base = f"/cases/{case_id}/summonses/xjk-petition"
    assert (await step(web, staff, case_id, f"{base}/report-in", {})).status_code == 303
    r = await step(web, staff, case_id, f"{base}/sign-off",
                   {"opinion": "   ", "actions_taken": "已实地核查"})
    assert r.status_code == 422
    assert 'id="sign-off-xjk-petition-opinion-error"' in r.text and "已实地核查" in r.text
    r = await step(web, staff, case_id, f"{base}/extension",
                   {"new_deadline": "not a date", "reason": "需要更多时间"})
    assert r.status_code == 422 and 'id="extension-xjk-petition-new_deadline-error"' in r.text
    assert "需要更多时间" in r.text


async def test_staff_of_another_department_cannot_act_and_the_refusal_is_recorded(
        web: Site) -> None:
    coord = web.signed_in("coord", "coordinator", "xiaojinkou")
    case_id = await open_case(web, coord)
    land = web.signed_in("land", "department", department="xjk-land-office")
    r = await step(web, land, case_id, f"/cases/{case_id}/summonses/xjk-petition/report-in",
                   {})
    assert r.status_code == 403 and "您无权执行此操作" in r.text
    r = await step(web, land, case_id, f"/cases/{case_id}/outcome",
                   {"kind": "withdrawn", "summary": "x"})
    assert r.status_code == 403
    outsider = web.signed_in("police", "department", department="xjk-police")
    r = await outsider.get(f"/cases/{case_id}")
    assert r.status_code == 403
    with Session(web.engine) as session:
        denials = session.exec(select(AccessDenial).where(
            AccessDenial.case_id == case_id)).all()
        assert {d.username for d in denials} == {"land", "police"}
        assert {d.permission for d in denials} == {"summons.act", "case.coordinate",
                                                   "case.read"}


async def test_outcome_feedback_and_the_auditors_replay_verdict(web: Site) -> None:
    coord = web.signed_in("coord", "coordinator", "xiaojinkou")
    case_id = await open_case(web, coord)
    for code in ROUTED:
        staff = web.signed_in(f"s-{code}", "department", department=code)
        base = f"/cases/{case_id}/summonses/{code}"
        assert (await step(web, staff, case_id, f"{base}/report-in", {})).status_code == 303
        assert (await step(web, staff, case_id, f"{base}/sign-off",
                           {"opinion": "同意", "actions_taken": "调解"})).status_code == 303
    r = await step(web, coord, case_id, f"/cases/{case_id}/outcome",
                   {"kind": "mediated_agreement", "summary": "双方自愿达成和解"})
    assert r.status_code == 409 and "调解协议须填写协议文本" in r.text
    r = await step(web, coord, case_id, f"/cases/{case_id}/outcome",
                   {"kind": "mediated_agreement", "summary": "双方自愿达成和解",
                    "agreement_text": "和解协议：……"})
    assert r.status_code == 303
    r = await step(web, coord, case_id, f"/cases/{case_id}/feedback",
                   {"satisfaction": "satisfied"})
    assert r.status_code == 303
    r = await coord.get(f"/cases/{case_id}")
    assert "反馈后办结" in r.text and "和解协议：……" in r.text
    auditor = web.signed_in("auditor", "auditor", "huizhou")
    r = await auditor.get(f"/cases/{case_id}/audit")
    assert r.status_code == 200, r.text
    assert "确定性通过" in r.text and "读模型与历史记录一致" in r.text
    assert (await coord.get(f"/cases/{case_id}/audit")).status_code == 403


async def test_supervisor_sees_cases_at_their_level_and_takes_one_over(web: Site) -> None:
    coord = web.signed_in("coord", "coordinator", "xiaojinkou")
    case_id = await open_case(web, coord)
    sup = web.signed_in("sup", "supervisor", "xiaojinkou")
    r = await sup.get("/escalated")
    assert r.status_code == 200 and case_id in r.text
    r = await step(web, sup, case_id, f"/cases/{case_id}/take-over", {"reason": "督办"})
    assert r.status_code == 303
    r = await sup.get(f"/cases/{case_id}")
    assert "已由 sup 接管" in r.text and 'action="/cases/' + case_id + '/outcome"' in r.text


async def test_extension_request_and_decision_return_and_redispatch_summon_more(
        web: Site) -> None:
    coord = web.signed_in("coord", "coordinator", "xiaojinkou")
    case_id = await open_case(web, coord)
    petition = web.signed_in("petition", "department", department="xjk-petition")
    base = f"/cases/{case_id}/summonses/xjk-petition"
    assert (await step(web, petition, case_id, f"{base}/report-in", {})).status_code == 303
    later = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M")
    r = await step(web, petition, case_id, f"{base}/extension",
                   {"new_deadline": later, "reason": "需要补充材料"})
    assert r.status_code == 303, r.text
    page = await coord.get(f"/cases/{case_id}")
    assert f'action="{base}/extension/decision"' in page.text and "延期待审批" in page.text
    r = await step(web, coord, case_id, f"{base}/extension/decision", {"comment": "x"})
    assert r.status_code == 422  # approve or refuse: no choice made
    assert 'id="extension-decision-xjk-petition-approve-error"' in r.text
    r = await step(web, coord, case_id, f"{base}/extension/decision", {"approve": "yes"})
    assert r.status_code == 303
    assert "延期已同意" in (await coord.get(f"/cases/{case_id}")).text

    land = web.signed_in("land", "department", department="xjk-land-office")
    r = await step(web, land, case_id, f"/cases/{case_id}/summonses/xjk-land-office/return",
                   {"reason": "不属于本部门职责"})
    assert r.status_code == 303
    redispatch = f"/cases/{case_id}/summonses/xjk-land-office/redispatch"
    assert f'action="{redispatch}"' in (await coord.get(f"/cases/{case_id}")).text
    r = await step(web, coord, case_id, redispatch, {"to": "no-such-dept", "reason": "改派"})
    assert r.status_code == 422 and "改派" in r.text
    assert 'id="redispatch-xjk-land-office-to-error"' in r.text
    r = await step(web, coord, case_id, redispatch, {"to": "xjk-police"})
    assert r.status_code == 303
    r = await step(web, coord, case_id, f"/cases/{case_id}/summonses", {"reason": "增派"})
    assert r.status_code == 422 and 'id="summonses-departments-error"' in r.text
    r = await step(web, coord, case_id, f"/cases/{case_id}/summonses",
                   {"departments": "xjk-justice", "reason": "增派司法所"})
    assert r.status_code == 303, r.text
    with Session(web.engine) as session:
        row = session.get(CaseRecord, case_id)
        assert row is not None and {"xjk-police", "xjk-justice"} <= set(row.departments)


NASTY = ["", " ", "x" * 20_000, "<script>alert(1)</script>", "'; DROP TABLE case_record; --",
         "\u202e\ufeff", "9999-12-31T23:59", "0", "-1", "true", "../../etc/passwd", "张" * 300]


async def test_no_form_input_produces_a_500(web: Site) -> None:
    coord = web.signed_in("coord", "coordinator", "xiaojinkou")
    case_id = await open_case(web, coord)
    staff = web.signed_in("staff", "department", department="xjk-petition")
    sup = web.signed_in("sup", "supervisor", "xiaojinkou")
    fields = ["category", "location", "level", "title", "description", "source_channel",
              "party_name_0", "party_role_0", "departments", "action", "note", "opinion",
              "actions_taken", "reason", "new_deadline", "approve", "comment", "to", "kind",
              "summary", "agreement_text", "satisfaction", "text", "proposal_shown"]
    posts = [(coord, "/cases/new"), (coord, f"/cases/{case_id}/summonses"),
             (coord, f"/cases/{case_id}/outcome"), (coord, f"/cases/{case_id}/feedback"),
             (coord, f"/cases/{case_id}/close"), (coord, f"/cases/{case_id}/facts"),
             (coord, f"/cases/{case_id}/summonses/xjk-petition/extension/decision"),
             (coord, f"/cases/{case_id}/deadlines/recompute"),
             (coord, f"/cases/{case_id}/planning/retry"),
             (coord, f"/cases/{case_id}/summonses/xjk-petition/redispatch"),
             (coord, f"/cases/{case_id}/summonses/NOT_A_CODE/redispatch"),
             (sup, f"/cases/{case_id}/take-over"),
             (staff, f"/cases/{case_id}/summonses/xjk-petition/report-in"),
             (staff, f"/cases/{case_id}/summonses/xjk-petition/sign-off"),
             (staff, f"/cases/{case_id}/summonses/xjk-petition/extension"),
             (staff, f"/cases/{case_id}/summonses/xjk-petition/return")]
    for i, value in enumerate(NASTY):
        for client, path in posts:
            page = await client.get("/cases/new" if client is coord else f"/cases/{case_id}")
            data = {name: value for name in fields}
            data["action"] = "open" if i % 2 else "preview"
            r = await client.post(path, data={**data, "csrf_token": csrf_of(page.text)})
            assert r.status_code < 500, (path, value[:20], r.status_code)
    for query in ({"page": "99999999999"}, {"status": "\ufeff"}, {"next": "x" * 5000}):
        assert (await coord.get("/cases", params=query)).status_code < 500


async def test_a_missed_clock_is_marked_overdue_on_the_list_board_and_inbox(
        dev_env: WorkflowEnvironment, settings: Settings, tmp_path: Path) -> None:
    """Land cases get a report-in clock of under two seconds: the missed clock and its
    first ladder step (催办) show on the pages."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.read_text(encoding="utf-8").replace(
        "    sign_off_hours: 240\n", "    sign_off_hours: 240\n    report_in_hours: 0.0005\n"),
        encoding="utf-8")
    async with running_site(dev_env, settings.model_copy(update={"policy_file": policy})
                            ) as site:
        coord = site.signed_in("coord", "coordinator", "xiaojinkou")
        case_id = await open_case(site, coord)
        for _ in range(100):
            with Session(site.engine) as session:
                row = session.get(CaseRecord, case_id)
                if row is not None and row.overdue:
                    break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the missed report-in clock never marked the case overdue")
        listing = await coord.get("/cases?overdue=true")
        assert '<tr class="overdue">' in listing.text and case_id in listing.text
        page = await coord.get(f"/cases/{case_id}")
        assert 'class="overdue"' in page.text and "已超时" in page.text
        assert '<td>催办 <span class="badge overdue">已超时</span></td>' in page.text  # board
        assert '<li class="taken">催办' in page.text  # the ladder step taken
        staff = site.signed_in("staff", "department", department="xjk-petition")
        inbox = await staff.get("/inbox")
        assert '<tr class="overdue">' in inbox.text


async def test_applying_the_policy_in_force_from_the_page_says_it_has_not_changed(
        web: Site) -> None:
    coord = web.signed_in("coord", "coordinator", "xiaojinkou")
    case_id = await open_case(web, coord)
    page = await coord.get(f"/cases/{case_id}")
    assert f'action="/cases/{case_id}/policy"' in page.text and "适用新版政策" in page.text
    r = await step(web, coord, case_id, f"/cases/{case_id}/policy", {})
    assert r.status_code == 422 and 'id="policy-reason-error"' in r.text
    r = await step(web, coord, case_id, f"/cases/{case_id}/policy", {"reason": "新版派单目录"})
    assert r.status_code == 409 and "政策未变化" in r.text
