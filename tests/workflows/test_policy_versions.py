"""A policy edit reaches new cases only, unless a coordinator applies it to an open case,
which is recorded as a step."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from tests.helpers import POLICY, case_state, new_worker, start_case
from tests.workflows.support import refs
from whistle.domain import ApplyPolicy, EventKind, SummonMore
from workflows.case import CaseWorkflow


async def test_policy_edit_changes_no_running_case_until_applied(
        time_env: WorkflowEnvironment, engine: Engine, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    shutil.copy(POLICY, policy)
    client = time_env.client
    async with new_worker(client, engine, policy=policy) as worker:
        a = await start_case(client, worker, case_state(engine, ["xjk-petition"]))
        before = (await a.query(CaseWorkflow.state)).policy
        assert before is not None and before.sign_off_hours == 240

        policy.write_text(policy.read_text().replace("sign_off_hours: 240",
                                                     "sign_off_hours: 100"))
        b = await start_case(client, worker, case_state(engine, ["xjk-petition"]))
        b_state = await b.query(CaseWorkflow.state)
        assert b_state.policy is not None and b_state.policy.version != before.version
        s = b_state.summonses[0]
        assert s.sign_off_due - s.summoned_at == timedelta(hours=100)

        # The running case keeps its own clocks for what it does next.
        await a.execute_update(CaseWorkflow.summon_more, SummonMore(
            actor="coordinator-1", departments=refs(engine, "xjk-police")))
        a_state = await a.query(CaseWorkflow.state)
        assert a_state.policy == before
        police = a_state.current("xjk-police")
        assert police is not None
        assert police.sign_off_due - police.summoned_at == timedelta(hours=240)

        # Applying the new version is a recorded step; what comes after follows it.
        await a.execute_update(CaseWorkflow.apply_policy, ApplyPolicy(
            actor="coordinator-1", reason="县里新派单目录自11月起执行"))
        await a.execute_update(CaseWorkflow.summon_more, SummonMore(
            actor="coordinator-1", departments=refs(engine, "xjk-justice")))
        a_state = await a.query(CaseWorkflow.state)
        applied = [e for e in a_state.events if e.kind == EventKind.POLICY_APPLIED]
        assert [(e.actor, e.data["from_version"], e.data["to_version"]) for e in applied] == [
            ("coordinator-1", before.version, b_state.policy.version)]
        justice = a_state.current("xjk-justice")
        assert justice is not None
        assert justice.sign_off_due - justice.summoned_at == timedelta(hours=100)
        assert police.sign_off_due == a_state.current("xjk-police").sign_off_due  # stands

        with pytest.raises(WorkflowUpdateFailedError) as e:
            await a.execute_update(CaseWorkflow.apply_policy, ApplyPolicy(
                actor="coordinator-1", reason="again"))
        assert isinstance(e.value.cause, ApplicationError)
        assert e.value.cause.type == "policy_unchanged"
        for h in (a, b):
            await h.terminate("test over")
