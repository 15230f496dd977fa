"""What the pages say about engine data: timeline details from the events' structured data
(localized; what users typed stays as typed), ladder durations, refusal reasons, and the
early warning (临期预警) marking a summons as about to be overdue."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from api.schemas import Page
from api.web.core import Names, render_template
from api.web.describe import duration, event_details, ladder_step, refusal_text
from tests.web.test_templates import CASE_CONTEXT, NAMES, NOW, base, case, summons

TZ = "Asia/Shanghai"
DUE = "2026-11-26T23:30:04.947501+00:00"  # 2026-11-27 07:30 in Shanghai
ESCALATED = dict(action="remind", clock="report_in", level="town",
                 reason=f"report_in missed (due {DUE})")


def details(lang: str, kind: str, **data: object) -> list[str]:
    return event_details(lang, kind, data, NAMES, TZ)


def test_engine_reasons_are_localized_and_times_local() -> None:
    assert details("zh-CN", "escalated", **ESCALATED) == [
        "报到期限已过（2026-11-27 07:30 到期）", "层级：镇（街）级"]
    assert details("en", "escalated", **ESCALATED)[0] == \
        "Report-in deadline missed (due 2026-11-27 07:30)"
    assert details("zh-CN", "summoned", reason="intake", lead=True)[:2] == [
        "受理时吹哨（按政策分拨或由综治中心选定）", "牵头部门"]
    assert details("zh-CN", "clock_warning", clock="report_in", due=DUE) == [
        "报到期限将于 2026-11-27 07:30 到期"]
    assert details("en", "clock_warning", clock="sign_off", due=DUE) == [
        "Sign-off deadline falls due at 2026-11-27 07:30"]
    assert details("zh-CN", "clock_missed", clock="report_in", due=DUE) == [
        "报到期限已过（2026-11-27 07:30 到期）"]
    raised = details("zh-CN", "escalated", action="raise", from_level="town", level="county",
                     owner="xiaojinkou", reason=f"sign_off missed (due {DUE})")
    assert raised[1] == "由镇（街）级提至县（区）级，改由小金口街道综治中心负责"
    assert details("zh-CN", "closed", reason="feedback") == ["反馈后办结"]
    for lang in ("zh-CN", "en"):
        text = " ".join(details(lang, "opened", level="town", owner="xiaojinkou",
                                repeat_of=["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]))
        assert "2" in text and ("重复纠纷" in text or "Repeat dispute" in text)


def test_typed_text_stays_as_typed() -> None:
    assert details("zh-CN", "summoned", reason="请 intake 部门协助") == ["理由：请 intake 部门协助"]
    assert details("zh-CN", "escalated", action="raise", reason="双方分歧大，调解不成",
                   from_level="town", level="county", owner="xiaojinkou")[0] == \
        "理由：双方分歧大，调解不成"
    assert details("en", "signed_off", late=True, opinion="同意", actions_taken="核查") == [
        "Late", "Opinion: 同意", "Actions taken: 核查"]
    assert details("zh-CN", "fact_added", text="现场核实 <b>") == ["现场核实 <b>"]


@pytest.mark.parametrize("hours, zh, en", [
    (0, "0 分钟", "0 min"), (5 / 3600, "5 秒", "5 s"), (0.5, "30 分钟", "30 min"),
    (2, "2 小时", "2 h"), (1.5, "1 小时 30 分钟", "1 h 30 min"), (48, "2 天", "2 days"),
    (74, "3 天 2 小时", "3 days 2 h")])
def test_durations_read_as_people_say_them(hours: float, zh: str, en: str) -> None:
    assert duration("zh-CN", hours) == zh and duration("en", hours) == en


def test_ladder_steps_count_from_the_step_before() -> None:
    assert ladder_step("zh-CN", 0, 0) == "超时即执行"
    assert ladder_step("zh-CN", 1, 48) == "上一步 2 天 后"
    assert ladder_step("en", 0, 24) == "24 h after the missed deadline"
    html = render_template("zh-CN", "case.html", **base(case=case(), **CASE_CONTEXT))
    assert "0.0 小时" not in html and "超时即执行" in html and "上一步 2 天 后" in html


def test_ladder_steps_in_working_days_read_in_both_languages() -> None:
    assert ladder_step("zh-CN", 0, None, 1) == "超时 1 个工作日后"
    assert ladder_step("zh-CN", 1, None, 2) == "上一步 2 个工作日后"
    assert ladder_step("en", 1, None, 2) == "2 working day(s) after the step before"
    ladder = [SimpleNamespace(action="remind", after_hours=0, after_working_days=None),
              SimpleNamespace(action="notify_supervisor", after_hours=None,
                              after_working_days=1),
              SimpleNamespace(action="raise", after_hours=None, after_working_days=2)]
    for lang, words in (("zh-CN", ["超时即执行", "上一步 1 个工作日后", "上一步 2 个工作日后"]),
                        ("en", ["as soon as the deadline is missed",
                                "1 working day(s) after the step before"])):
        html = render_template(lang, "case.html", **base(
            case=case(), **{**CASE_CONTEXT, "ladder": ladder}))
        body = html[html.index('class="ladder"'):]
        assert "None" not in body[:body.index("</ol>")]
        for word in words:
            assert word in body, (lang, word)


FROM = "2026-12-30T01:00:00+00:00"  # 09:00 in Shanghai
TO = "2026-12-31T01:00:00+00:00"
OFFICIAL = "2027-01-04T01:00:00+00:00"


def test_summoned_marks_the_provisional_dues() -> None:
    data = dict(reason="intake", report_in_due=DUE, sign_off_due=FROM,
                provisional=["sign_off"])
    assert details("zh-CN", "summoned", **data)[1] == \
        "报到期限 2026-11-27 07:30，办结期限 2026-12-30 09:00（暂定）"
    assert details("en", "summoned", **data)[1] == \
        "Report in by 2026-11-27 07:30, sign off by 2026-12-30 09:00 (provisional)"
    assert "暂定" not in " ".join(details("zh-CN", "summoned", reason="intake",
                                          report_in_due=DUE, sign_off_due=FROM))


def test_needing_attention_and_resuming_are_described_in_both_languages() -> None:
    failed = dict(code="planning_failed", reason="policy.yaml: not valid YAML",
                  retry_at=FROM)
    assert details("zh-CN", "needs_attention", **failed) == [
        "无法计算办理期限，尚未向任何部门吹哨。", "理由：policy.yaml: not valid YAML",
        "案件引擎将于 2026-12-30 09:00 重试。"]
    assert details("en", "needs_attention", **failed) == [
        "The deadlines could not be planned, so no department is summoned yet.",
        "Reason: policy.yaml: not valid YAML", "The case engine tries again at 2026-12-30 09:00."]
    estimated = details("zh-CN", "needs_attention", code="ladder_estimated",
                        reason="ladder step raise counted in calendar days")
    assert estimated[0] == "工作日历无法计算，督办升级步骤改按自然日计算。" and len(estimated) == 2
    assert details("zh-CN", "attention_resolved", policy_version="2026.12") == [
        "期限计算成功：已向受理时确定的部门吹哨。", "政策版本：2026.12"]
    assert details("en", "attention_resolved") == [
        "Planning succeeded: the intake's departments are summoned."]


def test_recomputed_deadlines_say_what_moved_and_what_was_kept() -> None:
    changes = [
        {"department": "xjk-petition", "clock": "sign_off", "from": FROM, "to": TO,
         "provisional": False},
        {"department": "xjk-petition", "clock": "report_in", "from": FROM, "to": TO,
         "provisional": True},
        {"department": None, "clock": "feedback", "from": FROM, "to": TO,
         "provisional": False},
        {"department": "xjk-petition", "clock": "report_in", "from": FROM, "kept": "fired",
         "official_due": OFFICIAL}]
    assert details("zh-CN", "deadlines_recomputed", reason="国务院已公布安排",
                   changes=changes) == [
        "理由：国务院已公布安排",
        "小金口街道信访办 · 办结期限：2026-12-30 09:00 → 2026-12-31 09:00（正式）",
        "小金口街道信访办 · 报到期限：2026-12-30 09:00 → 2026-12-31 09:00（暂定）",
        "评估反馈期限：2026-12-30 09:00 → 2026-12-31 09:00（正式）",
        "小金口街道信访办 · 报到期限：保持 2026-12-30 09:00 不变（已触发）；"
        "按官方安排应为 2027-01-04 09:00"]
    en = details("en", "deadlines_recomputed", reason=None, changes=changes)
    assert en == [
        "小金口街道信访办 · Sign-off deadline: 2026-12-30 09:00 → 2026-12-31 09:00 (official)",
        "小金口街道信访办 · Report-in deadline: 2026-12-30 09:00 → 2026-12-31 09:00 "
        "(provisional)",
        "Feedback deadline: 2026-12-30 09:00 → 2026-12-31 09:00 (official)",
        "小金口街道信访办 · Report-in deadline: kept at 2026-12-30 09:00 (it had already "
        "fired); the official due would have been 2027-01-04 09:00"]
    assert details("en", "deadlines_recomputed", changes="not a list") == []


def test_the_new_kinds_are_named_on_the_timeline_in_both_languages() -> None:
    timeline = [dict(seq=1, kind="needs_attention", at=NOW, actor="system", department=None,
                     data={"code": "planning_failed", "reason": "x", "retry_at": FROM}),
                dict(seq=2, kind="attention_resolved", at=NOW, actor="coord",
                     department=None, data={}),
                dict(seq=3, kind="deadlines_recomputed", at=NOW, actor="coord",
                     department=None, data={"changes": []})]
    for lang, words in (("zh-CN", ["需人工处理", "恢复办理", "期限重算"]),
                        ("en", ["Needs attention", "Resumed", "Deadlines recomputed"])):
        html = render_template(lang, "case.html", **base(case=case(timeline=timeline),
                                                         **CASE_CONTEXT))
        body = html[html.index('class="timeline"'):]
        for word in words:
            assert word in body, (lang, word)
        assert "needs_attention" not in body.replace('class="event-needs_attention"', "")


def test_refusals_are_translated_and_unknown_codes_kept() -> None:
    names = Names({"xjk-land-office": "小金口国土所", "xjk-petition": "小金口信访办"},
                  {"xiaojinkou": "小金口街道"}, {})
    assert refusal_text("zh-CN", 403, "forbidden", "the case is outside xiaojinkou", names) \
        == "该案件不在您的辖区（小金口街道）内。"
    assert refusal_text("zh-CN", 403, "forbidden",
                        "land.xjk belongs to xjk-land-office, not xjk-petition", names) == \
        "land.xjk 属于小金口国土所，不属于小金口信访办。"
    assert refusal_text("zh-CN", 403, "forbidden", "a department may not case.open", names) \
        == "您的角色（职能部门工作人员）无权进行此操作。" or "无权" in refusal_text(
            "zh-CN", 403, "forbidden", "a department may not case.open", names)
    assert refusal_text("zh-CN", 404, "case_not_found", "no case 'abc'", names) == \
        "没有编号为 abc 的案件。"
    assert refusal_text("zh-CN", 409, "summonses_open", "summonses still open: x", names) \
        .startswith("仍有吹哨事项未办结")
    for code in ("nothing_provisional", "deadlines_unchanged", "step_in_progress",
                 "nothing_to_retry", "needs_attention", "planning_failed"):
        for lang in ("zh-CN", "en"):
            assert code not in refusal_text(lang, 409, code, "engine words", names), code
    assert refusal_text("zh-CN", 409, "planning_failed",
                        "planning failed again: policy.yaml: not valid YAML", names) == \
        "无法计算办理期限：政策文件或工作日历出错。详情：planning failed again: " \
        "policy.yaml: not valid YAML"
    assert refusal_text("en", 409, "deadlines_unchanged", "every provisional …", names) == \
        "The provisional deadlines stay as they are: the calendar has not changed for the " \
        "days they count over."
    odd = refusal_text("zh-CN", 409, "brand_new_code", "something new", names)
    assert "brand_new_code" in odd and "something new" in odd and "操作被拒绝" in odd
    assert "brand_new_code" in refusal_text("en", 403, "forbidden", "brand_new_code", names)


def test_timeline_rows_have_no_engine_text_in_either_language() -> None:
    timeline = [dict(seq=1, kind="opened", at=NOW, actor="coord", department=None,
                     data={"level": "town", "owner": "xiaojinkou", "repeat_of": ["aaaa"]}),
                dict(seq=2, kind="summoned", at=NOW, actor="coord", department="xjk-petition",
                     data={"reason": "intake", "report_in_due": DUE, "sign_off_due": DUE}),
                dict(seq=3, kind="clock_warning", at=NOW, actor="system",
                     department="xjk-petition", data={"clock": "report_in", "due": DUE}),
                dict(seq=4, kind="escalated", at=NOW, actor="system", department="xjk-petition",
                     data=ESCALATED)]
    for lang, words in (("zh-CN", ["受理", "临期预警", "系统", "此前相关案件", "重复纠纷"]),
                        ("en", ["Case opened", "Deadline warning", "System",
                                "Earlier related cases", "Repeat dispute"])):
        html = render_template(lang, "case.html", **base(case=case(timeline=timeline),
                                                         **CASE_CONTEXT))
        body = html[html.index('class="timeline"'):]
        for word in words:
            assert word in body, (lang, word)
        for raw in ("+00:00", "report_in missed", ">system<") + (("intake",) if lang == "zh-CN"
                                                                  else ()):
            assert raw not in body, (lang, raw)
        assert 'href="/cases/aaaa"' in body


def test_an_early_warning_marks_a_summons_about_to_be_overdue() -> None:
    far = NOW + timedelta(days=3)
    item = {**summons(next_due=far, report_in_due=far, overdue=False),
            "case_id": "0123456789abcdef", "case_title": "甲", "case_category": "land",
            "case_level": "town"}
    page = dict(result=Page(items=[item], total=1, limit=25, offset=0),
                department="xjk-petition", page=1, last_page=1, prev_url=None, next_url=None)
    html = render_template("zh-CN", "inbox.html", **base(**page))
    assert '<tr class="ok">' in html  # three days left, no warning yet
    html = render_template("zh-CN", "inbox.html", **base(
        **page, warned={("0123456789abcdef", "xjk-petition")}))
    assert '<tr class="soon">' in html
    detail = case(summonses=[summons(report_in_due=far, overdue=False)])
    html = render_template("zh-CN", "case.html", **base(
        case=detail, **{**CASE_CONTEXT, "warned": {"xjk-petition"}}))
    assert 'class="badge soon"' in html
