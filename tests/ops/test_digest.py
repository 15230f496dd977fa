"""Work-meeting digests: the digest workflow counts a centre's cases and stores the digest,
queues it on the centre's channels, and the API shows it and its CSV; the worker's
schedules are created idempotently and a triggered schedule stores a digest."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Schedule, ScheduleCalendarSpec
from temporalio.testing import WorkflowEnvironment

from tests.helpers import TestUsers, case_state, start_case
from tests.ops.conftest import Receiver, write_policy
from tests.ops.test_delivery import add_channel, stop
from whistle import digests
from whistle.channels import new_secret
from whistle.models import CaseEventRecord, CaseRecord, DigestRecord
from whistle.settings import Settings
from worker import build_ops_worker, build_worker, ensure_digest_schedules, schedule_id
from workflows.delivery import DeliveryConfig, DeliverySummary, DeliveryWorkflow
from workflows.digest import DigestRequest, DigestWorkflow

DEPT = "xjk-petition"


@pytest.mark.devserver
async def test_the_digest_counts_the_centres_cases_and_goes_to_its_channels(
        dev_env: WorkflowEnvironment, ops_settings: Settings, ops_engine: Engine,
        receiver: Receiver):
    """On the dev server (real time): a 2-second report-in clock is missed for real."""
    write_policy(ops_settings.policy_file, {"neighbour": 2})
    receiver.fail_first = 0
    add_channel(ops_engine, "centre:xiaojinkou", "webhook", receiver.url, new_secret())
    client = dev_env.client
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(client, ops_settings, executor, ops_engine) as worker, \
                build_ops_worker(client, ops_settings, executor, ops_engine) as ops:
            late = await start_case(client, worker, case_state(
                ops_engine, [DEPT], category="neighbour"))  # misses its 2 s clock
            fine = await start_case(client, worker, case_state(
                ops_engine, [DEPT], category="land"))
            await _wait_until_overdue(ops_engine, late.id.removeprefix("whistle-case-"))
            digest_id = await client.execute_workflow(
                DigestWorkflow.run, DigestRequest(centre="xiaojinkou", period_days=7),
                id=f"digest-{uuid.uuid4().hex[:8]}", task_queue=ops.task_queue,
                result_type=int)
            summary = await client.execute_workflow(
                DeliveryWorkflow.run, DeliveryConfig(poll_seconds=1, stop_when_idle=True),
                id=f"delivery-{uuid.uuid4().hex[:8]}", task_queue=ops.task_queue,
                result_type=DeliverySummary)
            for h in (late, fine):
                await stop(h)
    with Session(ops_engine) as s:
        d = s.get(DigestRecord, digest_id)
        assert d is not None
    assert d.centre == "xiaojinkou" and d.period_end - d.period_start == timedelta(days=7)
    assert {k: d.counts[k] for k in digests.COUNTS} == \
        {"new": 2, "open": 2, "overdue": 1, "escalated": 1, "closed": 0}
    assert d.counts["summonses"] == 2
    assert {c["case_id"] for c in d.cases} == {late.id.removeprefix("whistle-case-"),
                                               fine.id.removeprefix("whistle-case-")}
    sent = [r.json for r in receiver.requests if r.json["type"] == "digest"]
    assert summary.failed == 0 and len(sent) == 1
    assert sent[0]["digest_id"] == digest_id and sent[0]["counts"]["overdue"] == 1
    assert "工作例会 xiaojinkou" in sent[0]["text"]


async def test_digests_are_listed_shown_and_downloaded_by_area(
        api: httpx.AsyncClient, settings: Settings, users: TestUsers):
    from whistle.db import make_engine

    engine = make_engine(settings.database_url)
    end = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    with Session(engine) as s:
        town = digests.build(s, "xiaojinkou", end - timedelta(days=7), end)
        other = digests.build(s, "ruhu", end - timedelta(days=7), end)
        assert digests.build(s, "xiaojinkou", end - timedelta(days=7), end) == town
        s.commit()
    engine.dispose()
    coord = users.headers("d.coord", "coordinator", "xiaojinkou")
    listed = await api.get("/api/v1/digests", headers=coord)
    assert listed.status_code == 200, listed.text
    assert [d["id"] for d in listed.json()["items"]] == [town]
    shown = await api.get(f"/api/v1/digests/{town}", headers=coord)
    assert shown.status_code == 200 and shown.json()["counts"]["new"] == 0
    got = await api.get(f"/api/v1/digests/{town}.csv", headers=coord)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0] == ["metric", "value"] and ["centre", "xiaojinkou"] in rows
    assert list(digests.CSV_COLUMNS) in rows
    denied = await api.get(f"/api/v1/digests/{other}.csv", headers=coord)
    assert denied.status_code == 403 and "ruhu" in denied.json()["message"]
    auditor = users.headers("d.auditor", "auditor", "huizhou")
    assert (await api.get("/api/v1/digests", headers=auditor)).json()["total"] == 2
    assert (await api.get("/api/v1/digests/999999", headers=auditor)).status_code == 404


async def _wait_until_overdue(engine: Engine, case_id: str, seconds: float = 30) -> None:
    for _ in range(int(seconds * 4)):
        with Session(engine) as s:
            case = s.get(CaseRecord, case_id)
            escalated = s.exec(select(CaseEventRecord).where(
                CaseEventRecord.case_id == case_id,
                CaseEventRecord.kind == "escalated")).first()
        if case is not None and case.overdue and escalated is not None:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"case {case_id} not overdue after {seconds} s")


async def _wait_for_digest(engine: Engine, centre: str, seconds: float = 30) -> DigestRecord:
    for _ in range(int(seconds * 4)):
        with Session(engine) as s:
            found = s.exec(select(DigestRecord).where(DigestRecord.centre == centre)).first()
        if found is not None:
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"no digest for {centre} after {seconds} s")


@pytest.mark.devserver
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_schedules_are_made_idempotently_and_a_triggered_one_stores_a_digest(
        dev_env: WorkflowEnvironment, ops_settings: Settings, ops_engine: Engine):
    centre = "ruhu"
    client = dev_env.client
    options = {"task_queue": ops_settings.ops_task_queue, "period_days": 7,
               "cron": "0 8 * * 1", "interval": None, "time_zone": "Asia/Shanghai"}
    try:
        assert await ensure_digest_schedules(client, [centre], **options) == \
            [schedule_id(centre)]
        # a changed setting (here: the centre's own cron) updates the schedule in place
        await ensure_digest_schedules(client, [centre], cron_by_centre={centre: "30 9 * * 5"},
                                      **options)
        handle = client.get_schedule_handle(schedule_id(centre))
        desc = await handle.describe()
        schedule: Schedule = desc.schedule
        assert schedule.spec.time_zone_name == "Asia/Shanghai"
        cal: ScheduleCalendarSpec = schedule.spec.calendars[0]  # the server parses the cron
        assert cal.hour[0].start == 9 and cal.minute[0].start == 30
        for _ in range(40):  # schedules are listed through visibility: eventually
            listed = [s.id async for s in await client.list_schedules()]
            if schedule_id(centre) in listed:
                break
            await asyncio.sleep(0.25)
        assert schedule_id(centre) in listed
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with build_ops_worker(client, ops_settings, executor, ops_engine):
                await handle.trigger()
                digest = await _wait_for_digest(ops_engine, centre)
        assert digest.centre_path.endswith("/ruhu/")
    finally:
        await client.get_schedule_handle(schedule_id(centre)).delete()
