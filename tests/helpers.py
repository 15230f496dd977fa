"""Builders shared by the tests: a case input resolved against the sample reference data,
and a worker on a fresh task queue."""

from __future__ import annotations

import re
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.case import CaseActivities
from whistle import identity
from whistle.db import make_engine
from whistle.domain import CaseIntake, CaseStart, CaseState, Level, Role, workflow_id
from whistle.models import AppUser
from whistle.reference import department_refs, node_path
from workflows.case import CaseWorkflow

SAMPLE_POLICY = Path(__file__).resolve().parent.parent / "whistle" / "data" / "policy.yaml"
EXECUTOR = ThreadPoolExecutor(max_workers=8)


def hours_ladder_policy(path: Path) -> Path:
    """The sample policy with its ladder in plain hours (催办 at once, 督办 24 h later, 提级
    every 48 h): the ladder's mechanics are tested at fixed offsets whatever weekday a test
    happens to run on. The sample's working-day ladder has tests of its own."""
    doc = yaml.safe_load(SAMPLE_POLICY.read_text(encoding="utf-8"))
    doc["version"] = f"{doc['version']}+hours-ladder"
    doc["defaults"]["ladder"] = [
        {"action": "remind", "after_hours": 0},
        {"action": "notify_supervisor", "after_hours": 24},
        {"action": "raise", "after_hours": 48, "notify": ["centre", "supervisor"]}]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


POLICY = hours_ladder_policy(Path(tempfile.mkdtemp(prefix="whistle-tests-")) / "policy.yaml")


def new_worker(client: Client, engine: Engine, policy: Path = POLICY) -> Worker:
    """A worker with every case activity, on a task queue of its own."""
    acts = CaseActivities(engine, policy)
    return Worker(
        client,
        task_queue=f"tq-{uuid.uuid4().hex[:12]}",
        workflows=[CaseWorkflow],
        activities=acts.all(),
        activity_executor=EXECUTOR,
    )


def case_state(
    engine: Engine,
    departments: list[str],
    *,
    category: str = "land",
    location: str = "jiulong",
    level: Level = Level.TOWN,
    case_id: str | None = None,
) -> CaseState:
    """A new case as the API would build it, with the given departments summoned."""
    with Session(engine) as session:
        path = node_path(session, location)
        refs, unknown = department_refs(session, departments)
    assert path is not None and not unknown
    owner_path = [n for n in path if n.level.rank <= level.rank]
    case_id = case_id or uuid.uuid4().hex[:16]
    start = CaseStart(
        case_id=case_id, request_id=uuid.uuid4().hex, actor="coordinator-1",
        intake=CaseIntake(category=category, title="土地使用权转让纠纷",
                          description="多年前的土地使用权转让纠纷，当事人向街道综治中心求助",
                          location=location, level=level),
        path=path, departments=refs,
    )
    return CaseState(start=start, level=level, owner=owner_path[-1].code)


async def start_case(client: Client, worker: Worker, state: CaseState) -> WorkflowHandle:
    """Start the case workflow and wait until it is open and projected."""
    handle = await client.start_workflow(
        CaseWorkflow.run, state, id=workflow_id(state.case_id), task_queue=worker.task_queue
    )
    await handle.execute_update(CaseWorkflow.opened)
    return handle


# --- signed-in test clients -----------------------------------------------------------------

DEPARTMENT_STEP = re.compile(r"/summonses/([a-z0-9][a-z0-9_-]*)/"
                             r"(report-in|sign-off|return|extension)$")


class TestUsers:
    """Users and bearer tokens made on demand in a test's read model (no passwords, so no
    argon2 cost). `headers(...)` signs a request in as a given user."""

    __test__ = False  # not a test class

    def __init__(self, database_url: str, secret_key: str) -> None:
        self.engine = make_engine(database_url)
        self.secret_key = secret_key
        self.tokens: dict[str, str] = {}

    def token(self, username: str, role: Role | str, jurisdiction: str = "",
              department: str | None = None) -> str:
        if username not in self.tokens:
            with Session(self.engine) as session:
                if session.get(AppUser, username) is None:
                    identity.create_user(session, username=username, display_name=username,
                                         role=role, jurisdiction=jurisdiction,
                                         department=department)
                token, _ = identity.issue_token(
                    session, secret_key=self.secret_key, username=username,
                    kind=identity.TokenKind.API, name="test", ttl=timedelta(days=1))
                session.commit()
            self.tokens[username] = token
        return self.tokens[username]

    def headers(self, username: str, role: Role | str, jurisdiction: str = "",
                department: str | None = None) -> dict[str, str]:
        token = self.token(username, role, jurisdiction, department)
        return {"Authorization": f"Bearer {token}"}

    def default_for(self, method: str, path: str) -> dict[str, str]:
        """Who a test request acts as when it names no one: the summoned department's staff
        for a department step, the auditor for /audit, the admin for user and reference
        administration, else the city coordinator (whose area is everything)."""
        if m := DEPARTMENT_STEP.search(path):
            return self.headers(f"staff-{m.group(1)}", Role.DEPARTMENT, department=m.group(1))
        if "/api/v1/audit/" in path:
            return self.headers("auditor", Role.AUDITOR, "huizhou")
        if "/api/v1/users" in path or (method == "PUT" and "/reference/" in path):
            return self.headers("admin", Role.ADMIN, "huizhou")
        return self.headers("coordinator-city", Role.COORDINATOR, "huizhou")

    async def sign_in_hook(self, request: httpx.Request) -> None:
        if "authorization" not in request.headers and \
                "x-test-anonymous" not in request.headers:
            request.headers.update(self.default_for(request.method, request.url.path))

    def client(self, app: object, base_url: str = "http://whistle") -> httpx.AsyncClient:
        """An httpx client on `app` that signs each request in (see `default_for`)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                 base_url=base_url,
                                 event_hooks={"request": [self.sign_in_hook]})

    def close(self) -> None:
        self.engine.dispose()


def write_policy(path: Path, report_in_seconds: dict[str, float], tag: str = "test") -> Path:
    """The sample policy with short report-in clocks for some categories (seconds), whose
    missed clock takes one ladder step (a reminder to the department) and stops there: a
    clock case ends with opened, summoned, (clock_warning,) clock_missed, escalated."""
    doc = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    doc["version"] = f"{doc['version']}+{tag}"
    for category, seconds in report_in_seconds.items():
        doc["categories"][category].update(
            report_in_hours=seconds / 3600, ladder=[{"action": "remind", "after_hours": 0}])
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
