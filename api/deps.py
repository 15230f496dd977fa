"""Dependencies every route shares, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client

from api import services
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
    return request.app.state.policy  # type: ignore[no-any-return]


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


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]
ClientDep = Annotated[Client, Depends(_client)]
PolicyDep = Annotated[Policy, Depends(_policy)]
SessionDep = Annotated[Session, Depends(_session)]
StepsDep = Annotated[Steps, Depends(_steps)]
