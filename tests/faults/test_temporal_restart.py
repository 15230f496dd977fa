"""The Temporal server goes down (kill -9) and comes back on the same file: open cases and
their clocks survive; a clock that came due while it was down fires as soon as it is back,
one due after that fires on time; steps clients had to repeat are applied once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.faults.conftest import Workers, api_in_process, connect, write_policy
from tests.faults.support import Clients, Ledger, Verdict, check, plans, sign_in_all
from whistle.db import make_engine
from whistle.domain import EventKind

pytestmark = pytest.mark.faults

FULL, CLOCK = 30, 30  # half the clock cases come due during the outage, half after it
NEIGHBOUR_S, FAMILY_S = 20, 45  # report-in clocks of the clock cases' two categories
STOP_AFTER_S, DOWN_S = 16, 10  # from the first opening: stop the server; keep it down
LOAD_LEAD_S = 1.5  # the scripted cases start this long before the stop (on a quiet
# machine the 30 of them finish in under 4 s: a longer lead let the load end before the fault)
ON_TIME = timedelta(seconds=8)  # how late a clock may fire (seen: ≤ 2 s; CI is 2 cores)


async def test_temporal_restart_keeps_open_cases_and_fires_their_clocks_on_time(
        settings, users, procs, own_server):
    verdict = Verdict("kill -9 the Temporal dev server under load, start it again")
    write_policy(settings.policy_file, {"neighbour": NEIGHBOUR_S, "family": FAMILY_S})
    client = await connect(own_server.address)
    workers = Workers(procs, settings, own_server.address)
    await workers.start(client)
    engine = make_engine(settings.database_url)
    cases = plans("RESTART", FULL, CLOCK, clock_categories=("neighbour", "family"))
    clock_cases = [p for p in cases if p.kind == "clock"]
    ledger = Ledger()
    async with api_in_process(settings, client, users) as api:
        await sign_in_all(api, users, cases)
        clients = Clients(api, ledger, concurrency=12)
        began = time.monotonic()
        await asyncio.gather(*(clients.open(p) for p in clock_cases))  # their clocks run
        opened_in = time.monotonic() - began
        # The scripted cases start shortly before the stop, so it comes mid-load.
        await asyncio.sleep(max(0.0, STOP_AFTER_S - LOAD_LEAD_S - (time.monotonic() - began)))
        load = asyncio.create_task(clients.run_all([p for p in cases if p.kind == "full"]))
        await asyncio.sleep(max(0.0, STOP_AFTER_S - (time.monotonic() - began)))
        assert not load.done(), "the load finished before the fault"
        in_flight, acked = ledger.in_flight, ledger.steps_acked
        own_server.kill()
        stopped = datetime.now(UTC)
        await asyncio.sleep(DOWN_S)
        took = await own_server.start()
        ready = datetime.now(UTC)
        verdict.faults.append(
            f"SIGKILL the Temporal server with {in_flight} requests in flight and "
            f"{acked} steps acknowledged; down {(ready - stopped).total_seconds():.1f} s "
            f"(restart took {took:.1f} s); the {CLOCK} clock cases opened in {opened_in:.1f} s")
        await load
        for p in clock_cases:  # an opening repeated after the restart finds the same case
            await clients.open_again(p)
        await check(verdict, client, engine, cases, ledger, settings.task_queue,
                    settle_timeout=FAMILY_S + 30)
    engine.dispose()

    late: dict[str, list[float]] = {"before the stop": [], "during the outage": [],
                                    "after the restart": []}
    wrong = []
    for r in verdict.histories.values():
        for pe in r.events.values():
            e = pe.event
            if e.kind != EventKind.CLOCK_MISSED:
                continue
            due = datetime.fromisoformat(e.data["due"])
            if due < stopped:
                bucket, reference = "before the stop", due
            elif due <= ready:
                bucket, reference = "during the outage", ready
            else:
                bucket, reference = "after the restart", due
            late[bucket].append((e.at - reference).total_seconds())
            if e.at < due or e.at - reference > ON_TIME:
                wrong.append(f"{r.case_id}: due {due:%T.%f}, fired {e.at:%T.%f} ({bucket})")
    for bucket, delays in late.items():
        worst = f", at most {max(delays):.1f} s late" if delays else ""
        verdict.notes.append(f"clocks due {bucket}: {len(delays)}{worst}"
                             + (" (counted from the restart)" if "outage" in bucket else ""))
    verdict.lost += [f"clock fired at the wrong time: {w}" for w in wrong]
    verdict.assert_clean(ledger)
    assert late["during the outage"] and late["after the restart"], \
        "the test's timing did not put clocks both in and after the outage"
