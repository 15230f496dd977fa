"""Metrics and logs: /metrics on the API (request metrics by route template, the business
gauges, scraping allowed only as configured), /metrics on the worker (the Temporal SDK's
runtime metrics re-exported with the business gauges), and JSON log lines carrying the
case id."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from api.main import create_app
from tests.api.test_cases_api import INTAKE
from tests.helpers import TestUsers, case_state, start_case
from tests.ops.conftest import free_port
from whistle.logs import CaseIdFilter, JsonFormatter, case_context
from whistle.settings import Settings
from worker import build_worker, serve_metrics


async def test_api_metrics_count_requests_by_route_and_show_the_business_gauges(
        api: httpx.AsyncClient):
    opened = await api.post("/api/v1/cases", json=INTAKE)
    assert opened.status_code == 201, opened.text
    case_id = opened.json()["case_id"]
    assert (await api.get(f"/api/v1/cases/{case_id}")).status_code == 200
    r = await api.get("/metrics")  # the test client counts as this host (127.0.0.1)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert ('whistle_http_requests_total{method="GET",route="/api/v1/cases/{case_id}",'
            'status="200"} 1.0') in text
    assert 'whistle_http_requests_total{method="POST",route="/api/v1/cases",' \
           'status="201"} 1.0' in text
    assert "whistle_http_request_duration_seconds_bucket" in text
    assert f'whistle_open_cases{{level="{INTAKE["level"]}"}} 1.0' in text
    assert "whistle_escalations{day=" in text and "whistle_read_model_up 1.0" in text
    assert "/metrics" not in {p for p in (await api.get("/openapi.json")).json()["paths"]}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_api_metrics_need_the_token_when_one_is_set(settings: Settings,
                                                          dev_env: WorkflowEnvironment):
    app = create_app(settings.model_copy(update={"metrics_token": SecretStr("scrape-me")}),
                     client=dev_env.client)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://w") as c:
        assert (await c.get("/metrics")).status_code == 404
        assert (await c.get("/metrics", headers={"Authorization": "Bearer nope"})
                ).status_code == 404
        ok = await c.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200 and "whistle_open_cases" in ok.text
    app = create_app(settings, client=dev_env.client)  # no token: this host only
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 5000)),
            base_url="http://w") as c:
        assert (await c.get("/metrics")).status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_worker_metrics_have_the_sdk_runtime_and_the_business_gauges(
        dev_env: WorkflowEnvironment, ops_settings: Settings, ops_engine: Engine):
    port = free_port()
    settings = ops_settings.model_copy(update={"worker_metrics_port": port})
    served = serve_metrics(settings, ops_engine)
    assert served is not None
    runtime, server = served
    try:
        client = await Client.connect(dev_env.client.service_client.config.target_host,
                                      runtime=runtime, data_converter=pydantic_data_converter)
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with build_worker(client, settings, executor, ops_engine) as worker:
                await start_case(client, worker, case_state(ops_engine, ["xjk-petition"]))
                text = await asyncio.to_thread(_scrape, f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert 'whistle_open_cases{level="town"} 1.0' in text
    assert "temporal_workflow_completed" in text or "temporal_request" in text, text[:2000]
    assert "temporal_activity_execution_latency" in text or \
        "temporal_activity_schedule_to_start_latency" in text


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _json_line(record: logging.LogRecord) -> dict[str, object]:
    CaseIdFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_json_log_lines_carry_the_case_id_from_temporal_context_or_the_request():
    rec = logging.LogRecord("whistle.x", logging.INFO, __file__, 1, "step %s", ("ok",), None)
    rec.temporal_activity = {"workflow_id": "whistle-case-0123456789abcdef",  # type: ignore[attr-defined]
                             "activity_type": "project_case"}
    line = _json_line(rec)
    assert line["case_id"] == "0123456789abcdef" and line["message"] == "step ok"
    assert line["level"] == "INFO" and line["logger"] == "whistle.x"
    assert line["temporal_activity"] == rec.temporal_activity  # type: ignore[attr-defined]
    with case_context("fedcba9876543210"):
        plain = logging.LogRecord("api", logging.WARNING, __file__, 1, "m", None, None)
        assert _json_line(plain)["case_id"] == "fedcba9876543210"
    outside = logging.LogRecord("api", logging.WARNING, __file__, 1, "m", None, None)
    assert _json_line(outside)["case_id"] is None


def test_a_module_logger_line_inside_a_case_activity_carries_its_case_id():
    """Activities log through their modules' loggers too (activities/case.py), whose
    records carry no Temporal context: the running activity's workflow id gives the case."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="whistle-case-00112233aabbccdd")

    def log_a_line() -> dict:
        rec = logging.LogRecord("activities.case", logging.INFO, __file__, 1, "m", None, None)
        return _json_line(rec)

    assert env.run(log_a_line)["case_id"] == "00112233aabbccdd"


async def test_api_log_lines_during_a_case_request_carry_its_case_id(
        api: httpx.AsyncClient, users: TestUsers, caplog: pytest.LogCaptureFixture):
    opened = await api.post("/api/v1/cases", json=INTAKE)
    case_id = opened.json()["case_id"]
    caplog.handler.addFilter(CaseIdFilter())
    with caplog.at_level(logging.WARNING, logger="whistle.access"):
        denied = await api.post(f"/api/v1/cases/{case_id}/outcome", json={
            "kind": "withdrawn", "summary": "x"}, headers=users.headers(
                "o.grid", "grid_worker", "jiulong-grid-1"))
    assert denied.status_code == 403
    lines = [r for r in caplog.records if r.name == "whistle.access"]
    assert lines and all(r.case_id == case_id for r in lines)  # type: ignore[attr-defined]
