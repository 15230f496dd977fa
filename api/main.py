"""The app factory. `uvicorn api.main:app` serves it with settings from the environment;
tests call `create_app` with their own settings and Temporal client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import text
from sqlmodel import Session
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api import errors, metrics, web
from api.access import Public
from api.deps import refuse_nul
from api.routes import audit, auth, cases, channels, digests, reference, routing, users
from api.schemas import ERRORS
from whistle import logs
from whistle.db import make_engine, migrate
from whistle.horizon import calendar_horizon
from whistle.policy import LivePolicy
from whistle.settings import Settings, get_settings
from whistle.temporal import connect

API_PREFIX = "/api/v1"
# A request waits this long for the read model (SQLite's write lock, a PostgreSQL connection)
# and a PostgreSQL statement runs at most DB_STATEMENT_SECONDS, so an outage is a prompt
# 503 database_unavailable, not a hanging request. The worker waits longer: it retries.
DB_WAIT_SECONDS = 5.0
DB_STATEMENT_SECONDS = 20.0
health_router = APIRouter(tags=["health"])


class CalendarHealth(BaseModel):
    """How far the official working-day calendar reaches (README, "Working days and the
    calendar"): deadlines counted beyond `official_until` are provisional (暂定)."""

    official_until: date | None
    days_left: int | None
    short: bool  # too close to the latest due a case opened today could get (whistle/horizon.py)


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    calendar: CalendarHealth


@health_router.get("/health")
def health(request: Request, _: Public) -> Health:
    """The API is up and reaches its database; how far the official calendar reaches."""
    with Session(request.app.state.engine) as session:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    h = calendar_horizon(request.app.state.live_policy.last_good(), datetime.now(UTC),
                         request.app.state.settings.timezone)
    return Health(calendar=CalendarHealth(official_until=h.official_until,
                                          days_left=h.days_left, short=h.short))


# Every route of the API, by router: the app serves these, and the route × role test reads
# them (so a route cannot be served without appearing there).
ROUTERS: list[APIRouter] = [auth.router, users.router, cases.router, reference.router,
                            routing.router, audit.router, channels.router, digests.router,
                            health_router]


def route_table() -> dict[tuple[str, str], APIRoute]:
    """(method, full path) → route, for every route under /api/v1."""
    return {(method, API_PREFIX + r.path): r for router in ROUTERS for r in router.routes
            if isinstance(r, APIRoute) for method in r.methods}


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    """The Whistle API. Without `client` it connects to Temporal at start-up."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        if settings.env != "test":  # tests keep pytest's log capture
            logs.configure(json_lines=settings.log_json, level=settings.log_level)
        migrator = make_engine(settings.database_url)  # no statement timeout for DDL
        try:
            migrate(migrator)
        finally:
            migrator.dispose()
        app.state.engine = make_engine(settings.database_url, wait_seconds=DB_WAIT_SECONDS,
                                       statement_seconds=DB_STATEMENT_SECONDS)
        app.state.live_policy = LivePolicy(settings.policy_file)
        app.state.live_policy.current()  # refuse to start on a policy that cannot be used
        app.state.temporal = client or await connect(settings)
        yield
        app.state.engine.dispose()

    production = settings.env == "production"
    # The interactive docs load Swagger UI / ReDoc from a CDN with inline scripts, which
    # the API's strict CSP forbids: production serves no /docs or /redoc (the schema stays
    # at /openapi.json); elsewhere those pages get a relaxed CSP of their own.
    app = _WhistleAPI(title="Whistle 吹哨报到", version="0.1.0", lifespan=lifespan,
                      description="Cases, summonses and the closed loop, each case a "
                                  "Temporal workflow.",
                      docs_url=None if production else "/docs",
                      redoc_url=None if production else "/redoc",
                      security_headers=_security_headers(production))
    errors.install(app)
    # Outermost first: security headers (wrapping even the 500 handler, see _WhistleAPI),
    # then CORS (so a 413 still reaches a browser as a readable error), then the body limit.
    app.add_middleware(_LimitBody, limit=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=list(CORS_METHODS), allow_headers=list(CORS_HEADERS),
                           allow_credentials=False)
    # Every route refuses text holding NUL, which PostgreSQL cannot store (deps.refuse_nul).
    v1 = APIRouter(prefix=API_PREFIX, responses=ERRORS, dependencies=[Depends(refuse_nul)])
    for router in ROUTERS:
        v1.include_router(router)
    app.include_router(v1)
    web.install(app)  # the pages at /, /login, /cases, … (not in ROUTERS: no /api/v1)
    metrics.install(app, settings, API_PREFIX)  # GET /metrics: outside /api/v1, own access
    return app


CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key")

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
# Swagger UI and ReDoc (development and test only): their CDN bundles, inline bootstrap
# script and styles, Google fonts (ReDoc), the FastAPI favicon, ReDoc's blob: worker.
DOCS_CSP = ("default-src 'self'; "
            "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net "
            "https://fonts.googleapis.com; "
            "font-src 'self' https://fonts.gstatic.com; "
            "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "worker-src 'self' blob:; "
            "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def _security_headers(production: bool) -> list[tuple[str, str]]:
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ]
    if production:  # only behind TLS: a browser pins HTTPS for the host for a year
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return headers


class _SecurityHeaders:
    """Adds the security headers to every HTTP response (a header the response already
    carries is left as it is); `docs_paths` get DOCS_CSP. Pure ASGI: streaming responses
    pass through untouched."""

    def __init__(self, app: ASGIApp, headers: list[tuple[str, str]],
                 docs_paths: frozenset[str]) -> None:
        self.app, self.headers, self.docs_paths = app, headers, docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        docs = path in self.docs_paths
        api = path.startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else CSP)
                if api:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _WhistleAPI(FastAPI):
    """FastAPI with the security headers outside its whole middleware stack, so they are
    on every response, the 500 of the server-error handler included."""

    def __init__(self, *, security_headers: list[tuple[str, str]], **kwargs: Any) -> None:
        self._security_headers = security_headers
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        docs = (self.docs_url, self.redoc_url,
                self.swagger_ui_oauth2_redirect_url if self.docs_url else None)
        return _SecurityHeaders(super().build_middleware_stack(), self._security_headers,
                                frozenset(p for p in docs if p))


class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class _LimitBody:
    """Refuses a request body over `limit` bytes with 413 body_too_large. A Content-Length
    over the limit is refused before the app runs; a body without one (chunked) is counted
    as it is read, and the read that crosses the limit raises: FastAPI reads the body before
    any dependency or endpoint runs, so nothing is processed. Pure ASGI (no buffering)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def receive_limited() -> Message:
            nonlocal received
            if received > self.limit:  # read again after the refusal: refuse again
                raise _BodyTooLarge(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge(self.limit)
            return message

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_limited, send_tracking)
        except _BodyTooLarge:
            # Normally FastAPI's exception handlers answer (errors.install); this catches a
            # body read outside them.
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"code": "body_too_large",
                                 "message": f"request body over {self.limit} bytes"},
                                status_code=413)
        await response(scope, receive, send)


app = create_app()
