"""Audit routes (read-only): a case's history export, its replay verdict, the timeline
its history proves, and the read model cross-checked against it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from temporalio.client import Client

from api.deps import ClientDep, EngineDep
from api.errors import not_found
from audit.check import check_case
from audit.history import CaseHistory, CaseNotFound, export_document, fetch_case
from audit.replay import CaseReplayer
from audit.report import CaseReplay, CaseTimeline, CheckReport
from audit.timeline import case_timeline, reconstruct

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
async def history(case_id: CaseId, client: ClientDep) -> JSONResponse:
    """Every run of the case's workflow history, in the `temporal workflow show` format."""
    return JSONResponse(export_document(await _case(client, case_id)))


@router.get("/cases/{case_id}/replay", response_model=CaseReplay)
async def replay(case_id: CaseId, client: ClientDep) -> CaseReplay:
    """Replay every run on the workflow code this server runs: deterministic, or the event
    where it diverges and why."""
    return await CaseReplayer().replay(await _case(client, case_id))


@router.get("/cases/{case_id}/timeline", response_model=CaseTimeline)
async def timeline(case_id: CaseId, client: ClientDep) -> CaseTimeline:
    """The timeline rebuilt from history alone: who did which step when (with the Update
    that asked for it and the history event that holds it), which clock fired, which
    escalation step ran."""
    case = await _case(client, case_id)
    return await run_in_threadpool(lambda: case_timeline(reconstruct(case)))


@router.get("/cases/{case_id}/check", response_model=CheckReport)
async def check(case_id: CaseId, client: ClientDep, engine: EngineDep) -> CheckReport:
    """The read model cross-checked against history: every event, case and summons
    field, outbox row and step actor that differs (`ok` when none)."""
    case = await _case(client, case_id)
    return await run_in_threadpool(check_case, engine, case)
