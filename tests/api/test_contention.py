"""Many people pressing the same button at once: exactly one wins, the rest hear why."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from tests.api.test_cases_api import INTAKE, step

SIGN_OFF = {"opinion": "同意", "actions_taken": "现场核查"}


async def test_fifty_concurrent_sign_offs_on_one_summons_accept_exactly_one(api):
    r = await api.post("/api/v1/cases", json={**INTAKE, "departments": ["xjk-police"]})
    cid = r.json()["case_id"]
    assert (await step(api, cid, "summonses/xjk-police/report-in", {})).status_code == 200

    answers = await asyncio.gather(*(step(api, cid, "summonses/xjk-police/sign-off", SIGN_OFF)
                                     for _ in range(50)))
    codes = Counter(r.status_code for r in answers)
    print(f"\n50 concurrent sign-offs: {dict(codes)}")
    assert codes == {200: 1, 409: 49}
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {
        "wrong_summons_status"}
    detail = (await api.get(f"/api/v1/cases/{cid}")).json()
    assert [e["kind"] for e in detail["timeline"]].count("signed_off") == 1


async def test_twenty_concurrent_openings_with_one_external_ref_make_one_case(api):
    ref = f"CONCURRENT-{uuid.uuid4().hex[:8]}"
    answers = await asyncio.gather(*(api.post("/api/v1/cases",
                                              json={**INTAKE, "external_ref": ref})
                                     for _ in range(20)))
    codes = Counter(r.status_code for r in answers)
    print(f"\n20 concurrent openings, one external_ref: {dict(codes)}")
    assert codes[201] == 1 and codes[200] == 19
    assert len({r.json()["case_id"] for r in answers}) == 1
    listed = (await api.get("/api/v1/cases", params={"limit": 200})).json()["items"]
    assert [c["external_ref"] for c in listed].count(ref) == 1
