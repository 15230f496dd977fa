"""Templates by name and context (no app, no database), and the catalogues: every msgid
the pages use is translated in zh-CN and en; no label is written into a template."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from api.schemas import CaseDetail, Page
from api.web.catalog import read_catalog, used_msgids
from api.web.core import TEMPLATES, Names, clock, render_template
from api.web.i18n import LANGUAGES
from audit.report import CaseReplay, CaseTimeline, CheckReport, Verdict
from whistle.domain import Role

NOW = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
NAMES = Names({"xjk-petition": "小金口街道信访办"},
              {"jiulong": "九龙村", "xiaojinkou": "小金口街道"}, {"land": "土地权属"})


def base(**extra: Any) -> dict[str, Any]:
    who = SimpleNamespace(display_name="王协调", role=Role.COORDINATOR, username="coord")
    return dict(who=who, nav=[("/cases", "Cases")], csrf_token="c" * 64,
                csrf_field="csrf_token", flash=None, here="/cases", tz="Asia/Shanghai",
                now=NOW, names=NAMES, **extra)


def summons(**extra: Any) -> dict[str, Any]:
    return {**dict(department="xjk-petition", round=1, status="summoned", supervisor=None,
                lead=True, summoned_at=NOW, report_in_due=NOW - timedelta(hours=2),
                sign_off_due=NOW + timedelta(hours=5), next_due=NOW - timedelta(hours=2),
                reported_in_at=None, signed_off_at=None, opinion=None, actions_taken=None,
                return_reason=None, redispatched_to=None, extension_status=None,
                extension_deadline=None, extension_reason=None, overdue=True,
                escalation="remind"), **extra}


def case(**extra: Any) -> CaseDetail:
    fields: dict[str, Any] = dict(
        case_id="0123456789abcdef", external_ref=None, title="九龙村土地使用权转让纠纷",
        category="land", status="open", level="town", owner="xiaojinkou", location="jiulong",
        source_channel="walk_in", departments=["xjk-petition"], overdue=True,
        unresolved_at_top=False, outcome_kind=None, satisfaction=None, close_reason=None,
        reopen_count=0, opened_at=NOW, updated_at=NOW, feedback_due=None, closed_at=None,
        description="多年前的纠纷", parties=[{"name": "张某", "role": "applicant"}],
        policy_version="v1", outcome_summary=None, agreement_text=None, opened_by="coord",
        workflow_id="whistle-case-0123456789abcdef",
        temporal_ui_url="http://127.0.0.1:8233/namespaces/default/workflows/whistle-case-x",
        summonses=[summons()],
        timeline=[dict(seq=1, kind="opened", at=NOW, actor="coord", department=None,
                       data={})])
    return CaseDetail.model_validate({**fields, **extra})


CASE_CONTEXT = dict(ladder=[SimpleNamespace(action="remind", after_hours=0),
                            SimpleNamespace(action="raise", after_hours=48)],
                    taken={"remind"}, mine=None, form=None, values={}, errors={},
                    rejected=None, outcome_kinds=["mediated_agreement"],
                    satisfactions=["satisfied"],
                    can=dict(coordinate=True, take_over=False, add_fact=True, audit=False))


@pytest.mark.parametrize("lang, words", [("zh-CN", ["吹哨报到看板", "已超时", "催办", "受理"]),
                                         ("en", ["Summons board", "overdue by 2h 0min",
                                                 "Reminder", "Opened"])])
def test_case_page_shows_board_clocks_ladder_timeline_in_the_language(
        lang: str, words: list[str]) -> None:
    html = render_template(lang, "case.html", **base(case=case(), **CASE_CONTEXT))
    for word in words:
        assert word in html, word
    assert "小金口街道信访办" in html and "whistle-case-x" in html
    assert 'action="/cases/0123456789abcdef/outcome"' in html  # coordinator may act
    assert 'action="/cases/0123456789abcdef/summonses/xjk-petition/report-in"' not in html


def test_case_page_shows_the_departments_forms_only_to_that_department() -> None:
    context = {**CASE_CONTEXT, "mine": "xjk-petition",
               "can": dict(coordinate=False, take_over=False, add_fact=False, audit=False)}
    html = render_template("zh-CN", "case.html", **base(case=case(), **context))
    assert 'action="/cases/0123456789abcdef/summonses/xjk-petition/report-in"' in html
    assert 'action="/cases/0123456789abcdef/summonses/xjk-petition/return"' in html
    assert "/outcome" not in html


def test_case_page_keeps_typed_values_and_shows_errors_and_the_refusal() -> None:
    detail = case(summonses=[summons(status="reported_in")])
    context = {**CASE_CONTEXT, "mine": "xjk-petition", "form": "sign-off:xjk-petition",
               "values": {"actions_taken": "我已核查 <b>"},
               "errors": {"opinion": "此项必填。"}, "rejected": "案件已办结。"}
    html = render_template("zh-CN", "case.html", **base(case=detail, **context))
    assert "我已核查 &lt;b&gt;" in html  # kept, and escaped
    assert 'id="sign-off-xjk-petition-opinion-error">此项必填。' in html
    assert "案件引擎拒绝了此操作：案件已办结。" in html


def test_case_list_highlights_overdue_cases_and_keeps_filters() -> None:
    row = case().model_dump()
    result = Page(items=[row], total=1, limit=25, offset=0)
    html = render_template("zh-CN", "cases.html", **base(
        result=result, filters={"status": "open"}, page=1, last_page=1, prev_url=None,
        next_url=None, statuses=["open", "closed"], levels=["town"], departments=[]))
    assert '<tr class="overdue">' in html and "九龙村土地使用权转让纠纷" in html
    assert '<option value="open" selected>办理中</option>' in html


def test_inbox_marks_overdue_and_soon() -> None:
    overdue = {**summons(), "case_id": "0123456789abcdef", "case_title": "甲",
               "case_category": "land", "case_level": "town"}
    soon = {**overdue, "case_title": "乙", "next_due": NOW + timedelta(hours=3)}
    html = render_template("zh-CN", "inbox.html", **base(
        result=Page(items=[overdue, soon], total=2, limit=25, offset=0), department="xjk-petition",
        page=1, last_page=1, prev_url=None, next_url=None))
    assert '<tr class="overdue">' in html and '<tr class="soon">' in html
    assert "剩余 3小时0分" in html and "已超时 2小时0分" in html


def test_clock_states() -> None:
    assert clock("en", NOW + timedelta(days=2, hours=1), NOW) == {"text": "2d 1h left",
                                                                  "state": "ok"}
    assert clock("en", NOW + timedelta(minutes=5), NOW)["state"] == "soon"
    assert clock("en", NOW - timedelta(minutes=5), NOW)["state"] == "overdue"


def test_login_and_error_pages() -> None:
    html = render_template("en", "login.html", **base(next="/cases", username="x",
                                                      errors={"form": "Wrong."}))
    assert 'name="next" value="/cases"' in html and "Wrong." in html and 'value="x"' in html
    html = render_template("zh-CN", "error.html", **base(title="Not found.", detail=None))
    assert "未找到。" in html


def test_audit_page_shows_verdict_and_findings() -> None:
    replay = CaseReplay(case_id="c", workflow_id="w", runs=[Verdict(
        workflow_id="w", run_id="r1", run=1, deterministic=False, event_id=7,
        reason="nondeterminism")])
    check = CheckReport(case_id="c", workflow_id="w", runs=1, events=3, pending=0, steps=2,
                        findings=[])
    timeline = CaseTimeline(case_id="c", workflow_id="w", runs=1, complete=True, timeline=[])
    html = render_template("zh-CN", "audit.html", **base(
        case=case(), replay=replay, check=check, timeline=timeline))
    assert "出现偏离" in html and "nondeterminism" in html and "读模型与历史记录一致" in html


def test_new_case_form_groups_places_and_ticks_the_proposal() -> None:
    proposal = SimpleNamespace(
        policy_version="v1", level="town", owner="xiaojinkou", report_in_due=NOW,
        sign_off_due=NOW, departments=[SimpleNamespace(code="xjk-petition", lead=True)])
    values = {"category": "land", "location": "jiulong", "title": "", "departments": [],
              "parties": [{"name": "张某", "role": "applicant", "contact": ""}]}
    html = render_template("zh-CN", "case_new.html", **base(
        values=values, errors={"title": "此项必填。"}, proposal=proposal,
        ticked=["xjk-petition"], categories=[("land", "土地权属")],
        places=[{"code": "xiaojinkou", "options": [{"code": "xiaojinkou", "depth": 0},
                                                    {"code": "jiulong", "depth": 1}]}],
        levels=["town"], departments=[], party_roles={"applicant": "Applicant"},
        sources=["walk_in"]))
    assert '<optgroup label="小金口街道">' in html
    assert '<option value="jiulong" selected>　九龙村</option>' in html
    assert 'name="departments" value="xjk-petition" checked' in html
    assert 'id="title-error">此项必填。' in html and 'value="张某"' in html


def test_every_msgid_is_translated_in_both_catalogues() -> None:
    used = used_msgids()
    assert len(used) > 100
    for lang in LANGUAGES:
        catalog = read_catalog(lang)
        missing = sorted(f"{m} ({where})" for m, where in used.items()
                         if m not in catalog or not catalog[m].string)
        assert not missing, f"{lang}: untranslated msgids:\n" + "\n".join(missing)


CJK = re.compile(r"[\u3400-\u9fff]")


def test_templates_hold_no_hard_coded_chinese_labels() -> None:
    """Every label comes from the catalogues; the only Chinese in a template is the name
    of the language in the switch."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8").replace("中文", "")
        assert not CJK.search(text), template.name


def test_every_template_renders_in_both_languages_with_an_empty_context() -> None:
    """A template must not fail on a missing value (no 500 for a bare page)."""
    for name in ("base.html", "cases.html", "escalated.html", "inbox.html", "login.html",
                 "error.html", "home.html"):  # the others need their objects: see above
        for lang in LANGUAGES:
            render_template(lang, name, **base(
                result=Page(items=[], total=0, limit=25, offset=0), filters={}, errors={},
                title="Not found."))
