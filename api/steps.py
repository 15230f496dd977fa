"""The step catalogue (whistle/steps.py) made into the JSON API: one POST route per step,
its body derived from the step's message, its guard from the step's permission, its
description from the workflow handler's docstring. The pages build their forms from the
same bodies (api/web/case_page.py)."""

from __future__ import annotations

import inspect
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import AwareDatetime, create_model
from sqlmodel import Session

from api import services
from api.access import Guard
from api.deps import SessionDep, StepsDep
from api.schemas import Body, Instant, StepOut
from whistle.domain import Code, Step
from whistle.identity import Principal
from whistle.steps import STEPS, Scope, StepSpec, department_fields
from workflows.case import CaseWorkflow

CaseId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="the case id")]
Dept = Annotated[Code, Path(description="the department code")]


@cache
def body_model(spec: StepSpec) -> type[Body]:
    """The request body of `spec`: its message's fields but those the server fills in,
    departments named by code, instants that every zone can show."""
    named = department_fields(spec)
    fields: dict[str, Any] = {}
    for name in spec.body_fields:
        info = spec.message.model_fields[name]
        annotation: Any = info.annotation
        if name in named:
            annotation = list[Code] if named[name] else Code
        elif annotation is AwareDatetime:
            annotation = Instant
        fields[name] = (annotation, info)
    return create_model(f"{spec.message.__name__}Body", __base__=Body,
                        __doc__=spec.message.__doc__, **fields)


def message(spec: StepSpec, body: Body | None, *, actor: str, department: str | None,
            session: Session) -> Step:
    """The Update's argument: the body's fields, departments resolved (422 naming the field
    for an unknown one), and who acts on what."""
    data = body.model_dump() if body is not None else {}
    for name, many in department_fields(spec).items():
        refs = services.known_departments(session=session, field=name,
                                          codes=data[name] if many else [data[name]])
        data[name] = refs if many else refs[0]
    if spec.scope == Scope.SUMMONS:
        data["department"] = department
    return spec.message(actor=actor, **data)


def description(spec: StepSpec) -> str:
    """The route's description: what the workflow's handler says the step does."""
    return inspect.getdoc(getattr(CaseWorkflow, spec.update)) or spec.label


def _endpoint(spec: StepSpec) -> Any:
    body_type = body_model(spec)

    async def send(case_id: str, steps: StepsDep, session: SessionDep, who: Principal,
                   body: Body | None = None, department: str | None = None) -> StepOut:
        step = message(spec, body, actor=who.username, department=department, session=session)
        return await steps.send(case_id, getattr(CaseWorkflow, spec.update), step)

    # FastAPI reads the parameters from the signature: give it the step's own.
    P = inspect.Parameter
    params = [P("case_id", P.KEYWORD_ONLY, annotation=CaseId)]
    if spec.scope == Scope.SUMMONS:
        params.append(P("department", P.KEYWORD_ONLY, annotation=Dept))
    params += [
        P("steps", P.KEYWORD_ONLY, annotation=StepsDep),
        P("session", P.KEYWORD_ONLY, annotation=SessionDep),
        P("who", P.KEYWORD_ONLY,
          annotation=Annotated[Principal, Depends(Guard(spec.permission))]),
        P("body", P.KEYWORD_ONLY, annotation=body_type | None if spec.body_optional
          else body_type, default=None if spec.body_optional else P.empty),
    ]
    send.__signature__ = inspect.Signature(params, return_annotation=StepOut)  # type: ignore[attr-defined]
    send.__name__ = spec.update
    return send


def add_step_routes(router: APIRouter) -> None:
    """One POST route per catalogued step on `router` (mounted at /cases)."""
    for spec in STEPS:
        router.add_api_route(
            spec.route.removeprefix("/cases"), _endpoint(spec), methods=["POST"],
            response_model=StepOut, name=spec.update, summary=spec.label,
            description=description(spec))
