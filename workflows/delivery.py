"""The notification dispatcher: one long-running workflow per deployment that moves the
outbox to the channels.

Why a long-running workflow and not a Schedule: a Schedule fires at most about once a
minute and each firing is a workflow of its own, so a summons would wait up to a minute
and every idle minute would leave a closed workflow behind. Here one claim activity
long-polls the outbox (it answers as soon as a row appears, or after `poll_seconds`), and
each (message, channel) pair is one activity with its own RetryPolicy: exponential backoff
per channel, a slow receiver never holds up the others, and a worker crash only moves the
attempt to another worker (the delivery row is the record; see activities/notify.py).
Every `claims_per_run` claims the workflow lets the deliveries in flight finish and
continues as new, so its history stays short however long it runs.

Deterministic: no I/O, clock or settings here; the worker passes a DeliveryConfig.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError


def dispatcher_id(task_queue: str) -> str:
    """One dispatcher per operations queue, i.e. per deployment (per read model): two
    deployments sharing a namespace each get their own."""
    return f"whistle-delivery-{task_queue}"
# Continue as new past this many events (Temporal warns at 10,240): with a busy outbox each
# claim adds about six events per delivery, so the claim count alone does not bound it.
HISTORY_LIMIT = 8000


class ActivityName:
    CLAIM = "notify.claim_deliveries"
    DELIVER = "notify.deliver"


@dataclass(frozen=True)
class ClaimRequest:
    limit: int = 100
    wait_seconds: float = 5.0  # long poll: answer as soon as work appears, or after this
    exclude: list[int] = field(default_factory=list)  # deliveries in flight already


@dataclass(frozen=True)
class DeliverRequest:
    delivery_id: int
    max_attempts: int  # the retry policy's; the last failed attempt marks the row failed


@dataclass(frozen=True)
class DeliveryConfig:
    """What the dispatcher runs with (from settings, read by the worker: workflow code
    reads no settings)."""

    poll_seconds: float = 5.0
    batch: int = 100
    retry_initial_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    max_attempts: int = 10
    claims_per_run: int = 500  # then continue-as-new, keeping the history short
    stop_when_idle: bool = False  # tests: return once nothing is pending or in flight


@dataclass(frozen=True)
class DeliverySummary:
    delivered: int = 0
    failed: int = 0


@workflow.defn(name="WhistleDelivery")
class DeliveryWorkflow:
    """Claims pending deliveries and runs one retried activity per delivery."""

    def __init__(self) -> None:
        self.in_flight: dict[int, asyncio.Task[None]] = {}
        self.delivered = 0
        self.failed = 0

    @workflow.run
    async def run(self, cfg: DeliveryConfig) -> DeliverySummary:
        for _ in range(cfg.claims_per_run):
            ids = await workflow.execute_activity(
                ActivityName.CLAIM,
                ClaimRequest(limit=cfg.batch, wait_seconds=cfg.poll_seconds,
                             exclude=sorted(self.in_flight)),
                result_type=list[int],
                start_to_close_timeout=timedelta(seconds=cfg.poll_seconds + 60),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1),
                                         maximum_interval=timedelta(seconds=30)),
            )
            for i in ids:
                if i not in self.in_flight:
                    self.in_flight[i] = asyncio.create_task(self._deliver(i, cfg))
            if cfg.stop_when_idle and not ids:
                await self._drain()
                if not await self._pending(cfg):
                    return self.summary()
            info = workflow.info()
            if info.is_continue_as_new_suggested() or \
                    info.get_current_history_length() > HISTORY_LIMIT:
                break  # a busy outbox: a fresh run before the history grows large
        await self._drain()
        workflow.continue_as_new(cfg)

    async def _pending(self, cfg: DeliveryConfig) -> bool:
        ids = await workflow.execute_activity(
            ActivityName.CLAIM, ClaimRequest(limit=1, wait_seconds=0), result_type=list[int],
            start_to_close_timeout=timedelta(seconds=60))
        return bool(ids)

    async def _deliver(self, delivery_id: int, cfg: DeliveryConfig) -> None:
        try:
            ok = await workflow.execute_activity(
                ActivityName.DELIVER,
                DeliverRequest(delivery_id=delivery_id, max_attempts=cfg.max_attempts),
                result_type=bool,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=cfg.retry_initial_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=cfg.retry_max_seconds),
                    maximum_attempts=cfg.max_attempts),
            )
            if ok:
                self.delivered += 1
        except ActivityError:
            self.failed += 1  # the row is marked failed, with the last error
        finally:
            del self.in_flight[delivery_id]

    async def _drain(self) -> None:
        await workflow.wait_condition(lambda: not self.in_flight)

    @workflow.query
    def summary(self) -> DeliverySummary:
        return DeliverySummary(delivered=self.delivered, failed=self.failed)
