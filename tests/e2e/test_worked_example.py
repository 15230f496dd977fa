"""DOMAIN.md's worked example played through the pages in headless Chromium, one browser
per person: the Xiaojinkou street centre's coordinator (coord.xjk), the three summoned
departments — petition office (petition.xjk), land office (land.xjk), law-enforcement
brigade (enforce.xjk) — then the county supervisor (super.huicheng) and the city's auditor
(auditor.city).

A land-use-right transfer dispute in Jiulong village: the coordinator opens the case and
blows the whistle to the three departments the policy proposes; the petition office and the
law-enforcement brigade report in at once; the land office gets the early warning (临期预警)
and then misses its (short, test-policy) report-in clock, which climbs the ladder — 超时
(missed), 催办 (reminder), 督办 (supervisor notified) — then reports in late; all three sign
off; the settlement is recorded as a mediated agreement and the parties' satisfied feedback
closes the case (办结归档). The case stayed in the town (小事不出村、大事不出镇), so the county
supervisor's escalated list does not hold it; the auditor replays its history (deterministic)
and finds the read model agreeing with it. In Chinese throughout, then the case page and the
dashboard after the switch to English.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.e2e.conftest import REPORT_IN_SECONDS, SUPERVISOR_AFTER_SECONDS, User

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TITLE = "九龙村土地使用权转让纠纷"
PETITION, LAND, ENFORCEMENT = "xjk-petition", "xjk-land-office", "xjk-law-enforcement"
# Engine words that must never reach a Chinese page: raw reason codes, ISO times in UTC.
RAW = ("intake", "missed", "due 20", "+00:00", "report_in", "sign_off", "system")
WAIT = 90.0  # at most, for a page to show what the engine did (a loaded 2-core CI machine)


async def wait_for_text(user: User, path: str, selector: str, wanted: list[str],
                        timeout: float = WAIT) -> str:
    """Reload `path` until the text of `selector` holds every string of `wanted`: no
    fixed sleeps, one reload a second, bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        await user.goto(path)
        got = await user.text(selector)
        if all(w in got for w in wanted):
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{user.name}: {wanted} not all on {path} after {timeout:g} s:\n{got}")
        await asyncio.sleep(1)


def no_raw_engine_text(text: str, where: str) -> None:
    leaked = [w for w in RAW if w in text]
    assert not leaked, f"engine text {leaked} on {where}:\n{text}"


async def open_case(coord: User) -> str:
    """受理 + 吹哨 through the form: category, place, the routing proposal (all three
    departments the policy proposes), the dispute and its parties. Returns the case id."""
    page = coord.page
    await coord.goto("/cases/new")
    await coord.shot("open-form")
    await page.select_option("#category", "land")
    await page.select_option("#location", "jiulong")
    await page.select_option("#level", "town")  # the street centre owns it (DOMAIN.md)
    await page.click("button[name=action][value=preview]")
    await page.wait_for_load_state()
    proposal = await coord.text("form[action='/cases/new']")
    assert "信访" in proposal and "国土" in proposal and "执法" in proposal, proposal
    for code in (PETITION, LAND, ENFORCEMENT):  # the policy's proposal for land in a town
        assert await page.is_checked(f"input[name=departments][value={code}]"), code
    await page.fill("#title", TITLE)
    await page.fill("#description", "多年前的土地使用权转让纠纷，当事人向街道综治中心求助")
    await page.fill("input[name=party_name_0]", "张某")
    await page.fill("input[name=party_name_1]", "李某")
    await page.select_option("#source_channel", "walk_in")
    await coord.shot("open-form-filled")
    await page.click("button[name=action][value=open]")
    await page.wait_for_load_state()
    m = re.search(r"/cases/([0-9a-f]{16})", page.url)
    assert m, f"not on a case page after opening: {page.url}"
    return m.group(1)


async def step(user: User, form_id: str, fields: dict[str, str] | None = None) -> None:
    """Fill and submit one step form of the case page (`form#<form_id>`)."""
    for name, value in (fields or {}).items():
        await user.page.fill(f"#{form_id}-{name}", value)
    await user.page.click(f"form#{form_id} button[type=submit]")
    await user.page.wait_for_load_state()


