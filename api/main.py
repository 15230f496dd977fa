"""The app factory. `uvicorn api.main:app` serves it with settings from the environment;
tests call `create_app` with their own settings and Temporal client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlmodel import Session
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from api import errors
from api.routes import audit, cases, reference, routing
from api.schemas import ERRORS
from whistle.db import create_tables, make_engine
from whistle.policy import load_policy
from whistle.settings import Settings, get_settings


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    """The Whistle API. Without `client` it connects to Temporal at start-up."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.engine = make_engine(settings.database_url)
        create_tables(app.state.engine)
        app.state.policy = load_policy(settings.policy_file)
        app.state.temporal = client or await Client.connect(
            settings.temporal_address, namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
        )
        yield
        app.state.engine.dispose()

    app = FastAPI(title="Whistle 吹哨报到", version="0.1.0", lifespan=lifespan,
                  description="Cases, summonses and the closed loop, each case a Temporal "
                              "workflow.")
    errors.install(app)
    app.middleware("http")(_limit_body(settings.max_body_bytes))
    v1 = APIRouter(prefix="/api/v1", responses=ERRORS)
    v1.include_router(cases.router)
    v1.include_router(reference.router)
    v1.include_router(routing.router)
    v1.include_router(audit.router)
    v1.add_api_route("/health", health, methods=["GET"], tags=["health"])
    app.include_router(v1)
    return app


def health(request: Request) -> dict[str, str]:
    """The API is up and reaches its database."""
    with Session(request.app.state.engine) as session:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    return {"status": "ok"}


def _limit_body(limit: int) -> Callable[[Request, Callable[[Request], Awaitable[Response]]],
                                        Awaitable[Response]]:
    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                         ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return JSONResponse({"code": "body_too_large",
                                 "message": f"request body over {limit} bytes"}, status_code=413)
        return await call_next(request)

    return middleware


app = create_app()
