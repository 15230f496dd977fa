"""The work-meeting digest (工作例会) of one centre, started by that centre's Temporal
Schedule (`whistle-digest-<centre>`, made by the worker at start-up: see
whistle/schedules.py) or by hand. Builds and stores the digest, then queues it on the
centre's notification channels; the dispatcher (workflows/delivery.py) sends it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
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
from temporalio.common import RetryPolicy

DIGEST_WORKFLOW = "WhistleDigest"


class ActivityName:
    BUILD_DIGEST = "digest.build"
    SEND_DIGEST = "digest.send"


@dataclass(frozen=True)
class DigestRequest:
    centre: str
    period_days: int = 7


@dataclass(frozen=True)
class DigestPeriod:
    centre: str
    period_days: int
    period_end_iso: str  # the workflow's start time: the same on every replay and retry


@workflow.defn(name=DIGEST_WORKFLOW)
class DigestWorkflow:
    """One digest: the period ends when the workflow started (a value from its history,
    so the same on replay and on every retry of the activities)."""

    @workflow.run
    async def run(self, req: DigestRequest) -> int:
        period = DigestPeriod(centre=req.centre, period_days=req.period_days,
                              period_end_iso=workflow.info().start_time.isoformat())
        retry = RetryPolicy(initial_interval=timedelta(seconds=5),
                            maximum_interval=timedelta(minutes=5))
        digest_id = await workflow.execute_activity(
            ActivityName.BUILD_DIGEST, period, result_type=int,
            start_to_close_timeout=timedelta(minutes=5), retry_policy=retry)
        await workflow.execute_activity(
            ActivityName.SEND_DIGEST, digest_id, result_type=int,
            start_to_close_timeout=timedelta(minutes=1), retry_policy=retry)
        return digest_id


# --- made by the worker (client code, not workflow code) ------------------------------------


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
