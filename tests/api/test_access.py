"""Authorisation by area, department and take-over; sign-in, tokens, and the record of
refusals — through the API on the real dev server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from tests.api.test_cases_api import INTAKE, step
from tests.helpers import TestUsers
from whistle import identity
from whistle.models import ApiToken

SIGN_OFF = {"opinion": "同意", "actions_taken": "现场核查"}


def as_(users: TestUsers, username: str, role: str, node: str = "",
        department: str | None = None) -> dict[str, str]:
    return users.headers(username, role, node, department)


def coordinator_with_password(users: TestUsers, username: str,
                              password: str = "correct horse battery") -> None:
    """A Xiaojinkou coordinator who signs in with a password."""
    with Session(users.engine) as session:
        identity.create_user(session, username=username, display_name=username,
                             role="coordinator", jurisdiction="xiaojinkou", password=password)
        session.commit()


async def open_at_jiulong(api, **extra) -> str:
    r = await api.post("/api/v1/cases", json={**INTAKE, **extra})
    assert r.status_code == 201, r.text
    return r.json()["case_id"]


async def test_a_department_cannot_act_for_another_and_the_attempt_is_on_record(api, users):
    cid = await open_at_jiulong(api)
    police = as_(users, "officer.police", "department", department="xjk-police")
    land = as_(users, "officer.land", "department", department="xjk-land-office")

    r = await step(api, cid, "summonses/xjk-land-office/report-in", {}, headers=police)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert "xjk-police, not xjk-land-office" in r.json()["message"]
    r = await api.get(f"/api/v1/cases/{cid}", headers=police)  # police was not summoned
    assert r.status_code == 403 and "not summoned" in r.json()["message"]

    r = await step(api, cid, "summonses/xjk-land-office/report-in", {}, headers=land)
    assert r.status_code == 200, r.text
    r = await step(api, cid, "summonses/xjk-land-office/sign-off", SIGN_OFF, headers=land)
    assert r.status_code == 200, r.text

    denials = (await api.get("/api/v1/audit/denials", params={"case_id": cid})).json()
    assert denials["total"] == 2
    newest, first = denials["items"]
    assert first["username"] == "officer.police" and first["role"] == "department"
    assert first["permission"] == "summons.act"
    assert first["path"] == f"/api/v1/cases/{cid}/summonses/xjk-land-office/report-in"
    assert newest["permission"] == "case.read"

    # the signer's identity is in the read model and in the workflow history
    detail = (await api.get(f"/api/v1/cases/{cid}")).json()
    signed = [e for e in detail["timeline"] if e["kind"] == "signed_off"]
    assert [(e["department"], e["actor"]) for e in signed] == [("xjk-land-office",
                                                               "officer.land")]
    timeline = (await api.get(f"/api/v1/audit/cases/{cid}/timeline")).json()["timeline"]
    from_history = [(e["step"], e["actor"]) for e in timeline if e["step"] == "sign_off"]
    assert from_history == [("sign_off", "officer.land")]


async def test_coordinators_see_and_act_within_their_area_only(api, users):
    cid = await open_at_jiulong(api)
    xjk = as_(users, "coord.xjk", "coordinator", "xiaojinkou")
    longmen = as_(users, "coord.longmen", "coordinator", "longmen")

    assert (await api.get(f"/api/v1/cases/{cid}", headers=xjk)).status_code == 200
    r = await api.get(f"/api/v1/cases/{cid}", headers=longmen)
    assert r.status_code == 403 and "outside longmen" in r.json()["message"]
    listed = (await api.get("/api/v1/cases", headers=longmen)).json()
    assert cid not in [c["case_id"] for c in listed["items"]]
    assert cid in [c["case_id"] for c in (await api.get("/api/v1/cases", headers=xjk)).json()
                   ["items"]]
    r = await step(api, cid, "close", {"reason": "x"}, headers=longmen)
    assert r.status_code == 403

    # opening a case elsewhere, or owned above one's own centre, is refused and not started
    r = await api.post("/api/v1/cases", headers=longmen, json=INTAKE)
    assert r.status_code == 403 and "outside longmen" in r.json()["message"]
    r = await api.post("/api/v1/cases", headers=xjk, json={**INTAKE, "level": "county"})
    assert r.status_code == 403 and "owned by the centre of huicheng" in r.json()["message"]


async def test_a_supervisor_takes_over_a_raised_case_and_the_village_centre_steps_back(
        api, users):
    cid = await open_at_jiulong(api, level="village", departments=["xjk-police"])
    for path, body in (("report-in", {}), ("sign-off", SIGN_OFF)):
        assert (await step(api, cid, f"summonses/xjk-police/{path}", body)).status_code == 200
    village = as_(users, "coord.jiulong", "coordinator", "jiulong")
    town_super = as_(users, "super.xjk", "supervisor", "xiaojinkou")

    r = await api.get(f"/api/v1/cases/{cid}", headers=town_super)
    assert r.status_code == 403 and "below town" in r.json()["message"]
    r = await step(api, cid, "outcome", {"kind": "unresolved", "summary": "村级调解未果"},
                   headers=village)
    assert r.status_code == 200 and r.json()["level"] == "town"  # 提级

    r = await step(api, cid, "summonses", {"departments": ["xjk-justice"]}, headers=village)
    assert r.status_code == 403 and "owned by the town centre xiaojinkou" in r.json()["message"]
    r = await step(api, cid, "summonses", {"departments": ["xjk-justice"]}, headers=town_super)
    assert r.status_code == 403 and "take the case over" in r.json()["message"]
    r = await step(api, cid, "take-over", {"reason": "街道接管"}, headers=town_super)
    assert r.status_code == 200, r.text
    r = await step(api, cid, "summonses", {"departments": ["xjk-justice"]}, headers=town_super)
    assert r.status_code == 200, r.text
    r = await step(api, cid, "take-over", {"reason": "again"}, headers=town_super)
    assert r.status_code == 409 and r.json()["code"] == "already_taken_over"

    detail = (await api.get(f"/api/v1/cases/{cid}", headers=town_super)).json()
    assert detail["taken_over_by"] == "super.xjk"
    taken = [e for e in detail["timeline"] if e["kind"] == "taken_over"]
    assert taken[0]["actor"] == "super.xjk" and taken[0]["data"]["level"] == "town"


async def test_grid_workers_open_cases_and_add_facts_in_their_grid(api, users):
    grid = as_(users, "grid.jl", "grid_worker", "jiulong-grid-1")
    r = await api.post("/api/v1/cases", headers=grid,
                       json={**INTAKE, "location": "jiulong-grid-1"})
    assert r.status_code == 201, r.text
    cid = r.json()["case_id"]
    assert r.json()["opened_by"] == "grid.jl"
    r = await step(api, cid, "facts", {"text": "现场核实：地界桩已移位"}, headers=grid)
    assert r.status_code == 200, r.text
    r = await api.post("/api/v1/cases", headers=grid, json={**INTAKE, "location": "daliang"})
    assert r.status_code == 403
    r = await step(api, cid, "outcome", {"kind": "withdrawn", "summary": "x"}, headers=grid)
    assert r.status_code == 403
    fact = (await api.get(f"/api/v1/cases/{cid}", headers=grid)).json()["timeline"][-1]
    assert (fact["kind"], fact["actor"], fact["data"]["text"]) == (
        "fact_added", "grid.jl", "现场核实：地界桩已移位")


async def test_department_staff_list_only_cases_they_were_summoned_to(api, users):
    summoned = await open_at_jiulong(api, departments=["xjk-police"])
    other = await open_at_jiulong(api, departments=["xjk-justice"])
    police = as_(users, "officer.p", "department", department="xjk-police")
    ids = [c["case_id"] for c in (await api.get("/api/v1/cases", headers=police)).json()
           ["items"]]
    assert summoned in ids and other not in ids
    r = await api.get("/api/v1/departments/xjk-justice/summonses", headers=police)
    assert r.status_code == 403
    r = await api.get("/api/v1/departments/xjk-police/summonses", headers=police)
    assert [i["case_id"] for i in r.json()["items"]] == [summoned]


async def test_auditors_read_and_change_nothing_admins_never_see_cases(api, users):
    cid = await open_at_jiulong(api)
    auditor = as_(users, "aud", "auditor", "huizhou")
    admin = as_(users, "adm", "admin", "huizhou")
    assert (await api.get(f"/api/v1/cases/{cid}", headers=auditor)).status_code == 200
    r = await step(api, cid, "close", {"reason": "x"}, headers=auditor)
    assert r.status_code == 403
    assert (await api.get(f"/api/v1/cases/{cid}", headers=admin)).status_code == 403
    assert (await api.get("/api/v1/cases", headers=admin)).status_code == 403


async def test_sign_in_with_a_password_and_sign_out(api, users, settings):
    coordinator_with_password(users, "li.wei")
    anon = {"x-test-anonymous": "1"}
    r = await api.post("/api/v1/auth/token", headers=anon,
                       json={"username": "li.wei", "password": "wrong password!"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    r = await api.post("/api/v1/auth/token", headers=anon,
                       json={"username": "nobody", "password": "correct horse battery"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    r = await api.post("/api/v1/auth/token", headers=anon,
                       json={"username": "li.wei", "password": "correct horse battery"})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert r.json()["user"]["role"] == "coordinator" and r.json()["user"]["level"] == "town"
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await api.get("/api/v1/auth/me", headers=bearer)).json()["username"] == "li.wei"
    with Session(users.engine) as session:  # only a keyed hash of the token is stored
        row = session.get(ApiToken, token.split("_")[1])
        assert row is not None and token not in row.secret_hash and row.kind == "session"
        assert "correct horse" not in (session.get(identity.AppUser, "li.wei")
                                       .password_hash or "")
    assert (await api.post("/api/v1/auth/logout", headers=bearer)).status_code == 204
    r = await api.get("/api/v1/auth/me", headers=bearer)
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"


async def test_expired_revoked_and_deactivated_tokens_get_401(api, users):
    headers = as_(users, "temp.user", "coordinator", "xiaojinkou")
    token_id = headers["Authorization"].split("_")[1]
    assert (await api.get("/api/v1/auth/me", headers=headers)).status_code == 200

    with Session(users.engine) as session:
        row = session.get(ApiToken, token_id)
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
        session.commit()
    r = await api.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "token_expired"

    fresh = as_(users, "temp.user2", "coordinator", "xiaojinkou")
    r = await api.patch("/api/v1/users/temp.user2", json={"active": False})  # as the admin
    assert r.status_code == 200 and r.json()["active"] is False
    r = await api.get("/api/v1/auth/me", headers=fresh)
    assert r.status_code == 401 and r.json()["code"] == "user_inactive"


async def test_admins_manage_users_and_issue_tokens_shown_once(api):
    r = await api.post("/api/v1/users", json={
        "username": "zhang.san", "display_name": "张三", "role": "department",
        "department": "xjk-police"})
    assert r.status_code == 201, r.text
    assert r.json()["jurisdiction"] == "xiaojinkou"  # the department's node
    r = await api.post("/api/v1/users", json={
        "username": "zhang.san", "display_name": "张三", "role": "auditor",
        "jurisdiction": "huizhou"})
    assert r.status_code == 409 and r.json()["code"] == "user_exists"
    r = await api.post("/api/v1/users", json={
        "username": "x.y", "display_name": "x", "role": "coordinator",
        "jurisdiction": "huizhou", "department": "xjk-police"})
    assert r.status_code == 422 and r.json()["field"] == "department"
    r = await api.post("/api/v1/users", json={
        "username": "x.y", "display_name": "x", "role": "coordinator", "jurisdiction": "mars"})
    assert r.status_code == 422 and r.json()["field"] == "jurisdiction"

    r = await api.post("/api/v1/users/zhang.san/tokens", json={"name": "集成脚本",
                                                               "expires_in_days": 30})
    assert r.status_code == 201
    issued = r.json()
    me = await api.get("/api/v1/auth/me",
                       headers={"Authorization": f"Bearer {issued['token']}"})
    assert me.json()["department"] == "xjk-police"
    listed = (await api.get("/api/v1/users/zhang.san/tokens")).json()
    assert [t["id"] for t in listed] == [issued["id"]] and "token" not in listed[0]
    r = await api.delete(f"/api/v1/users/zhang.san/tokens/{issued['id']}")
    assert r.status_code == 204
    me = await api.get("/api/v1/auth/me",
                       headers={"Authorization": f"Bearer {issued['token']}"})
    assert me.status_code == 401


async def test_five_wrong_passwords_lock_the_account_until_an_admin_resets_it(api, users):
    coordinator_with_password(users, "wu.qi")
    anon = {"x-test-anonymous": "1"}

    async def sign_in(password: str):
        return await api.post("/api/v1/auth/token", headers=anon,
                              json={"username": "wu.qi", "password": password})

    for _ in range(identity.LOCK_AFTER):
        assert (await sign_in("guess guess guess")).json()["code"] == "invalid_credentials"
    r = await sign_in("correct horse battery")  # the right one, too late
    assert r.status_code == 401 and r.json()["code"] == "account_locked"
    assert "try again after" in r.json()["message"]
    r = await api.patch("/api/v1/users/wu.qi", json={"password": "a brand new password"})
    assert r.status_code == 200
    assert (await sign_in("a brand new password")).status_code == 200
