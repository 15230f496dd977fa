"""Provisional deadlines (暂定) and a case needing attention (需人工处理) through the pages, on
the dev Temporal server: the marks come from the real read model, 重新计算期限 and 重试 are
sent as the other steps are (CSRF, the case engine's refusals translated), and the worker
re-reads the policy file when it changes, which is how both situations arise and end."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from tests.helpers import POLICY
from tests.web.conftest import running_site
from tests.web.test_flows import ROUTED, open_case, step
from whistle.domain import ClockSpec
from whistle.models import CaseRecord, SummonsRecord
from whistle.settings import Settings
from whistle.workdays import official_until, plan

pytestmark = pytest.mark.devserver

MARK = 'class="badge provisional"'
LONG = 250  # working days: about a year, into a year without an official arrangement yet


def board(html: str) -> str:
    start = html.index('class="board"')
    return html[start:html.index("</table>", start)]


def with_calendar(text: str, years: range) -> str:
    """The policy text with an official arrangement (an empty one) for each of `years`."""
    doc = yaml.safe_load(text)
    doc["calendar"] = {year: {"holidays": [], "workdays": []} for year in years}
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


async def test_provisional_dues_are_marked_until_recomputed_on_the_official_calendar(
        dev_env: WorkflowEnvironment, settings: Settings, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    if not plan(now, ClockSpec(working_days=LONG), settings.timezone, {}).provisional:
        pytest.skip(f"the official calendar already reaches {LONG} working days ahead")
    policy = tmp_path / "policy.yaml"
    text = POLICY.read_text(encoding="utf-8").replace(
        "    sign_off_hours: 240\n", f"    sign_off_working_days: {LONG}\n")
    assert text != POLICY.read_text(encoding="utf-8")
    policy.write_text(text, encoding="utf-8")
    async with running_site(dev_env, settings.model_copy(update={"policy_file": policy})
                            ) as site:
        coord = site.signed_in("coord", "coordinator", "xiaojinkou")
        case_id = await open_case(site, coord)
        page = (await coord.get(f"/cases/{case_id}")).text
        assert board(page).count(MARK) == len(ROUTED)  # every sign-off due, none report-in
        assert "暂定" in board(page)
        assert f'action="/cases/{case_id}/deadlines/recompute"' in page

        staff = site.signed_in("petition", "department", department="xjk-petition")
        base = f"/cases/{case_id}/summonses/xjk-petition"
        assert (await step(site, staff, case_id, f"{base}/report-in", {})).status_code == 303
        inbox = (await staff.get("/inbox")).text
        assert case_id in inbox and MARK in inbox  # its sign-off due runs now

        # The calendar has not changed: the engine refuses, in words.
        r = await step(site, coord, case_id, f"/cases/{case_id}/deadlines/recompute", {})
        assert r.status_code == 409 and "暂定期限没有变化" in r.text

        # The arrangements arrive (in the policy file the worker reads): recompute.
        first = (official_until(None, since=now.year) or date(now.year - 1, 12, 31)).year
        policy.write_text(with_calendar(text, range(first + 1, now.year + 3)),
                          encoding="utf-8")
        r = await step(site, coord, case_id, f"/cases/{case_id}/deadlines/recompute",
                       {"reason": "国务院已公布放假安排"})
        assert r.status_code == 303, r.text
        page = (await coord.get(f"/cases/{case_id}")).text
        assert MARK not in board(page) and "deadlines/recompute" not in page
        timeline = page[page.index('class="timeline"'):]
        assert "期限重算" in timeline and "理由：国务院已公布放假安排" in timeline
        assert timeline.count("（正式）") == len(ROUTED)
        moved = r"小金口街道信访业务部 · 办结期限：[0-9: -]+ → [0-9: -]+（正式）"
        assert re.search(moved, timeline), timeline
        with Session(site.engine) as session:
            row = session.get(CaseRecord, case_id)
            assert row is not None and not row.provisional
            assert not any(s.sign_off_provisional for s in session.exec(
                select(SummonsRecord).where(SummonsRecord.case_id == case_id)))
        auditor = site.signed_in("auditor", "auditor", "huizhou")
        audit = (await auditor.get(f"/cases/{case_id}/audit")).text
        assert "确定性通过" in audit and "读模型与历史记录一致" in audit
        assert "期限重算" in audit and "（正式）" in audit
        en = site.signed_in("coord-en", "coordinator", "xiaojinkou", lang="en")
        page = (await en.get(f"/cases/{case_id}")).text
        assert "Deadlines recomputed" in page and "(official)" in page


async def test_a_case_whose_planning_fails_needs_attention_until_its_coordinator_retries(
        dev_env: WorkflowEnvironment, settings: Settings, tmp_path: Path) -> None:
    """The policy file breaks after the site started (the API keeps the policy it read, the
    worker reads the file again): the case opens needing attention, with no summons."""
    policy = tmp_path / "policy.yaml"
    good = POLICY.read_text(encoding="utf-8")
    policy.write_text(good, encoding="utf-8")
    async with running_site(dev_env, settings.model_copy(update={"policy_file": policy})
                            ) as site:
        policy.write_text("version: [not yaml\n", encoding="utf-8")
        coord = site.signed_in("coord", "coordinator", "xiaojinkou")
        case_id = await open_case(site, coord)
        page = (await coord.get(f"/cases/{case_id}?done=opened")).text
        assert "案件已登记，但尚未向任何部门吹哨" in page  # not "departments are summoned"
        assert 'id="attention"' in page and "not valid YAML" in page
        assert f'action="/cases/{case_id}/planning/retry"' in page
        assert "尚未吹哨任何部门。" in board(page)
        auditor = site.signed_in("auditor", "auditor", "huizhou")
        seen = (await auditor.get(f"/cases/{case_id}")).text
        assert 'id="attention"' in seen and "planning/retry" not in seen
        listed = (await coord.get("/cases?attention=true")).text
        assert case_id in listed and 'class="badge attention"' in listed

        # Retried while the file is still broken: refused, the cause shown.
        r = await step(site, coord, case_id, f"/cases/{case_id}/planning/retry", {})
        assert r.status_code == 409
        assert "无法计算办理期限：政策文件或工作日历出错。详情：" in r.text
        assert "not valid YAML" in r.text

        policy.write_text(good, encoding="utf-8")
        r = await step(site, coord, case_id, f"/cases/{case_id}/planning/retry", {})
        assert r.status_code == 303, r.text
        page = (await coord.get(r.headers["location"])).text
        assert 'id="attention"' not in page and "planning/retry" not in page
        for code in ROUTED:
            assert f'id="summons-{code}"' in page
        timeline = page[page.index('class="timeline"'):]
        assert "需人工处理" in timeline and "恢复办理" in timeline
        assert "期限计算成功：已向受理时确定的部门吹哨。" in timeline
        assert case_id not in (await coord.get("/cases?attention=true")).text
        audit = (await auditor.get(f"/cases/{case_id}/audit")).text
        assert "确定性通过" in audit and "读模型与历史记录一致" in audit
        assert "需人工处理" in audit and "恢复办理" in audit
        r = await step(site, coord, case_id, f"/cases/{case_id}/planning/retry", {})
        assert r.status_code == 409 and "本案无需人工处理" in r.text
