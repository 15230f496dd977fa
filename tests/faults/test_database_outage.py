"""The read model cannot be written for 35 s under load: a connection of the test holds
SQLite's write lock (BEGIN EXCLUSIVE), so every write waits out the 30 s busy timeout of
whistle.db.make_engine and fails with "database is locked". Projections fail and are
retried by the worker (whose wait is that busy timeout); once the lock is gone every
case catches up, nothing lost, nothing doubled. Meanwhile the API keeps serving reads (WAL
readers are not blocked; a token's first use, which records itself, still reads), a request
that must write answers 503 database_unavailable within the API's short wait
(api.main.DB_WAIT_SECONDS) instead of hanging or failing with 500, and a step accepted by
its workflow (which waits there for its projection) answers 504 step_pending once the step
timeout has passed: no request waits longer, and the clients' repeats are refused, never
doubled.

SQLite only: PostgreSQL here is a shared server the test must not stop, and a table lock
on a schema of the test's own is what the API engine's statement timeout ends (a 503).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from api.errors import DATABASE_UNAVAILABLE
from api.main import DB_WAIT_SECONDS, create_app
from tests.api.test_cases_api import step
from tests.faults.conftest import Workers, api_in_process, free_port
from tests.faults.support import (
    OUTCOME,
    Clients,
    Ledger,
    Verdict,
    check,
    plans,
    sign_in_all,
    wait_for,
)
from whistle import identity
from whistle.db import make_engine
from whistle.domain import Role

pytestmark = pytest.mark.faults

FULL, CLOCK = 30, 10
OUTAGE_S = 35.0
STEP_TIMEOUT_S = 8.0


def lock(path: str) -> sqlite3.Connection:
    """Take SQLite's write lock on the read model and keep it until closed."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


async def test_read_model_locked_for_35_s_under_load_nothing_lost_api_answers_503(
        dev_env, settings, users, procs):
    verdict = Verdict(f"read model unwritable for {OUTAGE_S:g} s under load (SQLite lock)")
    settings.step_timeout_seconds = STEP_TIMEOUT_S
    client = dev_env.client
    workers = Workers(procs, settings, client.service_client.config.target_host)
    engine = make_engine(settings.database_url)
    await workers.start(client)
    cases = plans("DBDOWN", FULL, CLOCK)
    ledger = Ledger()
    total = sum(len(p.steps()) for p in cases)
    # Signed in before the outage, used for the first time during it: the first use of a
    # token records when it was used, a write.
    fresh = users.headers("coordinator-fresh", Role.COORDINATOR, "huizhou")
    with Session(users.engine) as session:
        identity.create_user(session, username="li.outage", display_name="li.outage",
                             role=Role.COORDINATOR, jurisdiction="huizhou",
                             password="correct horse battery")
        session.commit()
    async with api_in_process(settings, client, users) as api:
        await sign_in_all(api, users, cases)
        load = asyncio.create_task(Clients(api, ledger, concurrency=12).run_all(cases))
        await wait_for(lambda: ledger.steps_acked >= total * 0.3 or load.done(), 90)
        assert not load.done(), "the load finished before the fault"
        in_flight, acked = ledger.in_flight, ledger.steps_acked
        path = settings.database_url.split("///", 1)[1]
        blocker = await asyncio.to_thread(lock, path)
        locked = time.monotonic()
        verdict.faults.append(f"write lock held {OUTAGE_S:g} s from {in_flight} requests in "
                              f"flight and {acked}/{total} steps acknowledged")

        async def timed_get(url: str, **kw: Any) -> tuple[float, httpx.Response]:
            began = time.monotonic()
            r = await api.get(url, **kw)
            return time.monotonic() - began, r

        opened = next(p.case_id for p in cases if p.case_id)
        read_s, read = await timed_get(f"/api/v1/cases/{opened}")
        first_use_s, first_use = await timed_get("/api/v1/cases", headers=fresh)
        began = time.monotonic()
        write = await api.post("/api/v1/auth/token", headers={"x-test-anonymous": "1"},
                               json={"username": "li.outage",
                                     "password": "correct horse battery"})
        write_s = time.monotonic() - began
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - locked)))
        await asyncio.to_thread(blocker.close)
        verdict.notes.append(
            f"during the outage: a read answered {read.status_code} in {read_s:.1f} s, a "
            f"token's first use {first_use.status_code} in {first_use_s:.1f} s; a sign-in "
            f"(a write) answered {write.status_code} {write.json().get('code')} in "
            f"{write_s:.1f} s; step timeout {STEP_TIMEOUT_S:g} s")
        await load
        await check(verdict, client, engine, cases, ledger, settings.task_queue)
    engine.dispose()
    verdict.assert_clean(ledger)
    assert read.status_code == 200
    assert first_use.status_code == 200, first_use.text
    assert write.status_code == 503, write.text
    assert write.json() == {"code": "database_unavailable", "message": DATABASE_UNAVAILABLE}
    assert write_s < DB_WAIT_SECONDS + 5  # bounded by the API's wait, not hanging
    assert ledger.answers.get("500 internal_error", 0) == 0
    # Steps accepted during the outage answered "pending" when the step timeout passed
    # (the SDK would have kept polling); none waited the whole outage.
    assert ledger.answers.get("504 step_pending", 0) > 0, ledger.answers
    assert ledger.slowest < STEP_TIMEOUT_S + DB_WAIT_SECONDS + 5, ledger.slowest


async def test_read_model_unreachable_the_api_answers_503_at_once(dev_env, settings, users):
    """A database that refuses connections (PostgreSQL down: here a port nothing listens
    on) is a 503 database_unavailable at once, never a 500."""
    app = create_app(settings, client=dev_env.client)
    async with app.router.lifespan_context(app), users.client(app) as api:
        assert (await api.get("/api/v1/cases")).status_code == 200
        app.state.engine.dispose()
        app.state.engine = make_engine(f"postgresql+psycopg://whistle@127.0.0.1:{free_port()}/x")
        began = time.monotonic()
        answers = [await api.get("/api/v1/cases"), await api.get("/api/v1/health"),
                   await step(api, "0123456789abcdef", "outcome", OUTCOME)]
        took = time.monotonic() - began
    print(f"\n[faults] read model refusing connections: {len(answers)} requests answered "
          f"{[r.status_code for r in answers]} in {took:.2f} s")
    for r in answers:
        assert r.status_code == 503, r.text
        assert r.json() == {"code": "database_unavailable", "message": DATABASE_UNAVAILABLE}
    assert took < 10
