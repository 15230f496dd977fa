"""The API's observability: GET /metrics (Prometheus text: HTTP request counts and latency
by route template and status, plus the business gauges and the official calendar's reach)
and the case id of a request on its log lines.

/metrics is served on the API's port but outside /api/v1 and not in the OpenAPI document.
Who may scrape: with WHISTLE_METRICS_TOKEN set, only `Authorization: Bearer <token>`;
without it, only clients on this host (127.0.0.1, ::1). Anyone else gets 404, so the
endpoint is never an unauthenticated window onto case counts.
"""

from __future__ import annotations

import hmac
import re
import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whistle import metrics
from whistle.logs import case_context
from whistle.settings import Settings

LOOPBACK = {"127.0.0.1", "::1"}
_CASE_IN_PATH = re.compile(r"/cases/([0-9a-f]{16})(?:/|$)")


def install(app: FastAPI, settings: Settings, api_prefix: str) -> None:
    """Add the request metrics middleware and GET /metrics to `app`. Routes of the
    routers included under `api_prefix` know only their own path: it is prefixed."""
    registry = metrics.registry(lambda: app.state.engine,
                                policy=lambda: app.state.live_policy.last_good(),
                                timezone=settings.timezone)
    http = metrics.HttpMetrics(registry)
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    app.add_middleware(_Observe, http=http, api_prefix=api_prefix)

    @app.get("/metrics", include_in_schema=False)
    def prometheus(request: Request) -> Response:
        if not _may_scrape(request, token):
            return Response(status_code=404)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _may_scrape(request: Request, token: str | None) -> bool:
    if token is None:
        return request.client is not None and request.client.host in LOOPBACK
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


class _Observe:
    """Counts each HTTP request by method, route template and status, times it, and
    puts the case id of /cases/{case_id}/… on every log line written while it runs."""

    def __init__(self, app: ASGIApp, http: metrics.HttpMetrics, api_prefix: str) -> None:
        self.app, self.http, self.prefix = app, http, api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        found = _CASE_IN_PATH.search(scope["path"])
        try:
            with case_context(found.group(1) if found else None):
                await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if scope["path"].startswith(self.prefix + "/") and template.startswith("/") \
                    and not template.startswith(self.prefix + "/"):
                template = self.prefix + template
            self.http.observe(scope["method"], template, status, time.perf_counter() - start)
