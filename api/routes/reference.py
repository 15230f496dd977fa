"""Reference data (read-only here): jurisdictions, departments, categories, and each
department's inbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlmodel import col, select

from api import services
from api.deps import SessionDep
from api.errors import not_found
from api.schemas import Category, Department, InboxItem, Jurisdiction, Page
from whistle import models
from whistle.domain import Code, Level

router = APIRouter(tags=["reference"])


@router.get("/reference/jurisdictions", response_model=list[Jurisdiction])
def jurisdictions(session: SessionDep, level: Level | None = None, parent: Code | None = None
                  ) -> list[models.Jurisdiction]:
    """The hierarchy: city → county → town → village → grid."""
    q = select(models.Jurisdiction).order_by(col(models.Jurisdiction.path))
    if level is not None:
        q = q.where(models.Jurisdiction.level == level)
    if parent is not None:
        q = q.where(models.Jurisdiction.parent == parent)
    return list(session.exec(q))


@router.get("/reference/departments", response_model=list[Department])
def departments(session: SessionDep, kind: Code | None = None,
                jurisdiction: Code | None = None) -> list[models.Department]:
    """Departments that can be summoned, by kind and the node they sit at."""
    q = select(models.Department).order_by(col(models.Department.code))
    if kind is not None:
        q = q.where(models.Department.kind == kind)
    if jurisdiction is not None:
        q = q.where(models.Department.jurisdiction == jurisdiction)
    return list(session.exec(q))


@router.get("/reference/categories", response_model=list[Category])
def categories(session: SessionDep) -> list[models.Category]:
    """Case categories."""
    return list(session.exec(select(models.Category).order_by(col(models.Category.code))))


@router.get("/departments/{department}/summonses", response_model=Page[InboxItem],
            tags=["departments"])
def department_inbox(
    department: Annotated[Code, Path()],
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[InboxItem]:
    """A department's inbox: its open summonses, soonest deadline first."""
    if session.get(models.Department, department) is None:
        raise not_found("department", department)
    return services.inbox(session=session, department=department, limit=limit, offset=offset)
