"""The peer: the same case shape on DBOS Transact (PyPI `dbos`) with a SQLite system
database — the durable-workflow library a Python team would pick instead of Temporal.

open → summon 3 departments (steps) → 3 report-ins and 3 sign-offs, outcome, close, each
a message the workflow waits for (`DBOS.recv`), checks against its state (the validator)
and answers with an event (`DBOS.set_event`) the client waits for, so every call gets its
verdict as Whistle's updates do; one step per accepted message, writing a row to SQLite.
DBOS is a library: the workflows run in this process, and so do the clients driving them.

A long-lived child of bench/run.py: it reads commands (JSON lines) on stdin,
    {"clients": 50, "cases": 300, "seconds": 60, "out": "/tmp/x.json"}
runs them, writes figures to "out" and prints "@@done" on stdout.

    python bench/peer_dbos.py SYSTEM_DB_FILE APP_DB_FILE [POLL_SECONDS]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import uuid

# DBOS's SQLite schema uses unixepoch('subsec') (SQLite 3.42+); this Python links 3.40, so
# the peer runs on the SQLite that pysqlite3-binary bundles, swapped in before SQLAlchemy.
import pysqlite3  # type: ignore[import-not-found]

sys.modules["sqlite3"] = pysqlite3
import sqlite3  # noqa: E402

from dbos import DBOS, DBOSConfig, SetWorkflowID  # noqa: E402

DEPARTMENTS = ("d1", "d2", "d3")
_local = threading.local()
APP_DB = ""


def _conn() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(APP_DB, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        _local.conn = conn
    return conn


def _insert(case_id: str, kind: str, department: str) -> None:
    _conn().execute("INSERT INTO step (case_id, kind, department) VALUES (?, ?, ?)",
                    (case_id, kind, department))


@DBOS.step()
async def record(case_id: str, kind: str, department: str = "") -> None:
    await asyncio.to_thread(_insert, case_id, kind, department)


def _verdict(summons: dict[str, str], outcome: bool, kind: str, dep: str) -> str | None:
    """None if the step fits the state, else the reason it is refused."""
    if kind == "report_in" and summons.get(dep) != "summoned":
        return f"{dep} cannot report in"
    if kind == "sign_off" and summons.get(dep) != "reported_in":
        return f"{dep} cannot sign off"
    if kind == "outcome" and (outcome or any(s != "signed_off" for s in summons.values())):
        return "summonses open"
    if kind == "close" and not outcome:
        return "no outcome yet"
    return None


@DBOS.workflow()
async def peer_case(case_id: str) -> int:
    await record(case_id, "opened")
    await record(case_id, "summoned")
    summons = {d: "summoned" for d in DEPARTMENTS}
    outcome, seq = False, 2
    await DBOS.set_event_async("opened", seq)
    while True:
        msg = await DBOS.recv_async("step", timeout_seconds=3600)
        if msg is None:
            continue
        kind, dep = msg["kind"], msg.get("department", "")
        why = _verdict(summons, outcome, kind, dep)
        if why is None:
            if kind == "report_in":
                summons[dep] = "reported_in"
            elif kind == "sign_off":
                summons[dep] = "signed_off"
            elif kind == "outcome":
                outcome = True
            seq += 1
            await record(case_id, kind, dep)
        await DBOS.set_event_async(msg["reply"], {"ok": why is None, "why": why, "seq": seq})
        if kind == "close" and why is None:
            return seq


STEPS = ([("report_in", d) for d in DEPARTMENTS] + [("sign_off", d) for d in DEPARTMENTS]
         + [("outcome", ""), ("close", "")])


async def one_case(lat: dict[str, list[float]]) -> None:
    case_id = uuid.uuid4().hex[:16]
    wid = f"peer-{case_id}"
    t0 = time.perf_counter()
    with SetWorkflowID(wid):
        await DBOS.start_workflow_async(peer_case, case_id)
    await DBOS.get_event_async(wid, "opened", timeout_seconds=120)
    lat["open"].append(time.perf_counter() - t0)
    for n, (kind, dep) in enumerate(STEPS):
        t = time.perf_counter()
        await DBOS.send_async(wid, {"kind": kind, "department": dep, "reply": f"r{n}"}, "step")
        v = await DBOS.get_event_async(wid, f"r{n}", timeout_seconds=120)
        if v is None or not v["ok"]:
            raise RuntimeError(f"{wid} {kind} {dep}: {v}")
        lat[kind].append(time.perf_counter() - t)


async def run(clients: int, cases: int, seconds: float | None) -> dict[str, object]:
    """`clients` concurrent clients run `cases` cases; none starts after `seconds`."""
    lat: dict[str, list[float]] = {k: [] for k in ("open", "report_in", "sign_off",
                                                   "outcome", "close")}
    todo = iter(range(cases))
    started = 0
    until = None if seconds is None else time.monotonic() + seconds

    async def client() -> None:
        nonlocal started
        for _ in todo:
            if until is not None and time.monotonic() > until:
                return
            started += 1
            await one_case(lat)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"wall": time.perf_counter() - t0, "cases": started, "latencies": lat}


async def serve() -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.strip():
            return
        cmd = json.loads(line)
        result = await run(cmd["clients"], cmd["cases"], cmd.get("seconds"))
        with open(cmd["out"], "w") as f:
            json.dump(result, f)
        print("@@done", flush=True)


def main() -> None:
    global APP_DB
    sys_db, APP_DB = sys.argv[1], sys.argv[2]
    poll = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
    init = sqlite3.connect(sys_db)  # WAL persists in the file: DBOS opens it in WAL mode
    init.execute("PRAGMA journal_mode=WAL")
    init.close()
    _conn().execute("CREATE TABLE IF NOT EXISTS step (id INTEGER PRIMARY KEY, case_id TEXT, "
                    "kind TEXT, department TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP)")
    config: DBOSConfig = {
        "name": "whistle-bench-peer",
        "system_database_url": f"sqlite:///{sys_db}",
        "notification_listener_polling_interval_sec": poll,
        "log_level": "WARNING",
        "run_admin_server": False,
    }
    DBOS(config=config)
    DBOS.launch()
    print("ready", flush=True)
    asyncio.run(serve())
    DBOS.destroy()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
