import threading
import uuid
from datetime import timedelta

from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.worker import Worker

from activities.case import CaseActivities
from tests.helpers import EXECUTOR, POLICY, case_state, start_case
from whistle.domain import *
from workflows.case import CaseWorkflow


async def test_explore(time_env, engine):
    client = time_env.client
    acts = CaseActivities(engine, POLICY)
    gate = threading.Event()

    @activity.defn(name=ActivityName.PROJECT_CASE)
    def project(p: Projection) -> int:
        if p.state.status == CaseStatus.CLOSED:
            gate.wait(10)
        return acts.project_case(p)

    worker = Worker(client, task_queue=f"tq-{uuid.uuid4().hex}", workflows=[CaseWorkflow],
                    activities=[acts.load_policy, acts.plan_deadlines, project], activity_executor=EXECUTOR)
    async with worker:
        st = case_state(engine, ["xjk-police"], category="neighbour")
        h = await start_case(client, worker, st)
        d = await h.describe()
        print("SA", d.typed_search_attributes)
        uh = await h.start_update(CaseWorkflow.record_outcome, RecordOutcome(actor="c", kind=OutcomeKind.WITHDRAWN, summary="w"), wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        s = await h.query(CaseWorkflow.state)
        print(s.status)
        print("desc", (await h.describe()).status)
        try:
            await h.execute_update(CaseWorkflow.report_in, ReportIn(actor="a", department="xjk-police"))
        except WorkflowUpdateFailedError as e:
            print("rejected", type(e.cause), e.cause.type, e.cause)
        except Exception as e:
            print("other", type(e), e)
        gate.set()
        print(await uh.result())
        r = await h.result()
        print(r.status)
        try:
            await h.execute_update(CaseWorkflow.report_in, ReportIn(actor="a", department="xjk-police"))
        except WorkflowUpdateFailedError as e:
            print("rejected", type(e.cause), e.cause.type, e.cause)
        except Exception as e:
            print("other", type(e), e, getattr(e, "status", None), getattr(e, "cause", None))
        try:
            print(await h.query(CaseWorkflow.state))
        except Exception as e:
            print("qother", type(e), e)
