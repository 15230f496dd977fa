"""The worker runs case workflows outside the Temporal sandbox unless told otherwise, and
the suite runs them inside it: the sandbox's rules are enforced where workflow code is
tested, its cost is not paid where cases run."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from whistle.settings import Settings
from worker import build_worker


def _runner(client: Client, settings: Settings) -> object:
    with ThreadPoolExecutor(max_workers=1) as executor:
        worker = build_worker(client, settings, executor, create_engine("sqlite://"))
        return worker.config()["workflow_runner"]


@pytest.mark.parametrize(("sandbox", "runner"), [(False, UnsandboxedWorkflowRunner),
                                                 (True, SandboxedWorkflowRunner)])
async def test_worker_runner_follows_the_setting(time_env: WorkflowEnvironment, tmp_path: Path,
                                                 sandbox: bool, runner: type) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/r.db", workflow_sandbox=sandbox,
                        task_queue=f"runner-{uuid.uuid4().hex[:12]}")
    assert isinstance(_runner(time_env.client, settings), runner)


def test_production_default_is_unsandboxed_and_the_suite_sandboxed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().workflow_sandbox  # tests/conftest.py: every in-process worker
    monkeypatch.delenv("WHISTLE_WORKFLOW_SANDBOX")
    assert not Settings(_env_file=None).workflow_sandbox  # type: ignore[call-arg]
