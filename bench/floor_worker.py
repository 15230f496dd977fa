"""The floor's worker process: FloorCase and its one activity (a row into SQLite per step),
configured like Whistle's worker (poller autoscaling, 1,000 cached workflows, a thread
pool of 16 for sync activities, the workflow sandbox as WHISTLE_WORKFLOW_SANDBOX says, off
by default as in worker.py), so the difference is Whistle's own work.

    python bench/floor_worker.py TEMPORAL_ADDRESS SQLITE_FILE
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from floor_wf import RECORD, TASK_QUEUE, FloorCase, Row
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

_local = threading.local()
DB_FILE = ""
SANDBOX = os.environ.get("WHISTLE_WORKFLOW_SANDBOX", "false").lower() in ("1", "true", "yes")


def _conn() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB_FILE, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # as Whistle's read model
        _local.conn = conn
    return conn


@activity.defn(name=RECORD)
def record(row: Row) -> None:
    _conn().execute("INSERT INTO step (case_id, kind, department) VALUES (?, ?, ?)",
                    (row.case_id, row.kind, row.department))


async def main(address: str) -> None:
    init = _conn()
    init.execute("CREATE TABLE IF NOT EXISTS step (id INTEGER PRIMARY KEY, case_id TEXT, "
                 "kind TEXT, department TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP)")
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with Worker(client, task_queue=TASK_QUEUE, workflows=[FloorCase],
                          activities=[record], activity_executor=executor,
                          workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
                          activity_task_poller_behavior=PollerBehaviorAutoscaling(),
                          max_cached_workflows=1000,
                          workflow_runner=SandboxedWorkflowRunner() if SANDBOX
                          else UnsandboxedWorkflowRunner()):
            print("ready", flush=True)
            await stop.wait()


if __name__ == "__main__":
    DB_FILE = sys.argv[2]
    asyncio.run(main(sys.argv[1]))
    sys.stdout.flush()
    os._exit(0)  # sdk-python #300
