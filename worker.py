"""The worker process: runs case workflows and their activities until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import PollerBehaviorAutoscaling, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.case import CaseActivities
from activities.notify import NotifyActivities
from whistle import digests, logs, metrics
from whistle.channels import SmtpConfig
from whistle.db import make_engine, migrate
from whistle.policy import LivePolicy
from whistle.settings import Settings, get_settings
from whistle.temporal import connect
from workflows.case import CaseWorkflow
from workflows.delivery import DeliveryConfig, DeliveryWorkflow, dispatcher_id
from workflows.digest import DIGEST_WORKFLOW, DigestRequest, DigestWorkflow

log = logging.getLogger("whistle.worker")


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor,
                 engine: Engine) -> Worker:
    """The worker for the case task queue, with its activities bound to `engine`."""
    acts = CaseActivities(engine, settings.policy_file, settings.timezone)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[CaseWorkflow],
        activities=acts.all(),
        activity_executor=executor,
        workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
        activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        max_cached_workflows=1000,
        workflow_runner=SandboxedWorkflowRunner() if settings.workflow_sandbox
        else UnsandboxedWorkflowRunner(),
    )


def build_ops_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor,
                     engine: Engine) -> Worker:
    """The worker for the operations task queue: notification delivery and digests. A
    queue of its own, so a slow webhook never holds a slot a case needs, and case
    workflows are all a case queue ever lists."""
    notify = notify_activities(engine, settings)
    return Worker(
        client,
        task_queue=settings.ops_task_queue,
        workflows=[DeliveryWorkflow, DigestWorkflow],
        activities=[notify.claim_deliveries, notify.deliver, notify.build_digest,
                    notify.send_digest],
        activity_executor=executor,
    )


def notify_activities(engine: Engine, settings: Settings) -> NotifyActivities:
    """Delivery and digest activities with the SMTP relay and timeouts of `settings`."""
    smtp = SmtpConfig(host=settings.smtp_host, port=settings.smtp_port,
                      starttls=settings.smtp_starttls, username=settings.smtp_username,
                      password=settings.smtp_password.get_secret_value()
                      if settings.smtp_password else None, sender=settings.smtp_from)
    return NotifyActivities(engine, smtp, webhook_timeout=settings.webhook_timeout_seconds)


def delivery_config(settings: Settings) -> DeliveryConfig:
    return DeliveryConfig(poll_seconds=settings.delivery_poll_seconds,
                          retry_initial_seconds=settings.delivery_retry_initial_seconds,
                          retry_max_seconds=settings.delivery_retry_max_seconds,
                          max_attempts=settings.delivery_max_attempts)


async def start_operations(client: Client, settings: Settings, engine: Engine) -> None:
    """The notification dispatcher and one digest schedule per centre (both idempotent:
    every worker start calls this; the first creates, later ones attach or update)."""
    if settings.delivery_enabled:
        await start_dispatcher(client, delivery_config(settings), settings.ops_task_queue)
    if settings.digest_enabled:
        with Session(engine) as session:
            centres = digests.centres(session, settings.digest_levels)
        interval = settings.digest_interval_hours
        ids = await ensure_digest_schedules(
            client, centres, task_queue=settings.ops_task_queue,
            period_days=settings.digest_period_days, cron=settings.digest_cron,
            cron_by_centre=settings.digest_cron_by_centre,
            interval=timedelta(hours=interval) if interval else None,
            time_zone=settings.timezone)
        log.info("digest schedules: %d (%s)", len(ids), settings.digest_cron
                 if not interval else f"every {interval} h")


# --- what every worker sets up on Temporal at start-up (client code, not workflow code) ------


async def start_dispatcher(client: Client, cfg: DeliveryConfig, task_queue: str) -> None:
    """Start the dispatcher unless it runs already: every worker calls this at start-up,
    the first one starts it, the others attach (the workflow id is the lock)."""
    await client.start_workflow(
        DeliveryWorkflow.run, cfg, id=dispatcher_id(task_queue), task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)

def schedule_id(centre: str) -> str:
    return f"whistle-digest-{centre}"


def digest_schedule(centre: str, *, task_queue: str, period_days: int, cron: str | None,
                    interval: timedelta | None, time_zone: str) -> Schedule:
    spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]) if interval else \
        ScheduleSpec(cron_expressions=[cron or "0 8 * * 1"], time_zone_name=time_zone)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DIGEST_WORKFLOW, DigestRequest(centre=centre, period_days=period_days),
            id=f"whistle-digest-{centre}-run", task_queue=task_queue),
        spec=spec,
        # A meeting missed while the cluster was down is not worth two digests later.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP,
                              catchup_window=timedelta(hours=12)))


async def ensure_digest_schedules(client: Client, centres: list[str], *,
                                  cron_by_centre: dict[str, str] | None = None,
                                  **options: Any) -> list[str]:
    """Create each centre's schedule, or bring an existing one to the current settings
    (idempotent: every worker start calls it); a centre in `cron_by_centre` gets its own
    cron. Returns the schedule ids."""
    ids = []
    for centre in centres:
        own = (cron_by_centre or {}).get(centre)
        schedule = digest_schedule(centre, **(options | {"cron": own, "interval": None}
                                              if own else options))
        sid = schedule_id(centre)
        try:
            await client.create_schedule(sid, schedule)
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(sid).update(
                lambda _old, s=schedule: ScheduleUpdate(schedule=s))  # type: ignore[misc]
        ids.append(sid)
    return ids


def serve_metrics(settings: Settings, engine: Engine
                  ) -> tuple[Runtime, WSGIServer] | None:
    """The worker's /metrics: the SDK runtime's Prometheus exporter on a loopback port,
    re-exported with the business gauges on WHISTLE_WORKER_METRICS_PORT. Returns the
    runtime the client must use and the HTTP server (None: metrics off)."""
    if not settings.worker_metrics_port:
        return None
    with socket.socket() as s:  # a free loopback port for the SDK's own exporter
        s.bind(("127.0.0.1", 0))
        sdk_port = s.getsockname()[1]
    # The calendar gauge reads the policy file as it is at the scrape (cached a minute), as
    # the activities do: a `calendar:` block added for next year shows without a restart.
    reg = metrics.registry(engine, sdk_metrics_url=f"http://127.0.0.1:{sdk_port}/metrics",
                           policy=LivePolicy(settings.policy_file).last_good,
                           timezone=settings.timezone)
    try:
        server, _thread = start_http_server(settings.worker_metrics_port,
                                            addr=settings.worker_metrics_host, registry=reg)
    except OSError as e:  # e.g. a second worker on one host: run, without metrics
        log.error("no /metrics: cannot listen on %s:%d (%s)", settings.worker_metrics_host,
                  settings.worker_metrics_port, e)
        return None
    runtime = Runtime(telemetry=TelemetryConfig(
        metrics=PrometheusConfig(bind_address=f"127.0.0.1:{sdk_port}")))
    log.info("metrics on http://%s:%d/metrics", settings.worker_metrics_host,
             settings.worker_metrics_port)
    return runtime, server


async def main() -> None:
    """Run until SIGTERM or SIGINT, then let in-flight tasks finish."""
    # First of all, so a stop asked for during start-up is a clean stop, not a kill.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    settings = get_settings()
    logs.configure(json_lines=settings.log_json, level=settings.log_level)
    engine = make_engine(settings.database_url)
    migrate(engine)
    served = serve_metrics(settings, engine)
    client = await connect(settings, served[0] if served else None)
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = build_worker(client, settings, executor, engine)
        ops = build_ops_worker(client, settings, executor, engine)
        log.info("worker on %s, task queues %s and %s", settings.temporal_address,
                 settings.task_queue, settings.ops_task_queue)
        async with worker, ops:
            await start_operations(client, settings, engine)
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
