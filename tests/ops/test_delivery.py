"""Notification delivery: a missed clock reaches a webhook exactly once even when the
receiver fails twice first, signed and with the same idempotency key on every attempt; an
email lands in a local SMTP server; running the dispatcher again sends nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities import notify
from tests.conftest import start_time_skipping
from tests.helpers import case_state, start_case
from tests.ops.conftest import Mailbox, Receiver
from whistle import identity
from whistle.channels import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryStatus,
    channels_for,
    new_secret,
    outbox_key,
    verify,
)
from whistle.models import AppUser, NotificationChannel, NotificationDelivery, OutboxMessage
from whistle.settings import Settings
from worker import build_ops_worker, build_worker, start_dispatcher
from workflows.delivery import (
    DeliveryConfig,
    DeliverySummary,
    DeliveryWorkflow,
    dispatcher_id,
)

DEPT = "xjk-petition"


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this module's own, shut down after it. With the shared
    session server, a run of these tests on PostgreSQL left it unable to skip time (the
    case workflow tests after it then waited in real time and failed): whatever a delivery
    test leaves behind goes with its own server."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()
FAST = DeliveryConfig(poll_seconds=1, retry_initial_seconds=0.2, retry_max_seconds=1,
                      max_attempts=5, stop_when_idle=True)


def add_channel(engine: Engine, owner: str, kind: str, target: str,
                secret: str | None = None) -> NotificationChannel:
    with Session(engine, expire_on_commit=False) as s:
        ch = NotificationChannel(owner=owner, kind=kind, target=target, secret=secret,
                                 created_at=datetime.now(UTC))
        s.add(ch)
        s.commit()
        return ch


def outbox(engine: Engine, case_id: str) -> list[OutboxMessage]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id)
                           .order_by(col(OutboxMessage.id))))


async def stop(handle: WorkflowHandle) -> None:
    with contextlib.suppress(RPCError):  # the case may have finished by itself
        await handle.terminate("test over")


async def dispatch(env: WorkflowEnvironment, task_queue: str) -> DeliverySummary:
    return await env.client.execute_workflow(
        DeliveryWorkflow.run, FAST, id=f"delivery-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue, result_type=DeliverySummary)


async def test_a_missed_clock_is_delivered_once_despite_two_failures(
        time_env: WorkflowEnvironment, ops_settings: Settings, ops_engine: Engine,
        receiver: Receiver, mailbox: Mailbox):
    secret = new_secret()
    hook = add_channel(ops_engine, f"department:{DEPT}", "webhook", receiver.url, secret)
    with Session(ops_engine) as s:  # a member of the department gets email too
        identity.create_user(s, username="petition.mail", display_name="信访办值班",
                             role="department", jurisdiction="", department=DEPT)
        s.commit()
    add_channel(ops_engine, "user:petition.mail", "email", "duty@petition.example")
    settings = ops_settings.model_copy(update={"smtp_port": mailbox.port})

    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(time_env.client, settings, executor, ops_engine) as worker, \
                build_ops_worker(time_env.client, settings, executor, ops_engine) as ops:
            state = case_state(ops_engine, [DEPT], category="neighbour")
            handle = await start_case(time_env.client, worker, state)
            await time_env.sleep(timedelta(seconds=90))  # the report-in clock (60 s) is missed
            messages = [m for m in outbox(ops_engine, state.case_id)
                        if m.recipient == f"department:{DEPT}"]
            assert "escalated" in {m.kind for m in messages}, [m.kind for m in messages]
            summary = await dispatch(time_env, ops.task_queue)
            again = await dispatch(time_env, ops.task_queue)
            await stop(handle)

    keys = {outbox_key(m.case_id, m.seq, m.recipient, m.kind) for m in messages}
    assert summary.delivered == 2 * len(messages) and summary.failed == 0
    assert again == DeliverySummary(delivered=0, failed=0)
    # The webhook: three attempts per event (two refused), one success, one key throughout.
    by_key: dict[str, list[int]] = {}
    for r in receiver.requests:
        by_key.setdefault(r.headers[KEY_HEADER.lower()], []).append(r.status)
        assert verify(secret, r.headers[TIMESTAMP_HEADER.lower()], r.body,
                      r.headers[SIGNATURE_HEADER.lower()])
        assert r.json["id"] == r.headers[KEY_HEADER.lower()]
        assert r.json["case_id"] == state.case_id
    assert set(by_key) == keys
    assert all(statuses == [500, 500, 200] for statuses in by_key.values()), by_key
    assert not verify("whsec_wrong", receiver.requests[0].headers[TIMESTAMP_HEADER.lower()],
                      receiver.requests[0].body,
                      receiver.requests[0].headers[SIGNATURE_HEADER.lower()])
    # The email: one per event, its Message-ID the idempotency key.
    assert sorted(m["Message-ID"] for m in mailbox.messages) == \
        sorted(f"<{k}@whistle>" for k in keys)
    assert all(state.case_id in m["Subject"] and m["To"] == "duty@petition.example"
               for m in mailbox.messages)
    # The record: attempts per channel, delivered_at, the outbox row settled.
    with Session(ops_engine) as s:
        rows = list(s.exec(select(NotificationDelivery)))
        assert {r.status for r in rows} == {DeliveryStatus.DELIVERED}
        assert sorted(r.attempts for r in rows if r.channel_id == hook.id) == \
            [3] * len(messages)
        assert all(r.attempts == 1 for r in rows if r.channel_id != hook.id)
        assert all(m.delivered_at is not None for m in outbox(ops_engine, state.case_id))


async def test_a_channel_that_keeps_failing_is_marked_failed_with_its_error(
        time_env: WorkflowEnvironment, ops_settings: Settings, ops_engine: Engine,
        receiver: Receiver):
    receiver.fail_first = 100
    add_channel(ops_engine, f"department:{DEPT}", "webhook", receiver.url, new_secret())
    cfg = DeliveryConfig(poll_seconds=1, retry_initial_seconds=0.1, retry_max_seconds=0.2,
                         max_attempts=3, stop_when_idle=True)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(time_env.client, ops_settings, executor, ops_engine) as worker, \
                build_ops_worker(time_env.client, ops_settings, executor, ops_engine) as ops:
            state = case_state(ops_engine, [DEPT], category="neighbour")
            handle = await start_case(time_env.client, worker, state)
            summary = await time_env.client.execute_workflow(
                DeliveryWorkflow.run, cfg, id=f"delivery-{uuid.uuid4().hex[:8]}",
                task_queue=ops.task_queue, result_type=DeliverySummary)
            await stop(handle)
    with Session(ops_engine) as s:
        rows = list(s.exec(select(NotificationDelivery)))
    assert rows and summary.failed == len(rows) and summary.delivered == 0
    assert all(r.status == DeliveryStatus.FAILED and r.attempts == 3 and
               r.last_error is not None and "HTTP 500" in r.last_error for r in rows)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_user_channel_follows_the_users_department(ops_engine: Engine):
    now = datetime.now(UTC)
    staff = AppUser(username="a", display_name="a", role="department", jurisdiction="x",
                    department=DEPT, created_at=now)
    coord = AppUser(username="b", display_name="b", role="coordinator",
                    jurisdiction="xiaojinkou", created_at=now)
    chans = [NotificationChannel(id=1, owner="user:a", kind="log", target="", created_at=now),
             NotificationChannel(id=2, owner="user:b", kind="log", target="", created_at=now),
             NotificationChannel(id=3, owner=f"department:{DEPT}", kind="log", target="",
                                 active=False, created_at=now)]
    users = {"a": staff, "b": coord}
    assert [c.id for c in channels_for(f"department:{DEPT}", chans, users)] == [1]
    assert [c.id for c in channels_for("centre:xiaojinkou", chans, users)] == [2]
    staff.active = False
    assert channels_for(f"department:{DEPT}", chans, users) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_crash_between_send_and_record_sends_again_with_the_same_key(
        time_env: WorkflowEnvironment, ops_settings: Settings, ops_engine: Engine,
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch):
    """At least once, never lost: the send went out, the process died before the row said
    so; the retry sends again, and the receiver can tell the repeat by its key."""
    receiver.fail_first = 0
    add_channel(ops_engine, f"department:{DEPT}", "webhook", receiver.url, new_secret())
    with Session(ops_engine) as s:
        s.add(OutboxMessage(case_id="0123456789abcdef", seq=2, recipient=f"department:{DEPT}",
                            kind="summoned", text="案件 0123456789abcdef：吹哨",
                            created_at=datetime.now(UTC)))
        s.commit()
    settle = notify._settle_message
    crashed: list[int | None] = []

    def crash_once(session: Session, message_id: int | None) -> None:
        if not crashed:
            crashed.append(message_id)
            raise RuntimeError("worker died after the send")
        settle(session, message_id)

    monkeypatch.setattr(notify, "_settle_message", crash_once)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_ops_worker(time_env.client, ops_settings, executor, ops_engine) as ops:
            summary = await dispatch(time_env, ops.task_queue)
    keys = [r.headers[KEY_HEADER.lower()] for r in receiver.requests]
    assert crashed and summary.delivered == 1
    assert len(keys) == 2 and len(set(keys)) == 1
    assert keys[0] == outbox_key("0123456789abcdef", 2, f"department:{DEPT}", "summoned")
    with Session(ops_engine) as s:
        (row,) = s.exec(select(NotificationDelivery)).all()
    assert row.status == DeliveryStatus.DELIVERED and row.attempts == 2


@pytest.mark.devserver
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_dispatcher_is_started_once_keeps_running_and_continues_as_new(
        dev_env: WorkflowEnvironment, ops_settings: Settings, ops_engine: Engine,
        receiver: Receiver):
    receiver.fail_first = 0
    add_channel(ops_engine, f"department:{DEPT}", "webhook", receiver.url, new_secret())
    cfg = DeliveryConfig(poll_seconds=0.5, claims_per_run=3)
    client = dev_env.client
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_ops_worker(client, ops_settings, executor, ops_engine) as ops:
            await start_dispatcher(client, cfg, ops.task_queue)
            await start_dispatcher(client, cfg, ops.task_queue)  # a second worker attaches
            handle = client.get_workflow_handle(dispatcher_id(ops.task_queue))
            first = (await handle.describe()).run_id
            try:
                await _deliver_one(ops_engine, 1)
                for _ in range(80):  # three claims of half a second, then a new run
                    if (await handle.describe()).run_id != first:
                        break
                    await asyncio.sleep(0.25)
                assert (await handle.describe()).run_id != first, "no continue-as-new"
                await _deliver_one(ops_engine, 2)  # the new run delivers too
            finally:
                await handle.terminate("test over")
    assert len(receiver.requests) == 2


async def _deliver_one(engine: Engine, seq: int) -> None:
    with Session(engine) as s:
        s.add(OutboxMessage(case_id="0123456789abcdef", seq=seq, recipient=f"department:{DEPT}",
                            kind="summoned", text="吹哨", created_at=datetime.now(UTC)))
        s.commit()
    for _ in range(80):
        if all(m.delivered_at for m in outbox(engine, "0123456789abcdef")):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"message {seq} not delivered")