async def report_in_from_inbox(user: User, username: str, department: str,
                               case_path: str) -> None:
    """Sign in, find the case in the department's inbox and report in from there."""
    await user.sign_in(username)
    await user.goto("/inbox")
    assert TITLE in await user.text()
    await user.shot("inbox")
    row = user.page.locator("table.inbox tr", has_text=TITLE)
    await row.locator("button[type=submit]").click()
    await user.page.wait_for_load_state()
    assert user.path() == case_path
    assert "已报到" in await user.text(f"#summons-{department}")
    await user.shot("reported-in")


async def sign_off(user: User, department: str, case_path: str, opinion: str,
                   actions: str) -> None:
    await user.goto(case_path)
    await step(user, f"sign-off-{department}", {"opinion": opinion, "actions_taken": actions})
    assert "已办结反馈" in await user.text(f"#summons-{department}")
    await user.shot("signed-off")


async def test_worked_example_with_a_missed_clock_in_chinese_then_english(
        open_browser: Callable[[str], Awaitable[User]]) -> None:
    coord, petition, land, enforce = (
        await open_browser("coord"), await open_browser("petition"),
        await open_browser("land"), await open_browser("enforce"))
    await coord.sign_in("coord.xjk")
    await coord.shot("home")

    # 受理 + 吹哨: all three departments of the policy's proposal
    began = time.monotonic()
    case_id = await open_case(coord)
    case_path = f"/cases/{case_id}"
    main = await coord.text()
    assert TITLE in main and "办理中" in main  # Open
    assert "案件已受理，已向相关部门吹哨。" in main  # the flash after the redirect
    assert "由小金口街道综治中心负责" in await coord.text("dl.facts")
    board = await coord.text("table.board")
    assert "信访" in board and "国土" in board and "执法" in board
    timeline = await coord.text("table.timeline")
    assert "受理" in timeline and "受理时吹哨" in timeline
    no_raw_engine_text(timeline, "the opened case's timeline")
    await coord.shot("case-opened")

    # 报到 on time: the petition office and the law-enforcement brigade, from their inboxes
    await asyncio.gather(report_in_from_inbox(petition, "petition.xjk", PETITION, case_path),
                         report_in_from_inbox(enforce, "enforce.xjk", ENFORCEMENT, case_path))
    assert time.monotonic() - began < REPORT_IN_SECONDS, "too slow to report in on time"

    # The land office: 临期预警 at the policy's share of its clock, then it misses the clock:
    # 超时, then 催办, then 督办, on the timeline and the board
    timeline = await wait_for_text(coord, case_path, "table.timeline",
                                   ["临期预警", "超时", "升级督办 · 催办", "升级督办 · 督办"],
                                   timeout=REPORT_IN_SECONDS + SUPERVISOR_AFTER_SECONDS + WAIT)
    assert "报到期限将于" in timeline and "报到期限已过" in timeline, timeline
    no_raw_engine_text(timeline, "the timeline after the missed clock")
    assert "系统" in timeline
    land_row = coord.page.locator(f"#summons-{LAND}")
    assert "overdue" in (await land_row.get_attribute("class") or "")
    assert "督办" in await land_row.inner_text()
    for on_time in (PETITION, ENFORCEMENT):
        assert "overdue" not in (await coord.page.locator(f"#summons-{on_time}")
                                 .get_attribute("class") or "")
    ladder = await coord.text("ol.ladder")
    assert "超时即执行" in ladder and "上一步 5 秒 后" in ladder and "0.0" not in ladder, ladder
    await coord.shot("clock-missed-escalated")

    # ... and it shows on the case list and the dashboard's overdue list
    await coord.goto("/cases?overdue=true")
    listed = coord.page.locator("table.cases tr", has_text=TITLE)
    assert "overdue" in (await listed.get_attribute("class") or "")
    await coord.shot("cases-overdue")
    await coord.goto("/dashboard")
    assert await coord.text("#kpi-overdue") == "1"
    overdue = await coord.text("#table-overdue")
    assert TITLE in overdue and "小金口国土所" in overdue and "督办" in overdue, overdue
    assert await coord.text("#kpi-report-in") == "67% (2/3)"  # two on time, land missed
    await coord.shot("dashboard-overdue")

    # The land office sees it overdue in its inbox, reports in late and signs off
    await land.sign_in("land.xjk")
    await land.goto("/inbox")
    overdue_row = land.page.locator("table.inbox tr", has_text=TITLE)
    assert "overdue" in (await overdue_row.get_attribute("class") or "")
    await land.shot("inbox-overdue")
    await land.goto(case_path)
    await land.shot("case")
    await step(land, f"report-in-{LAND}", {"note": "迟到报到，立即参与联合调解"})
    assert "已报到" in await land.text(f"#summons-{LAND}")
    await sign_off(land, LAND, case_path, "同意联合调解", "实地核查土地使用权转让情况")

    # The petition office and the law-enforcement brigade sign off
    await sign_off(petition, PETITION, case_path, "同意联合调解", "组织双方当面协商")
    await sign_off(enforce, ENFORCEMENT, case_path, "同意联合调解", "核查现场，未发现违法占地")

    # 结果: the settlement; 评估反馈: satisfied, the case is closed and filed (办结归档)
    await coord.goto(case_path)
    await coord.page.select_option("#outcome-kind", "mediated_agreement")
    await step(coord, "outcome", {"summary": "双方自愿达成和解",
                                  "agreement_text": "和解协议：双方确认土地使用权转让有效。"})
    main = await coord.text()
    assert "待评估反馈" in main and "调解协议" in main
    await coord.shot("outcome")
    await coord.page.select_option("#feedback-satisfaction", "satisfied")
    await step(coord, "feedback")
    facts = await coord.text("dl.facts")
    assert "办结归档" in facts and "反馈后办结" in facts and "满意" in facts
    timeline = await coord.text("table.timeline")
    for seen in ("受理", "吹哨", "报到", "临期预警", "超时", "升级督办 · 催办", "升级督办 · 督办",
                 "签收意见", "结果", "评估反馈", "办结归档", "意见：同意联合调解",
                 "备注：迟到报到，立即参与联合调解", "逾期"):
        assert seen in timeline, f"{seen} missing from the timeline:\n{timeline}"
    for username in ("coord.xjk", "petition.xjk", "land.xjk", "enforce.xjk"):
        assert username in timeline, f"{username} missing from the timeline"
    no_raw_engine_text(timeline, "the closed case's timeline")
    await coord.shot("closed")

    # The dashboard: the land office's late report-in is counted
    await coord.goto("/dashboard")
    assert await coord.text("#kpi-cases") == "1"
    assert await coord.text("#kpi-report-in") == "67% (2/3)"
    assert await coord.text("#kpi-sign-off") == "100% (3/3)"
    assert await coord.text("#kpi-resolution") == "100% (1/1)"
    assert await coord.text("#kpi-satisfaction") == "100% (1/1)"
    assert await coord.page.locator("svg.chart").count() == 6
    await coord.shot("dashboard-zh")

    # The county supervisor: the case stayed in the town, so it is not escalated to them
    supervisor = await open_browser("supervisor")
    await supervisor.sign_in("super.huicheng")
    await supervisor.goto("/escalated")
    escalated = await supervisor.text()
    assert "上报至本级" in escalated and TITLE not in escalated, escalated
    await supervisor.shot("escalated")

    # The auditor: the replay verdict and the read-model cross-check of the case's history
    auditor = await open_browser("auditor")
    await auditor.sign_in("auditor.city")
    await auditor.goto(case_path)
    await auditor.page.click(f"a[href='{case_path}/audit']")
    await auditor.page.wait_for_load_state()
    audit = await wait_for_text(auditor, f"{case_path}/audit", "main",
                                ["确定性通过", "读模型与历史记录一致", "其中 0 个仍在写入"])
    assert "偏离" not in audit and "不一致" not in audit, audit
    no_raw_engine_text(await auditor.text("table.timeline"), "the audit timeline")
    await auditor.shot("audit")

    # English after the switch: the case page speaks it
    await coord.goto(case_path)
    await coord.page.click("a[hreflang=en]")
    await coord.page.wait_for_load_state()
    assert coord.path() == case_path
    main = await coord.text()
    for seen in ("Closed", "Mediated agreement", "Deadline missed", "Deadline warning",
                 "Reminder", "Supervisor notified", "Report-in", "Signed off", "Timeline",
                 "Report-in deadline missed (due ", "Summoned at intake", "as soon as the "
                 "deadline is missed", "Case closed and filed"):
        assert seen in main, f"{seen} missing in English:\n{main}"
    assert "办理中" not in main and "超时" not in main and "+00:00" not in main
    await coord.shot("case-en")
    await coord.goto("/dashboard")
    assert "On-time report-in rate" in await coord.text()
    await coord.shot("dashboard-en")

    for user in (coord, petition, land, enforce, supervisor, auditor):
        user.guard.assert_clean(user.name)
