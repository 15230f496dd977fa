"""The official calendar's horizon (whistle/horizon.py) and the operator commands around it:
`whistle check-policy` (prints the horizon, warns when short), `whistle preview` (marks a
provisional due) and `whistle recompute-deadlines` (which cases it picks, how it reports
each answer; against a SQLite read model and a stand-in Temporal client — the real server
run is in tests/workflows). Fixed dates only, never today's: a provisional year is one far
ahead (2090), so no release of chinese-calendar changes the answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

import whistlectl
from tests.conftest import prepare_read_model
from whistle.db import make_engine
from whistle.domain import RecomputeDeadlines, RetryPlanning, StepResult, workflow_id
from whistle.horizon import calendar_horizon
from whistle.models import CaseRecord
from whistle.policy import load_policy
from whistle.settings import DATA_DIR, get_settings

SH = "Asia/Shanghai"
LADDER = [{"action": "remind", "after_hours": 0}]


def noon(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 12, tzinfo=ZoneInfo(SH))


def policy_file(tmp_path: Path, *, calendar: dict[int, Any] | None = None,
                categories: dict[str, Any] | None = None, hours: float | None = None) -> Path:
    """A small policy: hour clocks (all `hours` long, if given), neighbour cases with ten
    days to sign off (unless `categories` says otherwise)."""
    clocks = {"report_in_hours": 24, "sign_off_hours": 120, "feedback_hours": 168}
    doc = {"version": "horizon-test",
           "defaults": {**{k: hours or v for k, v in clocks.items()},
                        "max_reopens": 1, "ladder": LADDER},
           "categories": categories if categories is not None
           else {"neighbour": {"lead": "justice", "sign_off_hours": 240}},
           "calendar": calendar or {}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


# --- the pure function ------------------------------------------------------------------------


def test_horizon_is_long_when_the_official_year_outlasts_the_longest_clock_by_30_days(tmp_path):
    policy = load_policy(policy_file(tmp_path, calendar={2090: {}}))
    h = calendar_horizon(policy, noon(2090, 11, 15), SH)
    assert h.official_until == date(2090, 12, 31) and h.days_left == 46
    assert (h.latest_due, h.latest_clock) == (date(2090, 11, 25), "categories.neighbour.sign_off")
    assert not h.short  # 25 Nov + 30 days = 25 Dec, before 31 Dec


def test_horizon_is_short_once_the_longest_clock_plus_30_days_passes_the_official_year(
        tmp_path):
    policy = load_policy(policy_file(tmp_path, calendar={2090: {}}))
    h = calendar_horizon(policy, noon(2090, 12, 5), SH)
    assert h.latest_due == date(2090, 12, 15) and h.days_left == 26
    assert h.short and h.next_year == 2091  # 15 Dec + 30 days = 14 Jan 2091


def test_horizon_follows_an_unbroken_run_of_official_years(tmp_path):
    policy = load_policy(policy_file(tmp_path, calendar={2090: {}, 2091: {}, 2093: {}}))
    h = calendar_horizon(policy, noon(2090, 12, 5), SH)
    assert h.official_until == date(2091, 12, 31) and not h.short  # 2092 missing: stops


def test_a_year_without_arrangement_points_back_to_the_last_official_day(tmp_path):
    h = calendar_horizon(load_policy(policy_file(tmp_path)), noon(2090, 6, 1), SH)
    assert h.official_until is not None and h.official_until.year < 2090  # the package's last
    assert h.days_left is not None and h.days_left < 0
    assert h.short and h.next_year == h.official_until.year + 1


def test_working_day_clocks_count_on_the_policy_calendar(tmp_path):
    # Friday 2 June 2090 + 1 working day: Monday 5 June, unless the policy makes it a holiday.
    land = {"land": {"lead": "petition", "sign_off_working_days": 1}}
    plain = load_policy(policy_file(tmp_path, categories=land, hours=1))
    h = calendar_horizon(plain, noon(2090, 6, 2), SH)
    assert (h.latest_due, h.latest_clock) == (date(2090, 6, 5), "categories.land.sign_off")
    arranged = load_policy(policy_file(tmp_path, categories=land, hours=1,
                                       calendar={2090: {"holidays": [date(2090, 6, 5)]}}))
    assert calendar_horizon(arranged, noon(2090, 6, 2), SH).latest_due == date(2090, 6, 6)


def test_today_is_the_day_in_the_deployment_time_zone(tmp_path):
    policy = load_policy(policy_file(tmp_path, calendar={2090: {}, 2091: {}}))
    late = datetime(2090, 12, 31, 20, tzinfo=UTC)  # already 1 January 2091 in Shanghai
    assert calendar_horizon(policy, late, SH).today == date(2091, 1, 1)
    assert calendar_horizon(policy, late, "UTC").today == date(2090, 12, 31)


# --- whistle check-policy --------------------------------------------------------------------


def test_check_policy_prints_a_long_horizon_without_warning(tmp_path, capsys):
    path = policy_file(tmp_path, calendar={2090: {}, 2091: {}})
    assert whistlectl.main(["check-policy", str(path), "--today", "2090-12-05"]) == 0
    out = capsys.readouterr().out
    assert "official calendar until 2091-12-31 (391 days left)" in out
    assert "latest due of a case opened today: 2090-12-15 (categories.neighbour.sign_off)" in out
    assert "WARNING" not in out


def test_check_policy_warns_when_the_official_calendar_is_short_and_says_what_to_do(
        tmp_path, capsys):
    path = policy_file(tmp_path, calendar={2090: {}})
    assert whistlectl.main(["check-policy", str(path), "--today", "2090-12-05"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: version horizon-test+")
    assert "official calendar until 2090-12-31 (26 days left)" in out
    warning = next(line for line in out.splitlines() if line.startswith("WARNING:"))
    assert "2091 under `calendar:`" in warning and str(path) in warning
    assert "upgrade chinese-calendar" in warning and "whistle recompute-deadlines" in warning


def test_check_policy_of_the_shipped_policy_prints_the_horizon(capsys):
    assert whistlectl.main(["check-policy", str(DATA_DIR / "policy.yaml")]) == 0
    out = capsys.readouterr().out
    assert "official calendar until " in out and "latest due of a case opened today" in out


# --- whistle preview -------------------------------------------------------------------------


@pytest.fixture
def read_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A SQLite read model with the sample reference data, as the CLI's database."""
    url = f"sqlite:///{tmp_path / 'whistle.db'}"
    prepare_read_model(url)
    monkeypatch.setenv("WHISTLE_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def preview(capsys: pytest.CaptureFixture[str], start: str, *extra: str) -> dict[str, str]:
    """`whistle preview` for an environment case at Jiulong: its due lines by name."""
    code = whistlectl.main(["preview", "--category", "environment", "--location", "jiulong",
                            "--start", start, *extra])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = [line.strip() for line in out.out.splitlines()]
    return {name: next(line for line in lines if line.startswith(name))
            for name in ("report-in due", "sign-off due")}


def test_preview_runs_into_2027_whatever_the_calendar_knows(read_model, capsys):
    for start in ("2026-12-28T10:00:00+08:00", "2027-06-01T10:00:00+08:00"):
        assert preview(capsys, start)["sign-off due"].startswith("sign-off due   2027-")


def test_preview_marks_a_due_counted_over_a_provisional_year(read_model, capsys, tmp_path):
    dues = preview(capsys, "2090-06-01T10:00:00+08:00")
    # report-in is in hours: never provisional; sign-off counts 10 working days of 2090
    assert dues["report-in due"] == "report-in due  2090-06-02T10:00:00+08:00"
    assert dues["sign-off due"].endswith("(暂定 provisional)")
    doc = yaml.safe_load((DATA_DIR / "policy.yaml").read_text(encoding="utf-8"))
    doc["calendar"] = {2090: {"holidays": [], "workdays": []}}  # now official
    official = tmp_path / "official.yaml"
    official.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    dues = preview(capsys, "2090-06-01T10:00:00+08:00", "--policy", str(official))
    assert "provisional" not in dues["sign-off due"]


# --- whistle recompute-deadlines --------------------------------------------------------------


def add_case(url: str, case_id: str, *, status: str = "open", provisional: bool = False,
             attention: str | None = None, opened: int = 0) -> None:
    engine = make_engine(url)
    at = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(hours=opened)
    with Session(engine) as s:
        s.add(CaseRecord(case_id=case_id, title="t", description="d", category="environment",
                         status=status, level="village", owner="jiulong", location="jiulong",
                         jurisdiction_path="/huizhou/huicheng/xiaojinkou/jiulong/",
                         source_channel="walk_in", opened_by="coord", opened_at=at,
                         updated_at=at, provisional=provisional, attention=attention,
                         attention_since=at if attention else None))
        s.commit()
    engine.dispose()


class StandIn:
    """A Temporal client stand-in: each (case, Update) answers as `answers` says (a
    StepResult, or an exception to raise); it records what was sent."""

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers, self.sent = answers, []

    def get_workflow_handle(self, wid: str) -> Any:
        client = self

        class Handle:
            async def execute_update(self, update: Any, arg: Any, **_: Any) -> Any:
                client.sent.append((wid, update.__name__, arg))
                answer = client.answers[(wid.removeprefix("whistle-case-"), update.__name__)]
                if isinstance(answer, BaseException):
                    raise answer
                return answer

        return Handle()


def refused(code: str, message: str) -> WorkflowUpdateFailedError:
    return WorkflowUpdateFailedError(ApplicationError(message, type=code, non_retryable=True))


def ok(case_id: str, seq: int) -> StepResult:
    return StepResult(case_id=case_id, seq=seq, status="open", level="village")


@pytest.fixture
def cases(read_model: str) -> str:
    add_case(read_model, "c1provisional", provisional=True, opened=1)
    add_case(read_model, "c2stuck", attention="policy_invalid: ladder", opened=2)
    add_case(read_model, "c3both", provisional=True, attention="calendar", opened=3)
    add_case(read_model, "c4unchanged", provisional=True, opened=4)
    add_case(read_model, "c5gone", provisional=True, opened=5)
    add_case(read_model, "c6closed", status="closed", provisional=True, attention="x")
    add_case(read_model, "c7fine", status="awaiting_feedback")
    return read_model


def test_recompute_picks_open_cases_that_are_provisional_or_need_attention(cases):
    engine = make_engine(cases)
    with Session(engine) as session:
        picked = {p.case_id: p.steps for p in whistlectl.pending_cases(session)}
    engine.dispose()
    assert picked == {"c1provisional": ("recompute",), "c2stuck": ("retry",),
                      "c3both": ("retry", "recompute"), "c4unchanged": ("recompute",),
                      "c5gone": ("recompute",)}


def test_recompute_dry_run_lists_and_sends_nothing(cases, capsys, monkeypatch):
    async def no_client(settings: Any) -> Any:
        raise AssertionError("a dry run must not connect")

    monkeypatch.setattr(whistlectl, "connect", no_client)
    assert whistlectl.main(["recompute-deadlines", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "c2stuck  would retry planning  (needs attention: policy_invalid: ladder)" in out
    assert "c1provisional  would recompute deadlines" in out and "c6closed" not in out
    assert out.rstrip().endswith("dry run: 2 case(s) to retry, 4 to recompute; nothing sent")


def test_recompute_reports_each_answer_and_fails_only_for_an_unreachable_case(
        cases, capsys, monkeypatch):
    stand_in = StandIn({
        ("c1provisional", "recompute_deadlines"): ok("c1provisional", 12),
        ("c2stuck", "retry_planning"): refused("planning_failed",
                                               "planning failed again: policy_invalid"),
        ("c3both", "retry_planning"): ok("c3both", 7),
        ("c3both", "recompute_deadlines"): refused("nothing_provisional", "no provisional"),
        ("c4unchanged", "recompute_deadlines"): refused("deadlines_unchanged", "stays"),
        ("c5gone", "recompute_deadlines"): RPCError("workflow not found",
                                                    RPCStatusCode.NOT_FOUND, b""),
    })

    async def connect(settings: Any) -> Any:
        return stand_in

    monkeypatch.setattr(whistlectl, "connect", connect)
    code = whistlectl.main(["recompute-deadlines", "--actor", "operator:li",
                            "--reason", "国办发明电〔2090〕1号"])
    out = capsys.readouterr().out
    assert code == 1  # c5gone could not be reached
    lines = out.splitlines()
    assert "c1provisional  recompute deadlines  moved  (seq 12)" in lines
    assert ("c2stuck  retry planning       still failing  (planning_failed: planning failed "
            "again: policy_invalid)") in lines
    assert "c3both  retry planning       resumed  (seq 7)" in lines
    assert ("c3both  recompute deadlines  unchanged  (nothing_provisional: no provisional)"
            in lines)
    assert "c4unchanged  recompute deadlines  unchanged  (deadlines_unchanged: stays)" in lines
    assert "c5gone  recompute deadlines  not reached  (NOT_FOUND: workflow not found)" in lines
    assert lines[-1] == ("5 case(s): 1 moved, 1 resumed, 2 unchanged, 1 still failing, "
                         "1 not reached")
    sent = {(wid, name): arg for wid, name, arg in stand_in.sent}
    assert sent[(workflow_id("c1provisional"), "recompute_deadlines")] == RecomputeDeadlines(
        actor="operator:li", reason="国办发明电〔2090〕1号")
    assert sent[(workflow_id("c2stuck"), "retry_planning")] == RetryPlanning(actor="operator:li")
    # a case whose planning still fails is not also recomputed
    assert (workflow_id("c2stuck"), "recompute_deadlines") not in sent


def test_recompute_exits_0_when_every_case_answered(read_model, capsys, monkeypatch):
    add_case(read_model, "c1", provisional=True)
    stand_in = StandIn({("c1", "recompute_deadlines"): refused("deadlines_unchanged", "same")})

    async def connect(settings: Any) -> Any:
        return stand_in

    monkeypatch.setattr(whistlectl, "connect", connect)
    monkeypatch.setattr(whistlectl.getpass, "getuser", lambda: "wang")
    assert whistlectl.main(["recompute-deadlines"]) == 0
    assert stand_in.sent[0][2].actor == "operator:wang"
    assert capsys.readouterr().out.splitlines()[-1].startswith("1 case(s): 0 moved")
