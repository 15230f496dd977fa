"""Audit routes (read-only): a case's history export, its replay verdict, the timeline
its history proves, and the read model cross-checked against it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func
from sqlmodel import col, select
from temporalio.client import Client

from api.access import Auditor
from api.deps import ClientDep, EngineDep, SessionDep
from api.errors import not_found
from api.schemas import Local, Page
from audit.check import check_case
from audit.history import CaseHistory, CaseNotFound, export_document, fetch_case
from audit.replay import CaseReplayer
from audit.report import CaseReplay, CaseTimeline, CheckReport
from audit.timeline import case_timeline, reconstruct
from whistle.models import AccessDenial

router = APIRouter(prefix="/audit", tags=["audit"])

CaseId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="the case id")]


async def _case(client: Client, case_id: str) -> CaseHistory:
    try:
        return await fetch_case(client, case_id)
    except CaseNotFound as e:
        raise not_found("case", case_id) from e


@router.get("/cases/{case_id}/history",
            response_description="one run: the object `temporal workflow show --output json` "
                                 "prints; several runs (continue-as-new): a list of them, "
                                 "oldest first")
async def history(case_id: CaseId, client: ClientDep, who: Auditor) -> JSONResponse:
    """Every run of the case's workflow history, in the `temporal workflow show` format."""
    return JSONResponse(export_document(await _case(client, case_id)))


@router.get("/cases/{case_id}/replay", response_model=CaseReplay)
async def replay(case_id: CaseId, client: ClientDep, who: Auditor) -> CaseReplay:
    """Replay every run on the workflow code this server runs: deterministic, or the event
    where it diverges and why."""
    return await CaseReplayer().replay(await _case(client, case_id))


@router.get("/cases/{case_id}/timeline", response_model=CaseTimeline)
async def timeline(case_id: CaseId, client: ClientDep, who: Auditor) -> CaseTimeline:
    """The timeline rebuilt from history alone: who did which step when (with the Update
    that asked for it and the history event that holds it), which clock fired, which
    escalation step ran."""
    case = await _case(client, case_id)
    return await run_in_threadpool(lambda: case_timeline(reconstruct(case)))


@router.get("/cases/{case_id}/check", response_model=CheckReport)
async def check(case_id: CaseId, client: ClientDep, engine: EngineDep, who: Auditor) -> CheckReport:
    """The read model cross-checked against history: every event, case and summons
    field, outbox row and step actor that differs (`ok` when none)."""
    case = await _case(client, case_id)
    return await run_in_threadpool(check_case, engine, case)


class DenialOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: Local
    username: str
    role: str
    method: str
    path: str
    permission: str
    case_id: str | None
    reason: str


@router.get("/denials", response_model=Page[DenialOut])
def denials(
    session: SessionDep,
    who: Auditor,
    username: Annotated[str | None, Query(max_length=64)] = None,
    case_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{16}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[DenialOut]:
    """Every request refused with 403: who tried what, on which case, and why. Newest
    first."""
    q = select(AccessDenial)
    if username is not None:
        q = q.where(AccessDenial.username == username)
    if case_id is not None:
        q = q.where(AccessDenial.case_id == case_id)
    total = session.exec(select(func.count()).select_from(q.subquery())).one()
    rows = session.exec(q.order_by(col(AccessDenial.id).desc()).limit(limit).offset(offset))
    return Page(items=[DenialOut.model_validate(r) for r in rows], total=total, limit=limit,
                offset=offset)
