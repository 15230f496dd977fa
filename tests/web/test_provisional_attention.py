"""Provisional deadlines (暂定) and cases needing attention (需人工处理) on the pages: the mark
on every due shown, the attention banner and its retry button, the recompute form, the list
filters, the inbox, the dashboard's counts and the official calendar's horizon. Templates by
context; pages through HTTP on a seeded read model (SQLite, then PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session

from api.schemas import Page
from api.web.core import render_template
from tests.helpers import SAMPLE_POLICY
from tests.test_kpi import case as case_row
from tests.test_kpi import summons as summons_row
from tests.web.conftest import Site
from tests.web.test_templates import CASE_CONTEXT, base, case, summons
from whistle.horizon import Horizon, calendar_horizon
from whistle.policy import LivePolicy, load_policy

MARK = 'class="badge provisional"'
WHY = {"zh-CN": "仅按法定节假日计算：该年度官方节假日安排尚未公布，公布后此期限可能调整。",
       "en": "Counted on the statutory holidays only: the official holiday arrangement for "
             "that year is not published yet, so this deadline may move when it is."}
LATER = datetime(2026, 9, 3, 8, 0, tzinfo=UTC)


def board(html: str) -> str:
    return html[html.index('class="board"'):html.index("</table>", html.index('class="board"'))]


# --- templates -------------------------------------------------------------------------------


@pytest.mark.parametrize("lang, word", [("zh-CN", "暂定"), ("en", "Provisional")])
def test_a_provisional_due_on_the_board_is_marked_with_why(lang: str, word: str) -> None:
    detail = case(provisional=True, summonses=[
        summons(report_in_provisional=True, sign_off_provisional=True),
        summons(department="xjk-land-office", status="signed_off", report_in_provisional=True,
                sign_off_provisional=True, overdue=False)])
    html = render_template(lang, "case.html", **base(case=detail, **CASE_CONTEXT))
    # the open summons: both of its clocks; the signed-off one: none (its clocks are over)
    assert board(html).count(MARK) == 2
    assert f'title="{WHY[lang]}">{word}</span>' in html


def test_the_feedback_due_is_marked_when_provisional() -> None:
    detail = case(status="awaiting_feedback", feedback_due=LATER, feedback_due_provisional=True,
                  overdue=False, summonses=[summons(status="signed_off", overdue=False)])
    html = render_template("zh-CN", "case.html", **base(case=detail, **CASE_CONTEXT))
    facts = html[html.index('class="facts"'):html.index("</dl>")]
    assert "评估反馈期限" not in facts and "反馈期限" in facts and MARK in facts
    plain = case(status="awaiting_feedback", feedback_due=LATER, overdue=False, summonses=[])
    assert MARK not in render_template("zh-CN", "case.html", **base(case=plain,
                                                                     **CASE_CONTEXT))


def test_the_attention_banner_shows_the_reason_and_the_retry_only_when_allowed() -> None:
    detail = case(attention="policy.yaml: not valid YAML", attention_since=LATER,
                  summonses=[], overdue=False)
    allowed = {**CASE_CONTEXT, "can": {**CASE_CONTEXT["can"], "retry": True},
               "retry_every": "1 小时"}
    html = render_template("zh-CN", "case.html", **base(case=detail, **allowed))
    banner = html[html.index('id="attention"'):html.index("</section>", html.index(
        'id="attention"'))]
    assert "需人工处理" in banner and "policy.yaml: not valid YAML" in banner
    assert "2026-09-03 16:00" in banner and "每 1 小时 自动重试一次" in banner
    assert 'action="/cases/0123456789abcdef/planning/retry"' in banner
    assert 'name="csrf_token" value="' + "c" * 64 in banner
    assert 'class="badge attention"' in html  # next to the status too
    html = render_template("en", "case.html", **base(case=detail, **CASE_CONTEXT))
    assert "Needs attention" in html and "planning/retry" not in html  # no `can.retry`
    assert 'id="attention"' not in render_template("en", "case.html", **base(
        case=case(), **CASE_CONTEXT))


def test_the_recompute_form_is_shown_when_the_page_allows_it() -> None:
    allowed = {**CASE_CONTEXT, "can": {**CASE_CONTEXT["can"], "recompute": True}}
    for lang, words in (("zh-CN", ["重新计算期限", "已触发的期限保持不变"]),
                        ("en", ["Recompute deadlines", "stays fired"])):
        html = render_template(lang, "case.html", **base(case=case(), **allowed))
        assert 'action="/cases/0123456789abcdef/deadlines/recompute"' in html
        assert 'id="deadlines-recompute-reason"' in html
        for word in words:
            assert word in html, (lang, word)
    html = render_template("zh-CN", "case.html", **base(case=case(), **CASE_CONTEXT))
    assert "deadlines/recompute" not in html


def test_the_inbox_marks_the_running_clock_when_it_is_provisional() -> None:
    item = {**summons(), "case_id": "0123456789abcdef", "case_title": "甲",
            "case_category": "land", "case_level": "town"}
    # what the projection says of each (whistle/projection.py; tests/test_projection.py)
    rows = [{**item, "report_in_provisional": True, "next_due_provisional": True},
            {**item, "case_title": "乙", "status": "reported_in", "report_in_provisional": True},
            {**item, "case_title": "丙", "status": "reported_in", "sign_off_provisional": True,
             "next_due_provisional": True}]
    html = render_template("zh-CN", "inbox.html", **base(
        result=Page(items=rows, total=3, limit=25, offset=0), department="xjk-petition",
        page=1, last_page=1, prev_url=None, next_url=None))
    lines = html.split("<tr")[2:]
    assert [MARK in line for line in lines] == [True, False, True]


def test_the_case_list_marks_rows_and_keeps_the_new_filters() -> None:
    rows = [case(provisional=True, overdue=False).model_dump(),
            case(case_id="fedcba9876543210", attention="calendar", overdue=False,
                 summonses=[]).model_dump()]
    html = render_template("zh-CN", "cases.html", **base(
        result=Page(items=rows, total=2, limit=25, offset=0),
        filters={"provisional": "true", "attention": "false"}, page=1, last_page=1,
        prev_url=None, next_url=None, statuses=["open"], levels=["town"], departments=[]))
    body = html[html.index("<tbody>"):]
    first, second = body.split("</tr>")[:2]
    assert MARK in first and "需人工处理" not in first
    assert 'class="badge attention" title="calendar">需人工处理' in second and MARK not in second
    assert '<option value="true" selected>仅暂定</option>' in html
    assert '<option value="false" selected>仅正常办理</option>' in html


@pytest.mark.parametrize("lang, horizon, words", [
    ("zh-CN", Horizon(date(2026, 12, 8), date(2026, 12, 31), date(2026, 12, 22),
                      "categories.environment.sign_off", True),
     ["官方节假日安排仅覆盖至 2026-12-31（剩 23 天）", "补充 2027 年的安排",
      "<code>calendar:</code>", "<code>whistle recompute-deadlines</code>"]),
    ("en", Horizon(date(2026, 12, 8), date(2026, 12, 31), date(2026, 12, 22),
                   "categories.environment.sign_off", True),
     ["The official holiday arrangement is known only until 2026-12-31 (23 days left)",
      "Add the arrangement for 2027 under <code>calendar:</code> in the policy file, then "
      "run <code>whistle recompute-deadlines</code>."]),
    ("zh-CN", Horizon(date(2027, 1, 10), date(2026, 12, 31), date(2027, 1, 24),
                      "defaults.feedback", True), ["已过去 10 天"]),
    ("en", Horizon(date(2027, 1, 10), None, date(2027, 1, 24), "defaults.feedback", True),
     ["No official holiday arrangement is known for 2027"]),
])
def test_the_horizon_banner_says_how_far_the_official_calendar_reaches(
        lang: str, horizon: Horizon, words: list[str]) -> None:
    html = render_template(lang, "home.html", **base(horizon=horizon))
    section = html[html.index('id="calendar-horizon"'):]
    for word in words:
        assert word in section, (lang, word)
    assert 'id="calendar-horizon"' not in render_template(lang, "home.html", **base(
        horizon=None))


# --- pages through HTTP -------------------------------------------------------------------------

JIULONG = "/huizhou/huicheng/xiaojinkou/jiulong/"
NOW = datetime.now(UTC)
H = timedelta(hours=1)
WAITING = "a" * 16  # needs attention: its planning failed, nothing summoned
COUNTED = "b" * 16  # its petition office's report-in due is provisional, and missed
PLAIN = "c" * 16


@pytest.fixture
def seeded(site: Site) -> Site:
    waiting = case_row(WAITING, JIULONG, NOW - H)
    waiting.attention, waiting.attention_since = "policy.yaml: not valid YAML", NOW - H
    counted = case_row(COUNTED, JIULONG, NOW - 2 * H)
    counted.provisional, counted.departments = True, ["xjk-petition"]
    petition = summons_row(COUNTED, "xjk-petition", NOW - 2 * H, report_in=H)
    petition.report_in_provisional = petition.sign_off_provisional = True
    petition.next_due_provisional = True  # report-in runs: as the projection writes it
    plain = case_row(PLAIN, JIULONG, NOW - 3 * H)
    plain.departments = ["xjk-land-office"]
    with Session(site.engine) as s:
        s.add_all([waiting, counted, petition, plain,
                   summons_row(PLAIN, "xjk-land-office", NOW - 3 * H)])
        s.commit()
    return site


async def test_a_case_needing_attention_offers_its_coordinator_the_retry_only(
        seeded: Site) -> None:
    coord = seeded.signed_in("coord", "coordinator", "xiaojinkou")
    html = (await coord.get(f"/cases/{WAITING}")).text
    assert 'id="attention"' in html and "policy.yaml: not valid YAML" in html
    assert "每 1 小时 自动重试一次" in html
    assert f'action="/cases/{WAITING}/planning/retry"' in html
    assert "deadlines/recompute" not in html  # nothing provisional
    for who in (seeded.signed_in("auditor", "auditor", "huizhou", lang="en"),
                seeded.signed_in("sup", "supervisor", "xiaojinkou")):  # not taken over
        html = (await who.get(f"/cases/{WAITING}")).text
        assert 'id="attention"' in html and "planning/retry" not in html
    assert 'id="attention"' not in (await coord.get(f"/cases/{PLAIN}")).text


async def test_a_case_with_provisional_deadlines_offers_its_coordinator_the_recompute(
        seeded: Site) -> None:
    coord = seeded.signed_in("coord", "coordinator", "xiaojinkou", lang="en")
    html = (await coord.get(f"/cases/{COUNTED}")).text
    assert board(html).count(MARK) == 2 and WHY["en"] in html
    assert f'action="/cases/{COUNTED}/deadlines/recompute"' in html
    assert "planning/retry" not in html
    auditor = seeded.signed_in("auditor", "auditor", "huizhou")
    html = (await auditor.get(f"/cases/{COUNTED}")).text
    assert board(html).count(MARK) == 2 and "deadlines/recompute" not in html
    plain = (await coord.get(f"/cases/{PLAIN}")).text
    assert MARK not in plain and "deadlines/recompute" not in plain


async def test_the_case_list_filters_provisional_and_attention_like_overdue(
        seeded: Site) -> None:
    coord = seeded.signed_in("coord", "coordinator", "xiaojinkou")
    every = (await coord.get("/cases")).text
    assert all(c in every for c in (WAITING, COUNTED, PLAIN))
    assert every.count(MARK) == 1 and every.count('class="badge attention"') == 1
    waiting = (await coord.get("/cases?attention=true")).text
    assert WAITING in waiting and COUNTED not in waiting and PLAIN not in waiting
    assert '<option value="true" selected>仅需人工处理</option>' in waiting
    counted = (await coord.get("/cases?provisional=true")).text
    assert COUNTED in counted and WAITING not in counted and PLAIN not in counted
    rest = (await coord.get("/cases?provisional=false&attention=false")).text
    assert PLAIN in rest and WAITING not in rest and COUNTED not in rest
    assert WAITING in (await coord.get("/cases?attention=maybe")).text  # ignored


async def test_the_inbox_marks_a_provisional_due(seeded: Site) -> None:
    staff = seeded.signed_in("petition", "department", department="xjk-petition")
    html = (await staff.get("/inbox")).text
    assert COUNTED in html and MARK in html and WHY["zh-CN"] in html
    land = seeded.signed_in("land", "department", department="xjk-land-office")
    html = (await land.get("/inbox")).text
    assert PLAIN in html and MARK not in html


async def test_the_dashboard_counts_and_links_the_cases_needing_attention(
        seeded: Site) -> None:
    coord = seeded.signed_in("coord", "coordinator", "xiaojinkou")
    html = (await coord.get("/dashboard")).text
    assert '<dd id="kpi-attention"><a href="/cases?attention=true">1</a></dd>' in html
    assert '<dd id="kpi-provisional"><a href="/cases?provisional=true">1</a></dd>' in html
    assert 'id="attention-banner"><a href="/cases?attention=true">1 件案件需人工处理' in html
    overdue = html[html.index('id="table-overdue"'):]
    assert f'href="/cases/{COUNTED}"' in overdue and overdue.count(MARK) == 1
    elsewhere = seeded.signed_in("ruhu", "coordinator", "ruhu", lang="en")
    html = (await elsewhere.get("/dashboard")).text  # not their area
    assert '<dd id="kpi-attention"><a href="/cases?attention=true">0</a></dd>' in html
    assert 'id="attention-banner"' not in html


def policy_with(tmp_path: Path, **change: object) -> Path:
    """The sample policy with top-level `change`s (or `defaults` keys, prefixed d_)."""
    doc = yaml.safe_load(SAMPLE_POLICY.read_text(encoding="utf-8"))
    for key, value in change.items():
        if key.startswith("d_"):
            doc["defaults"][key[2:]] = value
        else:
            doc[key] = value
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


async def test_the_city_level_and_admins_are_warned_when_the_official_calendar_runs_short(
        site: Site, tmp_path: Path) -> None:
    """A clock of 250 working days reaches a year with no official arrangement yet (the
    State Council publishes a year's arrangement about a month before it starts)."""
    long_file = policy_with(tmp_path, d_sign_off_hours=None, d_sign_off_working_days=250)
    long = load_policy(long_file)
    horizon = calendar_horizon(long, NOW, site.settings.timezone)
    assert horizon.short
    site.app.state.live_policy = LivePolicy(long_file)
    city = site.signed_in("city", "coordinator", "huizhou")
    html = (await city.get("/dashboard")).text
    assert 'id="calendar-horizon"' in html and f"补充 {horizon.next_year} 年的安排" in html
    admin = site.signed_in("admin", "admin", "huizhou", lang="en")
    html = (await admin.get("/")).text
    assert 'id="calendar-horizon"' in html
    assert f"Add the arrangement for {horizon.next_year} under <code>calendar:</code>" in html
    town = site.signed_in("coord", "coordinator", "xiaojinkou")
    assert 'id="calendar-horizon"' not in (await town.get("/dashboard")).text

    # Official arrangements (empty ones will do) for the next years: nothing to warn about.
    years = {year: {"holidays": [], "workdays": []} for year in
             range(NOW.year, NOW.year + 4)}
    site.app.state.live_policy = LivePolicy(policy_with(tmp_path, calendar=years))
    assert 'id="calendar-horizon"' not in (await city.get("/dashboard")).text
    assert 'id="calendar-horizon"' not in (await admin.get("/")).text
