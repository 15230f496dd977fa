"""Work-meeting digests (工作例会): one per centre and period, made by the centre's
Temporal Schedule. Coordinators and supervisors read the digests of centres in their
area; auditors read all."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func
from sqlmodel import Session, col, select

from api.access import DigestReader, Permission, record_denial
from api.deps import SessionDep
from api.errors import not_found
from api.schemas import Local, Page
from whistle import digests
from whistle.domain import Role
from whistle.identity import Principal
from whistle.models import DigestRecord

router = APIRouter(prefix="/digests", tags=["digests"])

DigestId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class DigestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    centre: str
    period_start: Local
    period_end: Local
    created_at: Local
    counts: dict[str, Any]


class DigestDetail(DigestOut):
    cases: list[dict[str, Any]]


def _visible(p: Principal, d: DigestRecord) -> bool:
    return p.role == Role.AUDITOR or p.covers(d.centre_path)


def _digest(session: Session, p: Principal, request: Request, digest_id: int) -> DigestRecord:
    d = session.get(DigestRecord, digest_id)
    if d is None:
        raise not_found("digest", str(digest_id))
    if not _visible(p, d):
        raise record_denial(session, p, request, Permission.DIGEST_READ,
                            f"the centre {d.centre} is outside {p.jurisdiction}")
    return d


@router.get("", response_model=Page[DigestOut])
def list_digests(
    session: SessionDep, who: DigestReader,
    centre: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[DigestOut]:
    """Digests of the centres in my area, newest period first."""
    q = select(DigestRecord)
    if who.role != Role.AUDITOR:
        q = q.where(col(DigestRecord.centre_path).startswith(who.jurisdiction_path,
                                                             autoescape=True))
    if centre is not None:
        q = q.where(DigestRecord.centre == centre)
    total = session.exec(select(func.count()).select_from(q.subquery())).one()
    rows = session.exec(q.order_by(col(DigestRecord.period_end).desc(),
                                   col(DigestRecord.centre)).limit(limit).offset(offset))
    return Page(items=[DigestOut.model_validate(d) for d in rows], total=total, limit=limit,
                offset=offset)


@router.get("/{digest_id}.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def digest_csv(digest_id: DigestId, request: Request, session: SessionDep, who: DigestReader
               ) -> Response:
    """The digest as CSV: the counts and KPIs, a blank line, then one line per case."""
    d = _digest(session, who, request, digest_id)
    name = f"digest-{d.centre}-{d.period_end.date()}.csv"
    return Response(digests.to_csv(d), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/{digest_id}", response_model=DigestDetail)
def get_digest(digest_id: DigestId, request: Request, session: SessionDep, who: DigestReader
               ) -> DigestDetail:
    """One digest: counts, KPIs and the cases it lists."""
    return DigestDetail.model_validate(_digest(session, who, request, digest_id))
