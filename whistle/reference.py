"""Reference data as data: the hierarchy, the departments and the case categories.

Loaded from a YAML file (a Huizhou sample ships in whistle/data/) into the read model,
and read back to resolve a new case: where it sits, which centre owns it, which departments
a category needs at that level."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from whistle.db import session_scope
from whistle.domain import Code, DepartmentRef, Level, Node
from whistle.models import Category, Department, Jurisdiction


class ReferenceError(ValueError):
    """The reference file cannot be used; the message names the file and the entry."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=200)


class _JurisdictionIn(_Entry):
    level: Level
    parent: Code | None


class _DepartmentIn(_Entry):
    kind: Code
    jurisdiction: Code
    supervisor: Code | None


class ReferenceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample: bool = False
    description: str = ""
    jurisdictions: list[_JurisdictionIn] = Field(min_length=1)
    departments: list[_DepartmentIn] = Field(default_factory=list)
    categories: list[_Entry] = Field(min_length=1)


def read_reference(path: Path) -> ReferenceFile:
    """Parse and check the reference file at `path`."""
    try:
        spec = ReferenceFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except OSError as e:
        raise ReferenceError(f"{path}: cannot read: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ReferenceError(f"{path}: not valid YAML: {e}") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReferenceError(f"{path}: {where}: {first['msg']}") from e
    _check_links(path, spec)
    return spec


def _check_links(path: Path, spec: ReferenceFile) -> None:
    levels: dict[str, Level] = {}
    order = list(Level)
    for j in spec.jurisdictions:
        if j.code in levels:
            raise ReferenceError(f"{path}: jurisdiction {j.code} is listed twice")
        if j.parent is None and j.level != Level.CITY:
            raise ReferenceError(f"{path}: jurisdiction {j.code} has no parent")
        if j.parent is not None:
            if j.parent not in levels:
                raise ReferenceError(f"{path}: jurisdiction {j.code}: parent {j.parent} "
                                     "is unknown or listed after it")
            if order.index(j.level) != order.index(levels[j.parent]) + 1:
                raise ReferenceError(f"{path}: jurisdiction {j.code}: a {j.level} cannot sit "
                                     f"under a {levels[j.parent]}")
        levels[j.code] = j.level
    codes = {d.code for d in spec.departments}
    for d in spec.departments:
        if d.jurisdiction not in levels:
            raise ReferenceError(f"{path}: department {d.code}: unknown jurisdiction "
                                 f"{d.jurisdiction}")
        if d.supervisor is not None and d.supervisor not in codes:
            raise ReferenceError(f"{path}: department {d.code}: unknown supervisor "
                                 f"{d.supervisor}")


def load_reference(engine: Engine, path: Path) -> dict[str, int]:
    """Write the reference file into the database (insert or update; nothing deleted)."""
    spec = read_reference(path)
    paths: dict[str, str] = {}
    with session_scope(engine) as session:
        for j in spec.jurisdictions:
            paths[j.code] = (paths[j.parent] if j.parent else "/") + j.code + "/"
            session.merge(Jurisdiction(path=paths[j.code], **j.model_dump()))
        for d in spec.departments:
            session.merge(Department(**d.model_dump()))
        for c in spec.categories:
            session.merge(Category(**c.model_dump()))
    return {"jurisdictions": len(spec.jurisdictions), "departments": len(spec.departments),
            "categories": len(spec.categories)}


# --- look-ups for a new case --------------------------------------------------------------


class LookupFailed(ValueError):
    """A code in a request does not resolve; `field` names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Placement:
    """Where a case sits: the path city … place, the owning level and its centre."""

    path: list[Node]
    level: Level

    @property
    def owner_path(self) -> list[Node]:
        """City … owning centre."""
        return [n for n in self.path if n.level.rank <= self.level.rank]

    @property
    def owner(self) -> str:
        return self.owner_path[-1].code


def place(session: Session, category: str, location: str, level: Level | None) -> Placement:
    """Resolve a new case's category, place and owning level, or raise LookupFailed."""
    if session.get(Category, category) is None:
        raise LookupFailed("category", f"unknown category {category!r}")
    path = node_path(session, location)
    if path is None:
        raise LookupFailed("location", f"unknown jurisdiction {location!r}")
    level = level or default_level(path)
    if level == Level.GRID or level not in {n.level for n in path}:
        raise LookupFailed("level", f"{location} has no {level} centre above it")
    return Placement(path=path, level=level)


def node_path(session: Session, code: str) -> list[Node] | None:
    """The nodes from the city down to `code`, or None if `code` is unknown."""
    j = session.get(Jurisdiction, code)
    if j is None:
        return None
    codes = [c for c in j.path.strip("/").split("/") if c]
    rows = {r.code: r for r in session.exec(select(Jurisdiction).where(
        Jurisdiction.code.in_(codes)))}  # type: ignore[attr-defined]
    return [Node(code=c, level=Level(rows[c].level)) for c in codes]


def default_level(path: list[Node]) -> Level:
    """A case is owned by the lowest centre above its place: a grid's case by its village."""
    level = path[-1].level
    return Level.VILLAGE if level == Level.GRID else level


def route(session: Session, lead: str | None, co: list[str], owner_path: list[Node]
          ) -> list[DepartmentRef]:
    """For the lead kind and each co-department kind, the unit nearest the owning centre
    going upwards (the town police station before the county bureau); the lead first."""
    kinds = ([lead] if lead else []) + [k for k in co if k != lead]
    found: list[DepartmentRef] = []
    for kind in kinds:
        for node in reversed(owner_path):
            d = session.exec(select(Department).where(
                Department.kind == kind, Department.jurisdiction == node.code)).first()
            if d is not None:
                found.append(DepartmentRef(code=d.code, supervisor=d.supervisor,
                                           lead=kind == lead))
                break
    return found


def department_refs(session: Session, codes: list[str]) -> tuple[list[DepartmentRef], list[str]]:
    """The refs of known departments among `codes`, and the codes that are unknown."""
    rows = {d.code: d for d in session.exec(select(Department).where(
        Department.code.in_(codes)))}  # type: ignore[attr-defined]
    refs = [DepartmentRef(code=c, supervisor=rows[c].supervisor) for c in codes if c in rows]
    return refs, [c for c in codes if c not in rows]
