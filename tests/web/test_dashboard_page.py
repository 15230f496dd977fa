"""The dashboard page (/dashboard) through HTTP, on SQLite and PostgreSQL: who may see it,
that it shows only the viewer's area, the period filter, the charts, escaping, and both
languages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlmodel import Session

from api.web.core import Names, render_template
from api.web.dashboard import PeriodChoice, charts, rate_text
from tests.test_kpi import case, summons
from tests.web.conftest import Site
from whistle.domain import Role
from whistle.kpi import Kpis, OverdueSummons, Period, Rate, Rates

NOW = datetime.now(UTC)
H = timedelta(hours=1)
JIULONG = "/huizhou/huicheng/xiaojinkou/jiulong/"
DALIANG = "/huizhou/huicheng/ruhu/daliang/"


@pytest.fixture
def seeded(site: Site) -> Site:
    """Xiaojinkou: one case 3 days old (petition on time, land office overdue now, its
    title trying to inject markup), one 60 days old. Ruhu: one case."""
    recent, old = NOW - 72 * H, NOW - 60 * 24 * H
    a = case("A", JIULONG, recent, status="open")
    a.title = "<script>alert(1)</script>九龙村土地纠纷"
    with Session(site.engine) as s:
        s.add_all([
            a,
            summons("A", "xjk-petition", recent, status="signed_off", reported=H, signed=2 * H),
            summons("A", "xjk-land-office", recent, status="summoned"),
            case("B", JIULONG, old, category="neighbour", status="closed",
                 outcome="mediated_agreement", satisfaction="satisfied"),
            case("R", DALIANG, recent, category="family"),
            summons("R", "xjk-police", recent, status="summoned"),
        ])
        s.commit()
    return site


async def test_coordinator_sees_figures_charts_and_overdue_of_their_area_in_chinese(
        seeded: Site) -> None:
    coord = seeded.signed_in("coord.t", "coordinator", "xiaojinkou")
    r = await coord.get("/dashboard")
    assert r.status_code == 200
    html = r.text
    assert "按时报到率" in html and "各部门按时报到率" in html
    assert '<dd id="kpi-cases">1</dd>' in html  # last 30 days: A only (B is older, R is Ruhu)
    assert '<dd id="kpi-report-in">50% (1/2)</dd>' in html
    assert '<dd id="kpi-overdue">1</dd>' in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img"') == 6
    assert "小金口街道" in html and "汝湖镇" not in html  # by town: only their own
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;九龙村土地纠纷" in html
    assert 'href="/cases/A"' in html  # the overdue list links the case


async def test_the_period_filter_widens_and_bad_dates_are_named_next_to_the_field(
        seeded: Site) -> None:
    coord = seeded.signed_in("coord.t", "coordinator", "xiaojinkou")
    wide = (await coord.get("/dashboard?days=90")).text
    assert '<dd id="kpi-cases">2</dd>' in wide and '<dd id="kpi-resolution">100% (1/1)</dd>' in wide
    start = (NOW - 61 * 24 * H).date().isoformat()
    end = (NOW - 50 * 24 * H).date().isoformat()
    dated = (await coord.get(f"/dashboard?start={start}&end={end}")).text
    assert '<dd id="kpi-cases">1</dd>' in dated and f'value="{start}"' in dated
    bad = await coord.get("/dashboard?start=2026-02-30&end=2026-01-01")
    assert bad.status_code == 200
    assert 'id="start-error">请按 YYYY-MM-DD 格式填写日期。</span>' in bad.text
    backwards = (await coord.get("/dashboard?start=2026-03-01&end=2026-01-01")).text
    assert 'id="end-error">结束日期早于开始日期。</span>' in backwards


async def test_in_english_after_the_switch(seeded: Site) -> None:
    coord = seeded.signed_in("coord.e", "coordinator", "xiaojinkou", lang="en")
    html = (await coord.get("/dashboard")).text
    assert "On-time report-in rate by department" in html and "Overdue now" in html
    assert "按时报到率" not in html


async def test_an_auditor_sees_every_area_and_department_staff_are_refused(
        seeded: Site) -> None:
    auditor = seeded.signed_in("aud.t", "auditor", "huizhou")
    html = (await auditor.get("/dashboard")).text
    assert '<dd id="kpi-cases">2</dd>' in html and "汝湖镇" in html
    staff = seeded.signed_in("land.t", "department", "xiaojinkou", department="xjk-land-office")
    assert (await staff.get("/dashboard")).status_code == 403
    anonymous = seeded.browser()
    r = await anonymous.get("/dashboard")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


async def test_an_empty_read_model_shows_dashes_not_errors(site: Site) -> None:
    coord = site.signed_in("coord.t", "coordinator", "xiaojinkou")
    r = await coord.get("/dashboard")
    assert r.status_code == 200
    assert '<dd id="kpi-report-in">—</dd>' in r.text
    assert "本期间暂无可统计数据。" in r.text and "暂无超期事项。" in r.text


def test_dashboard_template_by_name_and_context() -> None:
    """The template alone: figures, a "—" for 0/0, the overdue row with its ladder step, in
    both languages (no app, no database)."""
    period = Period(NOW - 30 * 24 * H, NOW)
    k = Kpis(period=period, now=NOW, cases=3,
             overall=Rates("all", Rate(3, 4), Rate(0, 0), Rate(1, 2), Rate(2, 2)),
             by_department=[Rates("xjk-land-office", Rate(0, 1))],
             by_town=[Rates("xiaojinkou", Rate(3, 4))], by_category={"land": 3},
             by_level={"town": 3},
             overdue=[OverdueSummons("c1", "九龙村纠纷", "land", "town", "xiaojinkou",
                                     "xjk-land-office", "report_in", NOW - 2 * H, "raise")],
             overdue_total=120)
    names = Names({"xjk-land-office": "小金口国土所"}, {"xiaojinkou": "小金口街道"},
                  {"land": "土地权属"})
    who = SimpleNamespace(display_name="陈协调", role=Role.COORDINATOR, username="coord")
    for lang, words in (("zh-CN", ["按时报到率", "提级", "小金口国土所", "土地权属",
                                   "超期时间最长的 1 项（共 120 项）"]),
                        ("en", ["On-time report-in rate", "Raised a level", "Cases by level"])):
        html = render_template(
            lang, "dashboard.html", who=who, nav=[], csrf_token="c" * 64,
            csrf_field="csrf_token", flash=None, here="/dashboard", tz="Asia/Shanghai",
            now=NOW, names=names, k=k, period_days=(7, 30),
            choice=PeriodChoice(period, 30, "", "", {}), charts=charts(k, names, lang),
            rate_text=rate_text, period_end_shown=NOW)
        assert '<dd id="kpi-report-in">75% (3/4)</dd>' in html
        assert '<dd id="kpi-sign-off">—</dd>' in html
        assert 'href="/cases/c1"' in html and 'class="overdue"' in html
        assert '<dd id="kpi-overdue">120</dd>' in html
        for word in words:
            assert word in html, (lang, word)
