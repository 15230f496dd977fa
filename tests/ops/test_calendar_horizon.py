"""The official calendar's reach on GET /api/v1/health and /metrics (API and worker), and
the gauges of cases needing attention or with provisional deadlines. No Temporal: the app
gets a stand-in client, which none of these requests reaches. Today's date is the wall
clock's here, so the policies give calendar years counted from it."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from fastapi import FastAPI
from sqlmodel import Session

from api.main import create_app
from tests.ops.conftest import free_port
from whistle.db import make_engine
from whistle.models import CaseRecord
from whistle.settings import DATA_DIR, Settings
from worker import serve_metrics

SH = "Asia/Shanghai"


def today() -> date:
    return datetime.now(ZoneInfo(SH)).date()


def policy_through(tmp_path: Path, last_year: int) -> Path:
    """The sample policy with an official arrangement (empty) for every year from this one
    to `last_year`, so the official calendar ends on 31 December of `last_year`."""
    doc = yaml.safe_load((DATA_DIR / "policy.yaml").read_text(encoding="utf-8"))
    doc["calendar"] = {y: {"holidays": [], "workdays": []}
                       for y in range(today().year, last_year + 1)}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", database_url=f"sqlite:///{tmp_path / 'whistle.db'}",
                    policy_file=policy_through(tmp_path, today().year + 3), timezone=SH)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, client=object())  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        yield app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")


def add_case(url: str, case_id: str, *, status: str = "open", provisional: bool = False,
             attention: str | None = None) -> None:
    engine = make_engine(url)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    with Session(engine) as s:
        s.add(CaseRecord(case_id=case_id, title="t", description="d", category="environment",
                         status=status, level="village", owner="jiulong", location="jiulong",
                         jurisdiction_path="/huizhou/huicheng/xiaojinkou/jiulong/",
                         source_channel="walk_in", opened_by="coord", opened_at=at,
                         updated_at=at, provisional=provisional, attention=attention))
        s.commit()
    engine.dispose()


def expected_days() -> int:
    return (date(today().year + 3, 12, 31) - today()).days


async def test_health_says_how_far_the_official_calendar_reaches(app):
    async with client(app) as c:
        r = await c.get("/api/v1/health")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "calendar": {
        "official_until": f"{today().year + 3}-12-31", "days_left": expected_days(),
        "short": False}}


async def test_health_calls_the_calendar_short_when_it_ends_before_the_clocks_do(
        settings, tmp_path):
    # No `calendar:` block and a feedback window of 250 working days (over a year): the
    # package's arrangements, published a year ahead at most, end too soon.
    doc = yaml.safe_load((DATA_DIR / "policy.yaml").read_text(encoding="utf-8"))
    doc["defaults"].pop("feedback_hours")
    doc["defaults"]["feedback_working_days"] = 250
    long_clock = tmp_path / "long-clock.yaml"
    long_clock.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    app = create_app(settings.model_copy(update={"policy_file": long_clock}),
                     client=object())  # type: ignore[arg-type]
    async with app.router.lifespan_context(app), client(app) as c:
        body = (await c.get("/api/v1/health")).json()
    assert body["status"] == "ok" and body["calendar"]["short"] is True
    assert body["calendar"]["days_left"] == (
        date.fromisoformat(body["calendar"]["official_until"]) - today()).days


def gauge(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


async def test_metrics_show_the_calendar_and_the_cases_needing_attention_or_provisional(
        app, settings):
    add_case(settings.database_url, "a1", attention="policy_invalid: ladder")
    add_case(settings.database_url, "a2", attention="calendar_not_covered", provisional=True)
    add_case(settings.database_url, "p1", provisional=True)
    add_case(settings.database_url, "p2", provisional=True, status="awaiting_feedback")
    add_case(settings.database_url, "x1", provisional=True, attention="x", status="closed")
    add_case(settings.database_url, "n1")
    async with client(app) as c:
        text = (await c.get("/metrics")).text
    assert gauge(text, "whistle_calendar_official_until_days") == expected_days()
    assert gauge(text, "whistle_calendar_short") == 0
    assert gauge(text, "whistle_cases_needing_attention") == 2  # open ones only
    assert gauge(text, "whistle_cases_provisional") == 3


async def test_the_calendar_gauge_is_scraped_while_the_database_is_down(app, tmp_path):
    app.state.engine.dispose()
    app.state.engine = make_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    async with client(app) as c:
        text = (await c.get("/metrics")).text
    assert gauge(text, "whistle_read_model_up") == 0
    assert gauge(text, "whistle_calendar_official_until_days") == expected_days()


def test_worker_metrics_show_the_calendar_of_the_policy_file_as_it_is(settings, tmp_path):
    engine = make_engine(settings.database_url)
    port = free_port()
    served = serve_metrics(settings.model_copy(update={"worker_metrics_port": port}), engine)
    assert served is not None
    _runtime, server = served
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()
    assert gauge(text, "whistle_calendar_official_until_days") == expected_days()
