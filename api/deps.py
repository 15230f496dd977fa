"""Dependencies every route shares, as `Annotated` aliases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client

from api import services
from api.errors import invalid
from api.schemas import StepOut
from whistle.policy import Policy
from whistle.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _client(request: Request) -> Client:
    return request.app.state.temporal  # type: ignore[no-any-return]


def _policy(request: Request) -> Policy:
    return request.app.state.live_policy.last_good()  # type: ignore[no-any-return]


def _session(engine: Annotated[Engine, Depends(_engine)]) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


class Steps:
    """Sends a step to a case's workflow with the configured patience."""

    def __init__(self, client: Client, session: Session, settings: Settings) -> None:
        self.client, self.session, self.settings = client, session, settings

    async def send(self, case_id: str, update: Any, arg: Any) -> StepOut:
        result = await services.run_step(
            client=self.client, session=self.session, case_id=case_id, update=update, arg=arg,
            timeout=self.settings.step_timeout_seconds,
        )
        return StepOut.model_validate(result.model_dump())


def _steps(client: Annotated[Client, Depends(_client)],
           session: Annotated[Session, Depends(_session)],
           settings: Annotated[Settings, Depends(_settings)]) -> Steps:
    return Steps(client, session, settings)


NUL = "\x00"


async def refuse_nul(request: Request) -> None:
    """Refuse text holding U+0000 (NUL) in the query or the JSON body, with 422 naming the
    field. PostgreSQL cannot store it: accepted, it fails the request with a 500, or, in a
    step, every projection of the case after it. Refused on SQLite too, so both read
    models take the same input. (The body is the one FastAPI already read and cached.)"""
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            raise invalid("query." + name.replace(NUL, "\\u0000"), _NUL_MESSAGE)
    body = await request.body()
    if b"\\u0000" not in body:  # in JSON text, U+0000 can only come escaped
        return
    try:
        data = json.loads(body)
    except ValueError:
        return  # not JSON: the route's own parsing answers
    field = _nul_at(data)
    if field is not None:
        raise invalid(field or "body", _NUL_MESSAGE)


_NUL_MESSAGE = "must not contain the NUL character (U+0000)"


def _nul_at(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) in `value` holding NUL, if any."""
    if isinstance(value, str):
        return path if NUL in value else None
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and NUL in key:
            return here.replace(NUL, "\\u0000")
        found = _nul_at(item, here)
        if found is not None:
            return found
    return None


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]
ClientDep = Annotated[Client, Depends(_client)]
PolicyDep = Annotated[Policy, Depends(_policy)]
SessionDep = Annotated[Session, Depends(_session)]
StepsDep = Annotated[Steps, Depends(_steps)]
