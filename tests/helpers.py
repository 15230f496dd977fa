"""Builders shared by the tests: a case input resolved against the sample reference data,
and a worker on a fresh task queue."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.case import CaseActivities
from whistle.domain import CaseIntake, CaseStart, CaseState, Level, workflow_id
from whistle.reference import department_refs, node_path
from workflows.case import CaseWorkflow

POLICY = Path(__file__).resolve().parent.parent / "whistle" / "data" / "policy.yaml"
EXECUTOR = ThreadPoolExecutor(max_workers=8)


def new_worker(client: Client, engine: Engine, policy: Path = POLICY) -> Worker:
    """A worker with every case activity, on a task queue of its own."""
    acts = CaseActivities(engine, policy)
    return Worker(
        client,
        task_queue=f"tq-{uuid.uuid4().hex[:12]}",
        workflows=[CaseWorkflow],
        activities=[acts.load_policy, acts.plan_deadlines, acts.project_case],
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
