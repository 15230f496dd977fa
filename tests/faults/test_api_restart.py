"""The API process dies (kill -9) under load and is started again on the same port. Clients
repeat what got no answer, with the same body: an opening repeated with its external_ref
never makes a second case, and every sign-off — repeated on purpose after its 200, or
because its first try was cut off — is accepted once; the repeat gets 409.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.faults.conftest import ApiProcess, Workers
from tests.faults.support import Clients, Ledger, Verdict, check, plans, sign_in_all, wait_for
from whistle.db import make_engine

pytestmark = pytest.mark.faults

FULL, CLOCK = 40, 10


async def test_api_killed_under_load_repeats_never_make_a_second_case_or_sign_off(
        dev_env, settings, users, procs):
    verdict = Verdict("kill -9 the API process under load, start it again")
    client = dev_env.client
    address = client.service_client.config.target_host
    await Workers(procs, settings, address).start(client)
    server = ApiProcess(procs, settings, address)
    first = await server.start()
    engine = make_engine(settings.database_url)
    cases = plans("APIKILL", FULL, CLOCK)
    ledger = Ledger()
    total = sum(len(p.steps()) for p in cases)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                 event_hooks={"request": [users.sign_in_hook]}) as api:
        await sign_in_all(api, users, cases)
        load = asyncio.create_task(
            Clients(api, ledger, concurrency=12, repeat=True).run_all(cases))
        await wait_for(lambda: ledger.steps_acked >= total * 0.3 or load.done(), 90)
        assert not load.done(), "the load finished before the fault"
        in_flight, acked = ledger.in_flight, ledger.steps_acked
        first.kill()
        await asyncio.sleep(1)
        second = await server.start()
        verdict.faults.append(f"SIGKILL API process {first.pid} with {in_flight} requests in "
                              f"flight, {acked}/{total} steps acknowledged; API {second.pid} "
                              "started on the same port")
        await load
        await check(verdict, client, engine, cases, ledger, settings.task_queue)
    engine.dispose()
    verdict.assert_clean(ledger)
    sign_offs = sum(len(p.departments) for p in cases if p.kind == "full")
    assert ledger.repeats_refused == len(cases) + sign_offs  # each opening, each sign-off
    assert ledger.answers["409 wrong_summons_status"] >= sign_offs
