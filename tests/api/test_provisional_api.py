"""Provisional deadlines and cases needing attention through the JSON API, on the real dev
server with the worker: a case whose clock reaches a year without a published arrangement
is listed at once with a provisional due; an arrangement added to the policy (TEST DATA)
and a recompute move it, as a recorded step; an intake whose planning fails answers with the
case (201, needing attention), never a 202 that does not resolve, and a retry recovers it."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
import yaml

from tests.api.test_cases_api import INTAKE, open_case, step
from tests.helpers import POLICY
from whistle import workdays
from whistle.settings import Settings

LONG = 250  # working days: from any day, reaches a year with no published arrangement yet


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The sample policy with a sign-off clock for environment cases of LONG working days,
    in a file of the test's own (the worker re-reads it when it changes)."""
    doc = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    doc["categories"]["environment"]["sign_off_working_days"] = LONG
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return settings.model_copy(update={"policy_file": path})


def add_test_arrangements(policy: Path, since: int) -> None:
    """TEST DATA, not the State Council's: an 'arrangement' for each provisional year from
    `since`, with its statutory holidays and one made-up day off (3 March)."""
    doc = yaml.safe_load(policy.read_text(encoding="utf-8"))
    doc["calendar"] = {
        year: {"holidays": [*workdays.statutory_holidays(year), date(year, 3, 3)]}
        for year in range(since, since + 3)
        if workdays.source(year) == workdays.Source.PROVISIONAL}
    policy.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


async def test_a_provisional_due_is_listed_at_once_then_recomputed_as_a_step(api, settings):
    case = await open_case(api, category="environment", departments=["xjk-law-enforcement"])
    cid = case["case_id"]
    [summons] = case["summonses"]
    assert summons["sign_off_provisional"] and not summons["report_in_provisional"]
    assert case["provisional"] is True and case["attention"] is None
    listed = (await api.get("/api/v1/cases", params={"provisional": True})).json()
    assert cid in [c["case_id"] for c in listed["items"]]

    r = await step(api, cid, "deadlines/recompute", {"reason": "nothing published yet"})
    assert r.status_code == 409 and r.json()["code"] == "deadlines_unchanged", r.text

    opened = datetime.fromisoformat(case["opened_at"])
    add_test_arrangements(settings.policy_file, opened.year)
    r = await step(api, cid, "deadlines/recompute", {"reason": "arrangement published"})
    assert r.status_code == 200, r.text

    after = (await api.get(f"/api/v1/cases/{cid}")).json()
    [moved] = after["summonses"]
    assert not moved["sign_off_provisional"] and after["provisional"] is False
    recomputed = [e for e in after["timeline"] if e["kind"] == "deadlines_recomputed"]
    assert len(recomputed) == 1 and recomputed[0]["actor"] == "coordinator-city"
    [change] = recomputed[0]["data"]["changes"]
    assert change["clock"] == "sign_off" and change["provisional"] is False
    assert datetime.fromisoformat(change["to"]) == datetime.fromisoformat(moved["sign_off_due"])
    assert datetime.fromisoformat(change["from"]) == datetime.fromisoformat(
        summons["sign_off_due"])
    listed = (await api.get("/api/v1/cases", params={"provisional": True})).json()
    assert cid not in [c["case_id"] for c in listed["items"]]
    r = await step(api, cid, "deadlines/recompute", {})
    assert r.status_code == 409 and r.json()["code"] == "nothing_provisional"


async def test_an_intake_whose_planning_fails_answers_with_the_case_and_recovers(api, settings):
    good = settings.policy_file.read_text(encoding="utf-8")
    settings.policy_file.write_text("version: broken\ndefaults: {}\n", encoding="utf-8")
    try:
        r = await api.post("/api/v1/cases", json={**INTAKE, "departments": ["xjk-police"]})
    finally:
        settings.policy_file.write_text(good, encoding="utf-8")
    assert r.status_code == 201, r.text
    case = r.json()
    cid = case["case_id"]
    assert case["status"] == "open" and case["summonses"] == []
    assert "defaults" in case["attention"] and case["attention_since"]
    assert [e["kind"] for e in case["timeline"]] == ["opened", "needs_attention"]
    waiting = (await api.get("/api/v1/cases", params={"attention": True})).json()["items"]
    assert cid in [c["case_id"] for c in waiting]

    r = await step(api, cid, "outcome", {"kind": "administrative_resolution", "summary": "x"})
    assert r.status_code == 409 and r.json()["code"] == "needs_attention"
    r = await step(api, cid, "planning/retry", {})
    assert r.status_code == 200, r.text
    after = (await api.get(f"/api/v1/cases/{cid}")).json()
    assert after["attention"] is None
    assert [s["department"] for s in after["summonses"]] == ["xjk-police"]
    assert [e["kind"] for e in after["timeline"]][-2:] == ["attention_resolved", "summoned"]
    r = await step(api, cid, "planning/retry", {})
    assert r.status_code == 409 and r.json()["code"] == "nothing_to_retry"
