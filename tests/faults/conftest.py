"""Fixtures of the fault suite (issue #8): the real stack — Temporal dev servers, `python
worker.py` processes, the API (in this process, or uvicorn as a process of its own) and the
read model — any part of which a test can kill, freeze, lock or restart.

Every process a test starts is stopped by its PID when the test ends (SIGCONT first, in
case the test left it frozen, then SIGTERM, then SIGKILL). Their output goes to log files
under the test's tmp_path; the tails are printed when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from api.main import create_app
from tests import helpers
from tests.conftest import _binary, empty_read_model, prepare_read_model
from tests.helpers import TestUsers
from whistle.search_attributes import dev_server_args
from whistle.settings import PROJECT_ROOT, Settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: kills, freezes and restarts parts of the real stack and checks "
                   "that nothing is lost or doubled (issue #8); -m 'not faults' skips them")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


# --- the read model -------------------------------------------------------------------------


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The read model of one fault test: a SQLite file by default; a test parametrised with
    `@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)` also
    runs on a schema of its own at WHISTLE_TEST_POSTGRES_URL (skipped when that is unset)."""
    with empty_read_model(request.param, tmp_path) as url:
        yield url


def write_policy(path: Path, report_in_seconds: dict[str, float]) -> Path:
    return helpers.write_policy(path, report_in_seconds, tag="faults")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings of one fault test: its read model, its task queue, and a policy whose
    neighbour and family cases miss their report-in clock 15 and 40 seconds after opening
    (a test may rewrite the file before it starts a worker)."""
    prepare_read_model(database_url)
    policy = write_policy(tmp_path / "policy.yaml", {"neighbour": 15, "family": 40})
    return Settings(env="test", database_url=database_url, policy_file=policy,
                    task_queue=f"tq-{uuid.uuid4().hex[:12]}")


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """One process started by a test, known by its PID."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """kill -9, and wait until it is gone."""
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGCONT (it may be frozen), SIGTERM, then SIGKILL if it does not go in 15 s."""
        if not self.alive:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Procs:
    """The processes of one test."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(exist_ok=True)
        self.children: list[Child] = []

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> Child:
        n = sum(c.name.startswith(name) for c in self.children) + 1
        child = Child(f"{name}-{n}", cmd, env, self.log_dir / f"{name}-{n}.log")
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Procs]:
    made = Procs(tmp_path / "logs")
    yield made
    made.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for child in made.children:
            print(f"\n--- {child.name} (pid {child.pid}) log tail ---\n{child.tail()}")


async def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.2) -> None:
    """Poll `predicate` (sync or async) until true; fail the test naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)


# The SDK's core logs every retried call at WARN to stderr; while a test has the server
# down on purpose that is hundreds of lines. The test's own figures say what happened.
@functools.cache
def _quiet_runtime() -> Runtime:
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))


async def connect(address: str) -> Client:
    return await Client.connect(address, data_converter=pydantic_data_converter,
                                runtime=_quiet_runtime())


class DevServer:
    """A file-backed Temporal dev server (free port) that a test can kill, freeze and start
    again on the same port and file, the way `make run` starts it (scripts/dev.py)."""

    def __init__(self, procs: Procs, db_file: Path) -> None:
        self.procs, self.db_file = procs, db_file
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.child: Child | None = None

    async def start(self) -> float:
        """Start it; returns when it answers (the seconds that took)."""
        began = time.monotonic()
        self.child = self.procs.spawn("temporal", [
            _binary("temporal"), "server", "start-dev", "--db-filename", str(self.db_file),
            "--ip", "127.0.0.1", "--port", str(self.port), "--headless",
            "--namespace", "default", "--log-level", "error",
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=full",
            *dev_server_args(),
        ], dict(os.environ))
        await wait_until(self._answers, 60, f"the Temporal dev server on {self.address}",
                         every=0.3)
        return time.monotonic() - began

    async def _answers(self) -> bool:
        assert self.child is not None
        if not self.child.alive:
            pytest.fail(f"the Temporal dev server exited:\n{self.child.tail()}")
        try:
            client = await connect(self.address)
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
            return True
        except Exception:
            return False

    def kill(self) -> None:
        assert self.child is not None
        self.child.kill()


