"""Prometheus metrics: the business gauges (from the read model, computed when scraped and
cached briefly), the reach of the official working-day calendar (from the policy alone, so
it is there when the database is down), the Temporal SDK's runtime metrics re-exported,
and the HTTP metrics of the API. Each process builds its own registry (`registry(...)`)."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from whistle.domain import CaseStatus, EventKind, SummonsStatus
from whistle.horizon import MARGIN_DAYS, calendar_horizon
from whistle.models import (
    CaseEventRecord,
    CaseRecord,
    NotificationDelivery,
    OutboxMessage,
    SummonsRecord,
)
from whistle.policy import Policy

log = logging.getLogger("whistle.metrics")
ESCALATION_DAYS = 7  # escalations per day, for the last this many days (UTC days)


class _CachedCollector(Collector):
    """A collector that measures at most every `cache_seconds`; what `_measure` raises is
    logged and answered with `_unavailable()`, never a failed scrape."""

    what = "metrics"

    def __init__(self, cache_seconds: float) -> None:
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.cache_seconds:
                try:
                    self._cached = (time.monotonic(), self._measure())
                except Exception:
                    log.exception("%s unavailable", self.what)
                    return iter(self._unavailable())
            return iter(self._cached[1])

    def _measure(self) -> list[Metric]:
        raise NotImplementedError

    def _unavailable(self) -> list[Metric]:
        return []


class BusinessCollector(_CachedCollector):
    """Open cases by level, overdue summonses by department, escalations per day, the
    delivery backlog, and open cases needing attention or with provisional deadlines; one
    short query each, at most every `cache_seconds`."""

    what = "business metrics"  # a scrape must not fail because the database is down

    def __init__(self, engine: Engine | Callable[[], Engine], cache_seconds: float = 15.0
                 ) -> None:
        super().__init__(cache_seconds)
        self.engine_of = engine if callable(engine) else (lambda: engine)

    def _unavailable(self) -> list[Metric]:
        up = GaugeMetricFamily("whistle_read_model_up",
                               "1 when the read model answered the last scrape")
        up.add_metric([], 0)
        return [up]

    def _measure(self) -> list[Metric]:
        open_cases = GaugeMetricFamily("whistle_open_cases", "cases not closed, by level",
                                       labels=["level"])
        overdue = GaugeMetricFamily("whistle_overdue_summonses",
                                    "open summonses past a clock, by department",
                                    labels=["department"])
        escalations = GaugeMetricFamily("whistle_escalations",
                                        "escalation steps taken per UTC day (last 7 days)",
                                        labels=["day"])
        pending = GaugeMetricFamily("whistle_notifications_pending",
                                    "notifications not yet delivered, by state",
                                    labels=["state"])
        attention = GaugeMetricFamily("whistle_cases_needing_attention",
                                      "open cases that cannot go on by themselves "
                                      "(需人工处理: planning failed)")
        provisional = GaugeMetricFamily("whistle_cases_provisional",
                                        "open cases with a clock still to run whose due is "
                                        "provisional (暂定)")
        up = GaugeMetricFamily("whistle_read_model_up",
                               "1 when the read model answered the last scrape")
        since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - \
            timedelta(days=ESCALATION_DAYS - 1)
        open_statuses = [s.value for s in SummonsStatus if s.is_open]
        with Session(self.engine_of()) as s:
            for level, n in s.exec(select(CaseRecord.level, func.count())
                                   .where(CaseRecord.status != CaseStatus.CLOSED)
                                   .group_by(col(CaseRecord.level))):
                open_cases.add_metric([level], n)
            for dept, n in s.exec(select(SummonsRecord.department, func.count())
                                  .where(SummonsRecord.overdue == True,  # noqa: E712
                                         col(SummonsRecord.status).in_(open_statuses))
                                  .group_by(col(SummonsRecord.department))):
                overdue.add_metric([dept], n)
            per_day: dict[str, int] = {(since + timedelta(days=i)).date().isoformat(): 0
                                       for i in range(ESCALATION_DAYS)}
            for (at,) in s.exec(select(CaseEventRecord.at).where(  # type: ignore[call-overload]
                    CaseEventRecord.kind == EventKind.ESCALATED,
                    col(CaseEventRecord.at) >= since)):
                day = at.astimezone(UTC).date().isoformat()
                per_day[day] = per_day.get(day, 0) + 1
            for day, n in sorted(per_day.items()):
                escalations.add_metric([day], n)
            undelivered = s.exec(select(func.count()).select_from(OutboxMessage)
                                 .where(col(OutboxMessage.delivered_at).is_(None))).one()
            pending.add_metric(["outbox_undelivered"], undelivered)
            for status, n in s.exec(select(NotificationDelivery.status, func.count())
                                    .group_by(col(NotificationDelivery.status))):
                pending.add_metric([f"delivery_{status}"], n)
            still_open = CaseRecord.status != CaseStatus.CLOSED
            attention.add_metric([], s.exec(select(func.count()).select_from(CaseRecord).where(
                still_open, col(CaseRecord.attention).is_not(None))).one())
            provisional.add_metric([], s.exec(select(func.count()).select_from(CaseRecord).where(
                still_open, CaseRecord.provisional == True)).one())  # noqa: E712
        up.add_metric([], 1)
        return [open_cases, overdue, escalations, pending, attention, provisional, up]


class CalendarCollector(_CachedCollector):
    """Days left on the official working-day calendar, and whether that is short of the
    policy's longest clock (whistle/horizon.py). Needs the policy only, never the database;
    computed at most every `cache_seconds` (the day changes slowly)."""

    what = "calendar metrics"  # a broken policy file must not fail the whole scrape

    def __init__(self, policy: Callable[[], Policy], timezone: str,
                 cache_seconds: float = 60.0) -> None:
        super().__init__(cache_seconds)
        self.policy_of, self.timezone = policy, timezone

    def _measure(self) -> list[Metric]:
        h = calendar_horizon(self.policy_of(), datetime.now(UTC), self.timezone)
        days = GaugeMetricFamily("whistle_calendar_official_until_days",
                                 "days from today to the last day of the official working-day "
                                 "calendar (negative: passed; deadlines beyond are provisional)")
        short = GaugeMetricFamily("whistle_calendar_short",
                                  f"1 when the official calendar ends less than {MARGIN_DAYS} "
                                  "days after the latest deadline a case opened today could get")
        if h.days_left is not None:
            days.add_metric([], h.days_left)
        short.add_metric([], int(h.short))
        return [days, short]


class ForwardedCollector(Collector):
    """Metrics another endpoint on this host serves (the Temporal SDK's Prometheus
    exporter, bound to a loopback port), re-exported so the worker has one /metrics."""

    def __init__(self, url: str) -> None:
        self.url = url

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as r:
                text = r.read().decode()
        except OSError as e:
            log.debug("SDK metrics unavailable at %s: %s", self.url, e)
            return iter(())
        return text_string_to_metric_families(text)


class HttpMetrics:
    """Request count and latency by method, route template and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("whistle_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("whistle_http_request_duration_seconds",
                                 "time to answer, by route template",
                                 ["method", "route"], registry=registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


def registry(engine: Engine | Callable[[], Engine], *, sdk_metrics_url: str | None = None,
             policy: Callable[[], Policy] | None = None, timezone: str = "Asia/Shanghai"
             ) -> CollectorRegistry:
    """A registry with the business gauges, the calendar's reach when given the `policy`
    (read when scraped), and the SDK's metrics, for the worker."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(BusinessCollector(engine))
    if policy is not None:
        reg.register(CalendarCollector(policy, timezone))
    if sdk_metrics_url:
        reg.register(ForwardedCollector(sdk_metrics_url))
    return reg
