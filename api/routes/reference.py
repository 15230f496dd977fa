"""Reference data: jurisdictions, departments, categories (an admin adds or changes a
department here; whole files load with `whistle load-reference`), and each department's
inbox."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlmodel import col, select

from api import services
from api.access import InboxReader, ReferenceReader, ReferenceWriter
from api.deps import SessionDep
from api.errors import invalid, not_found
from api.schemas import Category, Department, InboxItem, Jurisdiction, Page
from whistle import models
from whistle.domain import Code, Level

router = APIRouter(tags=["reference"])


@router.get("/reference/jurisdictions", response_model=list[Jurisdiction])
def jurisdictions(session: SessionDep, who: ReferenceReader, level: Level | None = None,
                  parent: Code | None = None) -> list[models.Jurisdiction]:
    """The hierarchy: city → county → town → village → grid."""
    q = select(models.Jurisdiction).order_by(col(models.Jurisdiction.path))
    if level is not None:
        q = q.where(models.Jurisdiction.level == level)
    if parent is not None:
        q = q.where(models.Jurisdiction.parent == parent)
    return list(session.exec(q))


@router.get("/reference/departments", response_model=list[Department])
def departments(session: SessionDep, who: ReferenceReader, kind: Code | None = None,
                jurisdiction: Code | None = None) -> list[models.Department]:
    """Departments that can be summoned, by kind and the node they sit at."""
    q = select(models.Department).order_by(col(models.Department.code))
    if kind is not None:
        q = q.where(models.Department.kind == kind)
    if jurisdiction is not None:
        q = q.where(models.Department.jurisdiction == jurisdiction)
    return list(session.exec(q))


@router.get("/reference/categories", response_model=list[Category])
def categories(session: SessionDep, who: ReferenceReader) -> list[models.Category]:
    """Case categories."""
    return list(session.exec(select(models.Category).order_by(col(models.Category.code))))


@router.get("/departments/{department}/summonses", response_model=Page[InboxItem],
            tags=["departments"])
def department_inbox(
    department: Annotated[Code, Path()],
    session: SessionDep,
    who: InboxReader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[InboxItem]:
    """A department's inbox: its open summonses, soonest deadline first."""
    if session.get(models.Department, department) is None:
        raise not_found("department", department)
    return services.inbox(session=session, department=department, limit=limit, offset=offset)


class DepartmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Code
    jurisdiction: Code
    name_zh: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=100)]
    name_en: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=200)]
    supervisor: Code | None = None


@router.put("/reference/departments/{department}", response_model=Department)
def put_department(department: Annotated[Code, Path()], body: DepartmentBody,
                   session: SessionDep, who: ReferenceWriter) -> models.Department:
    """Add a department or change one (admins). Cases already summoned keep what they
    were given; new summonses use the new data."""
    if session.get(models.Jurisdiction, body.jurisdiction) is None:
        raise invalid("jurisdiction", f"unknown jurisdiction {body.jurisdiction!r}")
    if body.supervisor is not None and body.supervisor != department and \
            session.get(models.Department, body.supervisor) is None:
        raise invalid("supervisor", f"unknown department {body.supervisor!r}")
    row = session.get(models.Department, department) or models.Department(code=department)
    for name, value in body.model_dump().items():
        setattr(row, name, value)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row
