"""The closed loop through the JSON API, on the real dev server with the worker."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

INTAKE: dict[str, Any] = {
    "category": "land",
    "title": "九龙村土地使用权转让纠纷",
    "description": "多年前的土地使用权转让纠纷，当事人向街道综治中心求助",
    "parties": [{"name": "张某", "role": "applicant"}, {"name": "李某", "role": "respondent"}],
    "location": "jiulong",
    "level": "town",
    "source_channel": "walk_in",
}
WORKED_EXAMPLE_DEPARTMENTS = ["xjk-petition", "xjk-land-office", "xjk-law-enforcement"]


async def open_case(api: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    r = await api.post("/api/v1/cases", json={**INTAKE, **overrides})
    assert r.status_code == 201, r.text
    return r.json()


async def step(api: httpx.AsyncClient, case_id: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    """POST a step; signed in as the user that fits the path unless `headers` say who."""
    return await api.post(f"/api/v1/cases/{case_id}/{path}", json=body, headers=headers)


async def test_worked_example_closes_the_loop_through_the_api(api):
    case = await open_case(api)
    cid = case["case_id"]
    assert case["status"] == "open" and case["level"] == "town" and case["owner"] == "xiaojinkou"
    assert sorted(case["departments"]) == sorted(WORKED_EXAMPLE_DEPARTMENTS)  # routed by policy
    assert case["policy_version"].startswith("2026.11-sample")

    for d in WORKED_EXAMPLE_DEPARTMENTS:
        r = await step(api, cid, f"summonses/{d}/report-in", {})
        assert r.status_code == 200, r.text
    for d in WORKED_EXAMPLE_DEPARTMENTS:
        r = await step(api, cid, f"summonses/{d}/sign-off",
                       {"opinion": "同意联合调解", "actions_taken": "现场核查"})
        assert r.status_code == 200, r.text
    r = await step(api, cid, "outcome", {"kind": "mediated_agreement", "summary": "双方和解",
                                         "agreement_text": "和解协议"})
    assert r.json()["status"] == "awaiting_feedback"
    r = await step(api, cid, "feedback", {"satisfaction": "satisfied"})
    assert r.json()["status"] == "closed"

    detail = (await api.get(f"/api/v1/cases/{cid}")).json()
    assert detail["status"] == "closed" and detail["close_reason"] == "feedback"
    assert detail["agreement_text"] == "和解协议"
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds == ["opened"] + ["summoned"] * 3 + ["reported_in"] * 3 + ["signed_off"] * 3 + [
        "outcome", "feedback", "closed"]
    assert [e["seq"] for e in detail["timeline"]] == list(range(1, 14))
    signers = {e["department"]: e["actor"] for e in detail["timeline"] if e["kind"] == "signed_off"}
    assert signers == {d: f"staff-{d}" for d in WORKED_EXAMPLE_DEPARTMENTS}
    assert all(s["status"] == "signed_off" for s in detail["summonses"])
    leads = [e["department"] for e in detail["timeline"] if e["data"].get("lead")]
    assert leads == ["xjk-petition"]  # the policy's lead (牵头) for land cases at town level
    assert [s["department"] for s in detail["summonses"] if s["lead"]] == ["xjk-petition"]
    assert detail["temporal_ui_url"].endswith(f"/workflows/whistle-case-{cid}")


def unique_ref(prefix: str) -> str:
    """External refs fix the case id, so each test needs its own (the server is shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_same_external_ref_returns_the_existing_case_with_200(api):
    ref = unique_ref("XJK-2026-0825")
    first = await open_case(api, external_ref=ref)
    again = await api.post("/api/v1/cases", json={**INTAKE, "external_ref": ref,
                                                  "title": "不同的标题"})
    assert again.status_code == 200
    assert again.json()["case_id"] == first["case_id"]
    assert again.json()["title"] == INTAKE["title"]
    listed = (await api.get("/api/v1/cases")).json()
    assert listed["total"] == 1


async def test_external_ref_of_a_closed_case_still_returns_it(api):
    ref = unique_ref("REF-CLOSED")
    case = await open_case(api, external_ref=ref, departments=[])
    cid = case["case_id"]
    r = await step(api, cid, "outcome", {"kind": "withdrawn", "summary": "当事人撤回"})
    assert r.json()["status"] == "closed"
    again = await api.post("/api/v1/cases", json={**INTAKE, "external_ref": ref})
    assert again.status_code == 200 and again.json()["case_id"] == cid


async def test_step_that_does_not_fit_is_409_with_its_reason(api):
    cid = (await open_case(api))["case_id"]
    r = await step(api, cid, "summonses/xjk-petition/sign-off",
                   {"opinion": "x", "actions_taken": "y"})
    assert r.status_code == 409
    assert r.json()["code"] == "wrong_summons_status"
    assert "not reported in" in r.json()["message"]
    r = await step(api, cid, "summonses/xjk-police/report-in", {})
    # a department not summoned has no business with the case: refused before the engine
    assert r.status_code == 403 and "xjk-police was not summoned" in r.json()["message"]
    detail = (await api.get(f"/api/v1/cases/{cid}")).json()
    assert len(detail["timeline"]) == 4  # opened + 3 summoned: the rejected steps left nothing


async def test_steps_on_a_closed_case_are_409_case_closed(api):
    cid = (await open_case(api, departments=[]))["case_id"]
    await step(api, cid, "outcome", {"kind": "withdrawn", "summary": "撤回"})
    r = await step(api, cid, "summonses", {"departments": ["xjk-police"]})
    assert r.status_code == 409 and r.json()["code"] == "case_closed"


async def test_unknown_case_is_404_and_malformed_id_is_422(api):
    r = await step(api, "0123456789abcdef", "summonses/xjk-police/report-in", {})
    assert r.status_code == 404 and r.json()["code"] == "case_not_found"
    r = await api.get("/api/v1/cases/0123456789abcdef")
    assert r.status_code == 404
    r = await api.get("/api/v1/cases/not-a-case")
    assert r.status_code == 422 and r.json()["field"] == "path.case_id"


async def test_bad_intake_names_the_field_and_writes_nothing(api):
    cases = [
        ({"category": "no_such"}, "category"),
        ({"location": "atlantis"}, "location"),
        ({"departments": ["xjk-police", "ghost-dept"]}, "departments"),
        ({"departments": ["xjk-police", "xjk-police"]}, "departments"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"level": "grid"}, "level"),
        ({"location": "jiulong", "level": "planet"}, "level"),
        ({"surprise": 1}, "surprise"),
    ]
    for override, field in cases:
        r = await api.post("/api/v1/cases", json={**INTAKE, **override})
        assert r.status_code == 422, (override, r.text)
        assert r.json()["code"] == "invalid_input"
        assert r.json()["field"] == field, (override, r.json())
    r = await api.post("/api/v1/cases", content=b"{not json", headers={
        "content-type": "application/json"})
    assert r.status_code == 422
    r = await api.post("/api/v1/cases", content=b"x" * 300_000, headers={
        "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    assert (await api.get("/api/v1/cases")).json()["total"] == 0


async def test_summon_more_return_and_redispatch(api):
    cid = (await open_case(api, departments=["xjk-police"]))["case_id"]
    r = await step(api, cid, "summonses", {"departments": ["xjk-justice"], "reason": "需调解"})
    assert r.status_code == 200, r.text
    r = await step(api, cid, "summonses", {"departments": ["nope"]})
    assert r.status_code == 422 and r.json()["field"] == "departments"
    r = await step(api, cid, "summonses/xjk-police/return", {"reason": "非本部门职责"})
    assert r.status_code == 200
    r = await step(api, cid, "summonses/xjk-police/redispatch", {"to": "xjk-land-office"})
    assert r.status_code == 200, r.text
    detail = (await api.get(f"/api/v1/cases/{cid}")).json()
    by_dept = {s["department"]: s for s in detail["summonses"]}
    assert by_dept["xjk-police"]["status"] == "returned"
    assert by_dept["xjk-police"]["redispatched_to"] == "xjk-land-office"
    assert by_dept["xjk-land-office"]["status"] == "summoned"
    inbox = (await api.get("/api/v1/departments/xjk-land-office/summonses")).json()
    assert [i["case_id"] for i in inbox["items"]] == [cid]
    assert (await api.get("/api/v1/departments/xjk-police/summonses")).json()["total"] == 0


async def test_extension_request_and_decision(api):
    cid = (await open_case(api, departments=["xjk-justice"]))["case_id"]
    await step(api, cid, "summonses/xjk-justice/report-in", {})
    detail = (await api.get(f"/api/v1/cases/{cid}")).json()
    due = detail["summonses"][0]["sign_off_due"]
    r = await step(api, cid, "summonses/xjk-justice/extension",
                   {"new_deadline": "2099-01-01T00:00:00+08:00", "reason": "需等待鉴定结果"})
    assert r.status_code == 200, r.text
    r = await step(api, cid, "summonses/xjk-justice/extension",
                   {"new_deadline": "2099-01-01T00:00:00", "reason": "no zone"})
    assert r.status_code == 422 and r.json()["field"] == "new_deadline"
    r = await step(api, cid, "summonses/xjk-justice/extension/decision", {"approve": True})
    assert r.status_code == 200
    s = (await api.get(f"/api/v1/cases/{cid}")).json()["summonses"][0]
    assert s["extension_status"] == "approved" and s["sign_off_due"] != due
    assert s["sign_off_due"] == "2099-01-01T00:00:00+08:00"  # shown in Shanghai time


async def test_list_filters_and_pagination(api):
    a = (await open_case(api, departments=["xjk-police"]))["case_id"]
    b = (await open_case(api, category="labour", location="daliang", level="town",
                         departments=None))["case_id"]
    by = lambda q: api.get(f"/api/v1/cases?{q}")  # noqa: E731
    assert {c["case_id"] for c in (await by("jurisdiction=huicheng")).json()["items"]} == {a, b}
    assert [c["case_id"] for c in (await by("jurisdiction=xiaojinkou")).json()["items"]] == [a]
    assert [c["case_id"] for c in (await by("category=labour")).json()["items"]] == [b]
    assert [c["case_id"] for c in (await by("department=xjk-police")).json()["items"]] == [a]
    assert (await by("overdue=true")).json()["total"] == 0
    page = (await by("limit=1&offset=1")).json()
    assert page["total"] == 2 and len(page["items"]) == 1
    assert (await by("limit=0")).status_code == 422
    assert (await by("status=bogus")).status_code == 422
    assert (await by("jurisdiction=atlantis")).status_code == 422
    routed = (await api.get(f"/api/v1/cases/{b}")).json()
    assert set(routed["departments"]) == {"rh-hrss", "rh-justice"}  # the town's, not county's


async def test_reference_routes(api):
    cats = (await api.get("/api/v1/reference/categories")).json()
    assert {"code": "land", "name_zh": "土地权属", "name_en": "Land & property"} in cats
    towns = (await api.get("/api/v1/reference/jurisdictions?level=town")).json()
    assert {t["code"] for t in towns} == {"xiaojinkou", "ruhu", "lantian"}
    police = (await api.get("/api/v1/reference/departments?kind=police&jurisdiction=xiaojinkou"
                            )).json()
    assert [p["supervisor"] for p in police] == ["hc-police"]
    assert (await api.get("/api/v1/departments/ghost/summonses")).status_code == 404


async def test_wrong_method_is_405_with_allow_header(api):
    r = await api.request("TRACE", "/api/v1/cases/0123456789abcdef/close")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"


async def test_unparseable_body_is_a_json_error_not_a_crash(api):
    r = await api.post("/api/v1/cases/0123456789abcdef/feedback", content=b"\xff\xfe",
                       headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and r.json()["code"] in ("invalid_body", "invalid_input")


async def test_routing_preview_skips_national_day_and_counts_the_swapped_workday(api):
    r = await api.get("/api/v1/routing", params={
        "category": "environment", "location": "jiulong", "level": "town",
        "start": "2026-09-30T15:00:00+08:00"})  # the last working day before National Day
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["owner"] == "xiaojinkou"
    assert [d["code"] for d in p["departments"]] == ["xjk-law-enforcement",
                                                     "xjk-market-supervision"]
    assert p["clocks"]["sign_off"] == {"hours": None, "working_days": 10}
    # 10 working days: Oct 8, 9, 10 (Saturday, swapped), 12–16, 19, 20 — 15:00 in Shanghai
    assert p["sign_off_due"] == "2026-10-20T15:00:00+08:00"
    assert p["report_in_due"] == "2026-10-01T15:00:00+08:00"  # 24 plain hours


async def test_routing_preview_refuses_what_it_cannot_answer(api):
    base = {"category": "environment", "location": "jiulong"}
    for extra, field in [({"start": "2026-09-30T15:00:00"}, "start"),
                         ({"start": "2101-03-02T09:00:00+08:00"}, "start"),  # no calendar
                         ({"location": "atlantis"}, "location"),
                         ({"category": "nope"}, "category")]:
        r = await api.get("/api/v1/routing", params={**base, **extra})
        assert r.status_code == 422 and r.json()["field"] == field, (extra, r.text)


async def test_applying_the_policy_in_force_is_refused_as_unchanged(api):
    cid = (await open_case(api, departments=[]))["case_id"]
    r = await step(api, cid, "policy", {"reason": "新派单目录"})
    assert r.status_code == 409 and r.json()["code"] == "policy_unchanged"


async def test_routing_follows_the_policy_of_the_owning_level(api):
    town = (await api.get("/api/v1/routing", params={
        "category": "land", "location": "jiulong", "level": "town"})).json()
    assert [(d["code"], d["lead"]) for d in town["departments"]] == [
        ("xjk-petition", True), ("xjk-land-office", False), ("xjk-law-enforcement", False)]
    county = (await api.get("/api/v1/routing", params={
        "category": "land", "location": "jiulong", "level": "county"})).json()
    assert county["owner"] == "huicheng"
    assert [(d["code"], d["lead"]) for d in county["departments"]] == [
        ("hc-land-office", True), ("hc-petition", False), ("hc-law-enforcement", False),
        ("hc-court", False)]


async def test_an_intake_at_the_same_place_or_with_the_same_party_links_earlier_cases(api):
    """重复纠纷: within the policy's window (90 days) and the intake's town, an earlier case
    at the same place or naming a party of the new one is linked; a name that only contains
    a party's name is not that party."""
    dept = {"departments": ["xjk-police"]}
    a = await open_case(api, **dept)  # jiulong; 张某, 李某
    other = await open_case(api, location="xiaojinkou", parties=[{"name": "李某某"}], **dept)
    assert other["repeat_of"] == []
    by_party = await open_case(api, location="jiulong-grid-1",
                               parties=[{"name": "李某"}], **dept)
    assert by_party["repeat_of"] == [a["case_id"]]
    by_place = await open_case(api, parties=[], **dept)
    assert by_place["repeat_of"] == [a["case_id"]]
    elsewhere = await open_case(api, location="daliang", **dept)  # another town, same parties
    assert elsewhere["repeat_of"] == []
    opened = next(e for e in by_party["timeline"] if e["kind"] == "opened")
    assert opened["data"]["repeat_of"] == [a["case_id"]]
    fetched = (await api.get(f"/api/v1/cases/{by_party['case_id']}")).json()
    assert fetched["repeat_of"] == [a["case_id"]]
