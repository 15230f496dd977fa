"""The work-meeting digest (工作例会) of one centre, started by that centre's Temporal
Schedule (`whistle-digest-<centre>`, made by the worker at start-up: see
`ensure_digest_schedules` in worker.py) or by hand. Builds and stores the digest, then
queues it on the centre's notification channels; the dispatcher (workflows/delivery.py)
sends it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
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