class Relay:
    """A TCP relay in this process between a worker and the Temporal server, which can cut
    the worker off: after `cut()` nothing passes either way (a network partition), so not
    even bytes already on their way to the server can reach it later."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.is_cut = False
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self.address

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        if self.is_cut:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        self.writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if self.is_cut:
                        return
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def cut(self) -> None:
        self.is_cut = True

    async def close(self) -> None:
        self.cut()
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def own_server(procs: Procs, tmp_path: Path) -> AsyncIterator[DevServer]:
    """A Temporal dev server of the test's own, persisted in tmp_path/temporal.db."""
    server = DevServer(procs, tmp_path / "temporal.db")
    await server.start()
    yield server


class Workers:
    """`python worker.py` processes on the test's task queue, against `address`."""

    def __init__(self, procs: Procs, settings: Settings, address: str) -> None:
        self.procs, self.settings, self.address = procs, settings, address

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "WHISTLE_ENV": "test",
            "WHISTLE_TEMPORAL_ADDRESS": self.address,
            "WHISTLE_DATABASE_URL": self.settings.database_url,
            "WHISTLE_TASK_QUEUE": self.settings.task_queue,
            "WHISTLE_POLICY_FILE": str(self.settings.policy_file),
            "WHISTLE_LOG_LEVEL": "WARNING",
            "WHISTLE_WORKFLOW_SANDBOX": "false",  # as in production: the faults hit that
            **extra,
        }

    async def start(self, client: Client, **extra_env: str) -> Child:
        """Start a worker; returns once it polls the task queue for activities."""
        child = self.procs.spawn("worker", [sys.executable, str(PROJECT_ROOT / "worker.py")],
                                 self.env(**extra_env))

        async def polling() -> bool:
            if not child.alive:
                pytest.fail(f"worker {child.pid} exited:\n{child.tail()}")
            resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                namespace="default", task_queue=TaskQueue(name=self.settings.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
            return any(p.identity.startswith(f"{child.pid}@") for p in resp.pollers)

        await wait_until(polling, 60, f"worker {child.pid} to poll", every=0.3)
        return child


class ApiProcess:
    """The API served by uvicorn in a process of its own, on a free port."""

    def __init__(self, procs: Procs, settings: Settings, address: str) -> None:
        self.procs, self.settings, self.address = procs, settings, address
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.child: Child | None = None

    async def start(self) -> Child:
        env = {
            **os.environ,
            "WHISTLE_ENV": "test",
            "WHISTLE_TEMPORAL_ADDRESS": self.address,
            "WHISTLE_DATABASE_URL": self.settings.database_url,
            "WHISTLE_TASK_QUEUE": self.settings.task_queue,
            "WHISTLE_POLICY_FILE": str(self.settings.policy_file),
            "WHISTLE_SECRET_KEY": self.settings.secret_key.get_secret_value(),
        }
        self.child = self.procs.spawn("api", [
            sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
            "--port", str(self.port), "--log-level", "warning"], env)
        child = self.child

        async def healthy() -> bool:
            if not child.alive:
                pytest.fail(f"the API process exited:\n{child.tail()}")
            try:
                async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as c:
                    return (await c.get("/api/v1/health")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, 60, f"the API on port {self.port}", every=0.3)
        return child


@asynccontextmanager
async def api_in_process(settings: Settings, client: Client, users: TestUsers
                         ) -> AsyncIterator[httpx.AsyncClient]:
    """The API in this process (its own engine and policy, `client` for Temporal), and an
    HTTP client on it that signs each request in as the user that fits it."""
    app = create_app(settings, client=client)
    async with app.router.lifespan_context(app), users.client(app) as api:
        yield api
