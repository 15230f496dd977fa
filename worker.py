"""The worker process: runs case workflows and their activities until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import PollerBehaviorAutoscaling, Worker

from activities.case import CaseActivities
from whistle.db import make_engine, migrate
from whistle.settings import Settings, get_settings
from workflows.case import CaseWorkflow

log = logging.getLogger("whistle.worker")


async def connect(settings: Settings) -> Client:
    """A client with the converter every Whistle process must share."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor,
                 engine: Engine) -> Worker:
    """The worker for the case task queue, with its activities bound to `engine`."""
    acts = CaseActivities(engine, settings.policy_file, settings.timezone)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[CaseWorkflow],
        activities=[acts.load_policy, acts.plan_deadlines, acts.project_case],
        activity_executor=executor,
        workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
        activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        max_cached_workflows=1000,
    )


async def main() -> None:
    """Run until SIGTERM or SIGINT, then let in-flight tasks finish."""
    logging.basicConfig(level=os.environ.get("WHISTLE_LOG_LEVEL", "INFO"))
    settings = get_settings()
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = make_engine(settings.database_url)
    migrate(engine)
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = build_worker(client, settings, executor, engine)
        log.info("worker on %s, task queue %s", settings.temporal_address, settings.task_queue)
        async with worker:
            await stop.wait()
            log.info("stopping: finishing in-flight tasks")
    engine.dispose()
    log.info("stopped")


if __name__ == "__main__":
    asyncio.run(main())
    # The worker has shut down cleanly. Skip interpreter teardown: the SDK's native runtime
    # can crash there after a good run (sdk-python #300), which would turn a clean stop
    # into a segfault exit code for supervisors.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
