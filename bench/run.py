"""`make bench`: Whistle measured against bare Temporal and a peer engine, side by side, in
one invocation on one freshly started Temporal dev server (file-backed SQLite, WAL).

    .venv/bin/python bench/run.py            # the full run (about 15 minutes on 2 cores)
    .venv/bin/python bench/run.py --big      # 50,000 open cases instead of 10,000
    .venv/bin/python bench/run.py --smoke    # tiny sizes, under a minute (the smoke test)

Phases, in this order (bench/README.md has the figures and what they mean):

  lifecycle  for each (clients, size) — 10 clients once, 50 clients at three sizes (growth) —
             the same case shape three ways, one after the other:
               floor    bare Temporal: bench/floor_wf.py driven by a bare temporalio client,
                        its worker a child process (bench/floor_worker.py);
               whistle  the public HTTP API (token auth, validation, read model) served by
                        uvicorn, with the real worker.py, both child processes;
               peer     DBOS Transact on a SQLite system database (bench/peer_dbos.py, a
                        child process that runs its workflows and its clients);
             cases/s, p50/p95/p99 of the open-case and sign-off calls, the read-model lag
             after a sign-off's 200 (Whistle), CPU ms per case and peak RSS per process.
  profile    py-spy on the API and the worker during one more Whistle run.
  audit      bulk replay + cross-check (audit.bulk.audit_query) of the closed Whistle cases
             of the lifecycle runs: one process (one core), then the default.
  open       N cases opened through the API and left waiting on their clocks (start rate,
             RSS, database sizes), then a sample with short clocks (how late each fires vs
             due, idle), then every open case reported in and signed off.

Every child is started by this process, known by its PID, and stopped by it (SIGTERM to
its process group, then SIGKILL) on success, failure and Ctrl-C alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PY = sys.executable
BIN = Path(PY).parent
sys.path.insert(0, str(ROOT))

import floor_wf  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from temporalio.client import Client, WithStartWorkflowOperation  # noqa: E402
from temporalio.common import WorkflowIDConflictPolicy  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.runtime import (  # noqa: E402
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from whistle.search_attributes import dev_server_args  # noqa: E402

DEPARTMENTS = ["xjk-petition", "xjk-land-office", "xjk-law-enforcement"]
INTAKE = {
    "category": "land", "title": "九龙村土地使用权转让纠纷",
    "description": "多年前的土地使用权转让纠纷，当事人向街道综治中心求助",
    "parties": [{"name": "张某", "role": "applicant"}, {"name": "李某", "role": "respondent"}],
    "location": "jiulong", "level": "town", "source_channel": "walk_in",
    "departments": DEPARTMENTS,
}
SIGN_OFF = {"opinion": "同意联合调解", "actions_taken": "实地核查，参与联合调解"}
OUTCOME = {"kind": "mediated_agreement", "summary": "双方自愿达成和解",
           "agreement_text": "和解协议：……"}
FEEDBACK = {"satisfaction": "satisfied"}
CLOCK_CATEGORY = "neighbour"  # the category whose report-in clock the bench makes short


# --- processes ------------------------------------------------------------------------------


class Child:
    """A process this bench started, in a session of its own, output to a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path,
                 stdin: int | None = subprocess.DEVNULL, stdout_pipe: bool = False) -> None:
        self.name, self.log = name, log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=stdin,
            stdout=subprocess.PIPE if stdout_pipe else self._out, stderr=self._out,
            start_new_session=True, text=stdout_pipe or None)
        self.pid = self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM its process group (it leads it), then SIGKILL if it lingers."""
        if self.alive:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, sig)
                try:
                    self.proc.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._out.close()


class Children:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.all: list[Child] = []

    def spawn(self, name: str, cmd: list[str], env: dict[str, str], **kw: Any) -> Child:
        child = Child(name, cmd, env, self.log_dir / f"{name}.log", **kw)
        self.all.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.all):
            child.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(pred: Any, timeout: float, what: str, child: Child | None = None,
                     every: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if child is not None and not child.alive:
            raise RuntimeError(f"{child.name} exited while waiting for {what}:\n{child.tail()}")
        got = pred()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)


# --- measuring ------------------------------------------------------------------------------


class Monitor:
    """CPU times and RSS of the processes that matter, by name; a thread samples RSS so each
    phase knows its peak."""

    def __init__(self) -> None:
        self.procs: dict[str, psutil.Process] = {"bench": psutil.Process()}
        self.peak: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def add(self, name: str, pid: int) -> None:
        with self._lock:
            self.procs[name] = psutil.Process(pid)

    def _rss(self) -> dict[str, int]:
        out = {}
        with self._lock:
            procs = dict(self.procs)
        for name, p in procs.items():
            with contextlib.suppress(psutil.Error):
                out[name] = p.memory_info().rss
        return out

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for name, rss in self._rss().items():
                with self._lock:
                    self.peak[name] = max(self.peak.get(name, 0), rss)

    def cpu(self) -> dict[str, float]:
        out = {}
        with self._lock:
            procs = dict(self.procs)
        for name, p in procs.items():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                out[name] = t.user + t.system + t.children_user + t.children_system
        return out

    def rss_now(self) -> dict[str, float]:
        return {k: round(v / 2**20, 1) for k, v in self._rss().items()}

    @contextlib.contextmanager
    def phase(self, out: dict[str, Any], cases: int, names: list[str]) -> Iterator[None]:
        """Fill `out` with CPU ms per case and peak RSS (MB) of `names` over the block."""
        with self._lock:
            self.peak = {}
        before = self.cpu()
        try:
            yield
        finally:
            after = self.cpu()
            with self._lock:
                peak = dict(self.peak)
            rss_now = self._rss()
            out["cpu_ms_per_case"] = {n: round(1000 * (after[n] - before[n]) / max(cases, 1), 2)
                                      for n in names if n in after and n in before}
            out["peak_rss_mb"] = {n: round(max(peak.get(n, 0), rss_now.get(n, 0)) / 2**20, 1)
                                  for n in names}

    def close(self) -> None:
        self._stop.set()


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def dist(values: list[float], scale: float = 1000.0) -> dict[str, Any]:
    """p50/p95/p99/max in ms (of seconds given)."""
    if not values:
        return {"n": 0}
    return {"n": len(values), **{f"p{q}": round(scale * pct(values, q), 1)  # type: ignore[operator]
                                 for q in (50, 95, 99)},
            "max": round(scale * max(values), 1), "mean": round(scale * statistics.mean(values), 1)}


@dataclass
class Lat:
    """Latencies (seconds) by call kind, and what went wrong."""

    calls: dict[str, list[float]] = field(default_factory=lambda: {})
    errors: Counter[str] = field(default_factory=Counter)
    rm_lag: list[float] = field(default_factory=list)  # until GET /cases/{id} shows it
    rm_lag_db: list[float] = field(default_factory=list)  # until its row is in the database
    started: int = 0

    def add(self, kind: str, seconds: float) -> None:
        self.calls.setdefault(kind, []).append(seconds)


def run_figures(kind: str, clients: int, cases: int, wall: float, lat: Lat) -> dict[str, Any]:
    done = cases - sum(lat.errors.values())
    fig: dict[str, Any] = {
        "kind": kind, "clients": clients, "cases": cases, "wall_s": round(wall, 2),
        "cases_per_s": round(done / wall, 2) if wall else None,
        "open_ms": dist(lat.calls.get("open", [])),
        "sign_off_ms": dist(lat.calls.get("sign_off", [])),
        "step_ms": dist([x for k, v in lat.calls.items() if k != "open" for x in v]),
        "errors": dict(lat.errors),
    }
    if lat.rm_lag:
        fig["read_model_lag_ms"] = dist(lat.rm_lag)
    if lat.rm_lag_db:
        fig["read_model_row_lag_ms"] = dist(lat.rm_lag_db)
    return fig


async def clients_run(clients: int, cases: int, one: Any, until: float | None = None
                      ) -> float:
    """`clients` concurrent clients, each running cases one after another until `cases`
    have run (or, given `until`, a time.monotonic() deadline, no new case starts after it);
    the wall seconds it took."""
    todo = iter(range(cases))

    async def client() -> None:
        for i in todo:
            if until is not None and time.monotonic() > until:
                return
            await one(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0


# --- the floor: bare Temporal --------------------------------------------------------------


async def floor_case(client: Client, lat: Lat) -> None:
    wid = f"floor-{uuid.uuid4().hex[:16]}"
    t = time.perf_counter()
    start = WithStartWorkflowOperation(
        floor_wf.FloorCase.run, wid, id=wid, task_queue=floor_wf.TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    await client.execute_update_with_start_workflow(floor_wf.FloorCase.opened,
                                                    start_workflow_operation=start)
    lat.add("open", time.perf_counter() - t)
    h = client.get_workflow_handle(wid)
    for kind, update in (("report_in", floor_wf.FloorCase.report_in),
                         ("sign_off", floor_wf.FloorCase.sign_off)):
        for d in floor_wf.DEPARTMENTS:
            t = time.perf_counter()
            await h.execute_update(update, floor_wf.Step(d))
            lat.add(kind, time.perf_counter() - t)
    for kind, update in (("outcome", floor_wf.FloorCase.record_outcome),
                         ("close", floor_wf.FloorCase.close)):
        t = time.perf_counter()
        await h.execute_update(update)
        lat.add(kind, time.perf_counter() - t)


# --- Whistle through its HTTP API ------------------------------------------------------------


class Api:
    """Signed-in HTTP calls to the Whistle API: the coordinator opens and closes, each
    department's staff reports in and signs off with its own token."""

    def __init__(self, base_url: str, tokens: dict[str, str], clients: int,
                 db: Path | None = None) -> None:
        self.db = db
        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=120,
            limits=httpx.Limits(max_connections=clients + 10,
                                max_keepalive_connections=clients + 10))
        self.h = {who: {"Authorization": f"Bearer {tok}"} for who, tok in tokens.items()}

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, lat: Lat, kind: str, who: str, path: str, body: Any,
                   ok: tuple[int, ...] = (200,)) -> httpx.Response | None:
        t = time.perf_counter()
        try:
            r = await self.http.post(path, json=body, headers=self.h[who])
        except httpx.HTTPError as e:
            lat.errors[f"{kind}: {type(e).__name__}"] += 1
            return None
        lat.add(kind, time.perf_counter() - t)
        if r.status_code not in ok:
            code = r.json().get("code", "") if r.headers.get("content-type", "").startswith(
                "application/json") else ""
            lat.errors[f"{kind}: {r.status_code} {code}"] += 1
            return None
        return r

    async def open(self, lat: Lat, body: dict[str, Any]) -> str | None:
        r = await self.call(lat, "open", "coord", "/api/v1/cases", body, ok=(201,))
        return None if r is None else str(r.json()["case_id"])

    async def steps(self, lat: Lat, case_id: str, departments: list[str], *,
                    close: bool, measure_lag: bool) -> bool:
        base = f"/api/v1/cases/{case_id}"
        for d in departments:
            if await self.call(lat, "report_in", d, f"{base}/summonses/{d}/report-in", {}) is None:
                return False
        for i, d in enumerate(departments):
            r = await self.call(lat, "sign_off", d, f"{base}/summonses/{d}/sign-off", SIGN_OFF)
            if r is None:
                return False
            if measure_lag and i == 0:
                await self.lag(lat, case_id, d, r.json()["seq"])
        if close:
            if await self.call(lat, "outcome", "coord", f"{base}/outcome", OUTCOME) is None:
                return False
            if await self.call(lat, "feedback", "coord", f"{base}/feedback", FEEDBACK) is None:
                return False
        return True

    async def lag(self, lat: Lat, case_id: str, department: str, seq: int) -> None:
        """From a sign-off's 200 until its timeline row is in the read model's database,
        and until the case read through the API (GET /cases/{id}) shows it."""
        t = time.perf_counter()
        if self.db is not None:
            while time.perf_counter() - t < 30:
                if await asyncio.to_thread(_has_event, self.db, case_id, seq):
                    lat.rm_lag_db.append(time.perf_counter() - t)
                    break
                await asyncio.sleep(0.005)
        t = time.perf_counter()
        while time.perf_counter() - t < 30:
            r = await self.http.get(f"/api/v1/cases/{case_id}", headers=self.h["coord"])
            if r.status_code == 200 and any(
                    e["seq"] == seq and e["kind"] == "signed_off" and e["department"] == department
                    for e in r.json()["timeline"]):
                lat.rm_lag.append(time.perf_counter() - t)
                return
            await asyncio.sleep(0.005)
        lat.errors["read model never showed the sign-off"] += 1


def _has_event(db: Path, case_id: str, seq: int) -> bool:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT 1 FROM case_event WHERE case_id = ? AND seq = ? AND "
                            "kind = 'signed_off'", (case_id, seq)).fetchone() is not None
    finally:
        conn.close()


async def whistle_case(api: Api, lat: Lat, i: int, lag_every: int) -> None:
    lat.started += 1
    case_id = await api.open(lat, INTAKE)
    if case_id is None:
        return
    await api.steps(lat, case_id, DEPARTMENTS, close=True, measure_lag=i % lag_every == 0)


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    work: Path
    kids: Children
    mon: Monitor
    address: str = ""
    api_url: str = ""
    whistle_env: dict[str, str] = field(default_factory=dict)
    whistle_db: Path = Path()
    temporal_db: Path = Path()
    peer_db: Path = Path()
    floor_db: Path = Path()
    tokens: dict[str, str] = field(default_factory=dict)
    peer: Child | None = None
    client: Client | None = None
    whistle_client: Client | None = None


def quiet_runtime() -> Runtime:
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))


def write_policy(path: Path, clock_seconds: float) -> None:
    """The sample policy, but CLOCK_CATEGORY's report-in clock is `clock_seconds` long and
    its ladder one reminder: a clock-sample case ends opened, summoned, clock_warning,
    clock_missed, escalated."""
    doc = yaml.safe_load((ROOT / "whistle" / "data" / "policy.yaml").read_text(encoding="utf-8"))
    doc["version"] = f"{doc['version']}+bench"
    doc["categories"][CLOCK_CATEGORY].update(report_in_hours=clock_seconds / 3600,
                                             ladder=[{"action": "remind", "after_hours": 0}])
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def make_users(database_url: str, secret_key: str) -> dict[str, str]:
    """A coordinator and one staff member per department, each with an API token."""
    from sqlmodel import Session

    from whistle import identity
    from whistle.db import make_engine
    from whistle.domain import Role

    engine = make_engine(database_url)
    tokens = {}
    who = [("coord", "bench.coord", Role.COORDINATOR, "huizhou", None)]
    who += [(d, f"bench.{d}", Role.DEPARTMENT, "", d) for d in DEPARTMENTS]
    with Session(engine) as session:
        for key, username, role, node, dept in who:
            identity.create_user(session, username=username, display_name=username, role=role,
                                 jurisdiction=node, department=dept)
            token, _ = identity.issue_token(session, secret_key=secret_key, username=username,
                                            kind=identity.TokenKind.API, name="bench",
                                            ttl=timedelta(days=1))
            tokens[key] = token
        session.commit()
    engine.dispose()
    return tokens


async def start_stack(st: Stack, args: argparse.Namespace) -> None:
    port = free_port()
    st.address = f"127.0.0.1:{port}"
    st.temporal_db = st.work / "temporal.db"
    server = st.kids.spawn("temporal", [
        str(BIN / "temporal"), "server", "start-dev", "--db-filename", str(st.temporal_db),
        "--ip", "127.0.0.1", "--port", str(port), "--headless", "--namespace", "default",
        "--log-level", "error",
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=full",
        *dev_server_args()], dict(os.environ))
    st.mon.add("server", server.pid)

    async def answers() -> bool:
        try:
            st.client = await Client.connect(st.address, runtime=quiet_runtime())
            return True
        except Exception:
            return False

    await wait_until(answers, 60, "the Temporal dev server", server, every=0.3)
    st.whistle_client = await Client.connect(st.address, data_converter=pydantic_data_converter,
                                             runtime=quiet_runtime())

    # the floor's worker
    st.floor_db = st.work / "floor.db"
    floor = st.kids.spawn("floor-worker", [PY, str(BENCH / "floor_worker.py"), st.address,
                                           str(st.floor_db)], dict(os.environ))
    st.mon.add("floor_worker", floor.pid)

    # Whistle: read model, policy, users, worker, API
    st.whistle_db = st.work / "whistle.db"
    policy = st.work / "policy.yaml"
    write_policy(policy, args.clock_seconds)
    secret = secrets.token_urlsafe(48)
    st.whistle_env = {
        **os.environ, "WHISTLE_ENV": "development",
        "WHISTLE_TEMPORAL_ADDRESS": st.address,
        "WHISTLE_DATABASE_URL": f"sqlite:///{st.whistle_db}",
        "WHISTLE_TASK_QUEUE": "bench-whistle", "WHISTLE_POLICY_FILE": str(policy),
        "WHISTLE_SECRET_KEY": secret, "WHISTLE_LOG_LEVEL": "WARNING",
        # the worker's /metrics (on by default) on a port of its own, not the shared 9464
        "WHISTLE_WORKER_METRICS_PORT": str(free_port()),
    }
    init = subprocess.run([str(BIN / "whistle"), "init"], cwd=ROOT, env=st.whistle_env,
                          capture_output=True, text=True)
    if init.returncode:
        raise RuntimeError(f"whistle init failed:\n{init.stdout}\n{init.stderr}")
    st.tokens = make_users(st.whistle_env["WHISTLE_DATABASE_URL"], secret)
    worker = st.kids.spawn("worker", [PY, str(ROOT / "worker.py")], st.whistle_env)
    st.mon.add("worker", worker.pid)
    api_port = free_port()
    st.api_url = f"http://127.0.0.1:{api_port}"
    api = st.kids.spawn("api", [PY, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
                                "--port", str(api_port), "--log-level", "warning",
                                "--no-access-log"], st.whistle_env)
    st.mon.add("api", api.pid)

    # the peer
    st.peer_db = st.work / "dbos-system.db"
    st.peer = st.kids.spawn("peer", [PY, str(BENCH / "peer_dbos.py"), str(st.peer_db),
                                     str(st.work / "dbos-app.db"), str(args.peer_poll)],
                            dict(os.environ), stdin=subprocess.PIPE, stdout_pipe=True)
    st.mon.add("peer", st.peer.pid)

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as c:
                return (await c.get(f"{st.api_url}/api/v1/health")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(healthy, 90, "the Whistle API", api)
    for name, task_queue, child in (("floor", floor_wf.TASK_QUEUE, floor),
                                    ("whistle", "bench-whistle", worker)):
        await wait_until(lambda tq=task_queue: polling(st, tq), 90, f"the {name} worker", child)
    line = await asyncio.to_thread(st.peer.proc.stdout.readline)  # type: ignore[union-attr]
    if line.strip() != "ready":
        raise RuntimeError(f"the DBOS peer did not start ({line!r}):\n{st.peer.tail()}")


async def polling(st: Stack, task_queue: str) -> bool:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    assert st.client is not None
    resp = await st.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace="default", task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
    return len(resp.pollers) > 0


# --- phases ------------------------------------------------------------------------------------


async def run_floor(st: Stack, clients: int, cases: int, until: float | None = None
                    ) -> dict[str, Any]:
    lat = Lat()
    out: dict[str, Any] = {}
    assert st.client is not None

    async def one(i: int) -> None:
        lat.started += 1
        await _guard(floor_case(st.client, lat), lat)  # type: ignore[arg-type]

    with st.mon.phase(out, cases, ["server", "floor_worker", "bench"]):
        wall = await clients_run(clients, cases, one, until)
    _per_started(out, cases, lat.started)
    return {**run_figures("floor", clients, lat.started, wall, lat), **out}


def _per_started(out: dict[str, Any], asked: int, started: int) -> None:
    """A time-boxed run: CPU per case over the cases that ran, not those asked for."""
    if started != asked:
        out["cpu_ms_per_case"] = {k: round(v * asked / max(started, 1), 2)
                                  for k, v in out["cpu_ms_per_case"].items()}


async def _guard(coro: Any, lat: Lat) -> None:
    try:
        await coro
    except Exception as e:  # a failed case is counted, not fatal
        lat.errors[f"{type(e).__name__}: {str(e)[:80]}"] += 1


async def run_whistle(st: Stack, clients: int, cases: int, lag_every: int,
                      until: float | None = None) -> dict[str, Any]:
    lat = Lat()
    out: dict[str, Any] = {}
    api = Api(st.api_url, st.tokens, clients, st.whistle_db)
    try:
        with st.mon.phase(out, cases, ["server", "worker", "api", "bench"]):
            wall = await clients_run(clients, cases,
                                     lambda i: whistle_case(api, lat, i, lag_every), until)
    finally:
        await api.close()
    _per_started(out, cases, lat.started)
    return {**run_figures("whistle", clients, lat.started, wall, lat), **out}


async def run_peer(st: Stack, clients: int, cases: int, until: float | None = None
                   ) -> dict[str, Any]:
    assert st.peer is not None and st.peer.proc.stdin is not None
    out: dict[str, Any] = {}
    result = st.work / f"peer-{uuid.uuid4().hex[:6]}.json"
    with st.mon.phase(out, cases, ["peer"]):
        seconds = None if until is None else max(1.0, until - time.monotonic())
        st.peer.proc.stdin.write(json.dumps({"clients": clients, "cases": cases,
                                             "seconds": seconds, "out": str(result)}) + "\n")
        st.peer.proc.stdin.flush()
        while True:
            line = await asyncio.to_thread(st.peer.proc.stdout.readline)  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"the DBOS peer exited:\n{st.peer.tail()}")
            if line.strip() == "@@done":
                break
    r = json.loads(result.read_text())
    lat = Lat(calls=r["latencies"])
    _per_started(out, cases, r["cases"])
    return {**run_figures("peer", clients, r["cases"], r["wall"], lat), **out}


def db_size_mb(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    return round(total / 2**20, 1)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def lifecycle(st: Stack, args: argparse.Namespace, res: dict[str, Any]) -> None:
    runs: list[dict[str, Any]] = []
    res["lifecycle"] = runs
    plan = [(10, args.size10)] + [(50, s) for s in args.sizes]
    # Time boxes: what follows the lifecycle keeps its share of the budget; each run of
    # the lifecycle gets an equal part of the rest (a run that hits it stops starting
    # cases, and reports the cases that ran).
    end = args.deadline - _after_lifecycle(args)
    runs_left = len(plan) * (2 if args.no_peer else 3)
    for clients, size in plan:
        # the peer is several times slower: a share of each size, but never fewer cases
        # than two per client, or its "50 clients" would not all be busy
        peer_size = max(1, round(size * args.peer_share), 0 if args.smoke else 2 * clients)
        for kind in ("floor", "whistle", "peer"):
            print(f"  {kind:8} {clients:3} clients, "
                  f"{peer_size if kind == 'peer' else size} cases ...", end="", flush=True)
            la = load()
            if kind == "peer" and args.no_peer:
                print(" skipped")
                continue
            until = time.monotonic() + max(20.0, (end - time.monotonic()) / runs_left)
            runs_left -= 1
            if kind == "floor":
                fig = await run_floor(st, clients, size, until)
            elif kind == "whistle":
                fig = await run_whistle(st, clients, size, args.lag_every, until)
            else:
                fig = await run_peer(st, clients, peer_size, until)
            fig["load_before"] = la
            fig["size"] = size  # asked for (the peer ran a share of it; a time box may cut)
            runs.append(fig)
            print(f" {fig['cases']} ran, {fig['cases_per_s']} cases/s, sign-off p99 "
                  f"{fig['sign_off_ms'].get('p99')} ms, errors {sum(fig['errors'].values())}")


async def profile(st: Stack, args: argparse.Namespace, res: dict[str, Any]) -> None:
    """py-spy on the API and the worker during a Whistle run at 50 clients."""
    pyspy = BIN / "py-spy"
    if not pyspy.exists():
        res["profile"] = {"skipped": "py-spy not installed"}
        return
    out_dir = st.work / "profiles"
    out_dir.mkdir(exist_ok=True)
    spies = []
    pids = {n: p.pid for n, p in st.mon.procs.items() if n in ("api", "worker")}
    for name, pid in pids.items():
        raw = out_dir / f"{name}.txt"
        spies.append((name, raw, st.kids.spawn(f"py-spy-{name}", [
            str(pyspy), "record", "-p", str(pid), "-r", "100", "-f", "raw", "-o", str(raw),
            "--gil", "--nonblocking"], dict(os.environ))))
    await asyncio.sleep(1.0)
    fig = await run_whistle(st, 50, args.profile_cases, 10**9)
    for _, _, spy in spies:
        with contextlib.suppress(ProcessLookupError):
            os.kill(spy.pid, signal.SIGINT)  # py-spy writes its file on SIGINT
    for _, _, spy in spies:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.proc.wait(30)
    summary: dict[str, Any] = {"run": fig}
    keep = RESULTS / "profiles"
    keep.mkdir(parents=True, exist_ok=True)
    for name, raw, _ in spies:
        if raw.exists():
            shutil.copy(raw, keep / f"{args.stamp}-{name}.txt")
            summary[name] = summarise_profile(raw)
    res["profile"] = summary


OURS = ("api/", "activities/", "whistle/", "workflows/", "worker.py", "audit/")


def _ours(frame: str) -> bool:
    """py-spy names a frame "function (path:line)", the path short for our modules."""
    where = frame.rpartition("(")[2]
    return "site-packages" not in where and any(
        where.startswith(o) or f"/main/{o}" in where for o in OURS)


def _function(frame: str) -> str:
    """ "f (path:123)" -> "f (path)" """
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if name else frame


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """From py-spy's raw (collapsed) stacks, taken with --gil (only the thread running
    Python: where the CPU goes, not where threads wait): the share of samples by function
    (line numbers dropped) where the sample was taken (self) and anywhere on the stack
    (inclusive); and the same for our own code's functions."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_function(f) for f in stack.split(";")]
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count

    def share(c: Counter[str], pred: Any = lambda f: True) -> list[tuple[str, float]]:
        return [(f, round(100 * k / total, 1)) for f, k in c.most_common() if pred(f)][:top]

    if not total:
        return {"samples": 0}
    return {"samples": total, "self_top": share(self_c), "inclusive_top": share(incl),
            "ours_inclusive": share(incl, _ours), "ours_self": share(self_c, _ours)}


async def audit(st: Stack, args: argparse.Namespace, res: dict[str, Any]) -> None:
    from audit.bulk import audit_query
    from whistle.db import make_engine

    assert st.whistle_client is not None
    out: dict[str, Any] = {}
    closed = sum(r["cases"] - sum(r["errors"].values()) for r in res["lifecycle"]
                 if r["kind"] == "whistle") + res.get("profile", {}).get("run", {}).get("cases", 0)
    if closed < args.audit_cases:  # more closed cases, through the API like the others
        out["top_up"] = await run_whistle(st, 50, args.audit_cases - closed, 10**9,
                                          until=args.deadline - _open_reserve(args) - 60)
        print(f"  closed {out['top_up']['cases']} more cases for the audit (wanted "
              f"{args.audit_cases - closed})", flush=True)
    engine = make_engine(st.whistle_env["WHISTLE_DATABASE_URL"])
    query = "TaskQueue = 'bench-whistle' AND WhistleStatus = 'closed'"
    out["query"] = query
    try:
        for label in args.audit_modes:
            processes = 1 if label == "one_process" else None
            if label != "one_process" and \
                    time.monotonic() > args.deadline - _open_reserve(args) - 60:
                out[label] = {"skipped": "out of time"}
                continue
            fig: dict[str, Any] = {}
            t0 = time.perf_counter()
            cpu0 = _own_cpu()
            with st.mon.phase(fig, 1, ["server"]):
                report = await audit_query(st.whistle_client, engine, query,
                                           processes=processes)
            wall = time.perf_counter() - t0
            s = report.summary
            fig.update(cases=s.checked, histories=s.runs, ok=s.ok, errors=s.errors,
                       wall_s=round(wall, 2), histories_per_s=round(s.runs / wall, 1),
                       audit_cpu_ms_per_history=round(1000 * (_own_cpu() - cpu0) / max(s.runs, 1),
                                                      1),
                       server_cpu_ms_per_history=round(fig.pop("cpu_ms_per_case")["server"]
                                                       / max(s.runs, 1), 1))
            fig.pop("peak_rss_mb", None)
            out[label] = fig
            print(f"  audit {label}: {fig['histories']} histories, {fig['histories_per_s']}/s, "
                  f"ok={fig['ok']}")
    finally:
        engine.dispose()
    res["audit"] = out


def _after_lifecycle(args: argparse.Namespace) -> float:
    """Seconds of the budget kept for the phases after the lifecycle runs."""
    return ((90.0 if args.profile_cases else 0.0) + (150.0 if not args.no_audit else 0.0)
            + _open_reserve(args))


def _open_reserve(args: argparse.Namespace) -> float:
    """Seconds of the budget kept for the open-case phase."""
    return 300.0 + args.clock_seconds if args.open_cases else 0.0


def _own_cpu() -> float:
    import resource

    a, b = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


async def open_cases(st: Stack, args: argparse.Namespace, res: dict[str, Any]) -> None:
    """N cases opened and left waiting; a short-clock sample; then everyone signs off."""
    n, clients = args.open_cases, 50
    # Time boxes: opening may take at most --open-share (half) of what is left of the
    # budget (less the clock sample), signing off the rest; a box that runs out is
    # reported, not hidden.
    left = args.deadline - time.monotonic() - args.clock_seconds - 45
    open_until = time.monotonic() + max(30.0, left * args.open_share)
    out: dict[str, Any] = {"cases_asked": n, "clients": clients, "load_before": load()}
    res["open_cases"] = out
    api = Api(st.api_url, st.tokens, clients)
    ids: list[str] = []
    try:
        # 1. open N cases (long clocks: they wait for days), timing each third
        lat = Lat()
        thirds: list[dict[str, Any]] = []
        fig: dict[str, Any] = {}
        with st.mon.phase(fig, n, ["server", "worker", "api", "bench"]):
            t0 = time.perf_counter()
            for part in range(3):
                k = n // 3 + (1 if part < n % 3 else 0)
                part_lat = Lat()
                had = len(ids)

                async def one(i: int, part_lat: Lat = part_lat) -> None:
                    cid = await api.open(part_lat, INTAKE)
                    if cid:
                        ids.append(cid)

                wall = await clients_run(clients, k, one, until=open_until)
                thirds.append({"cases": len(ids) - had,
                               "cases_per_s": round((len(ids) - had) / wall, 1),
                               "open_ms": dist(part_lat.calls.get("open", []))})
                lat.calls.setdefault("open", []).extend(part_lat.calls.get("open", []))
                lat.errors.update(part_lat.errors)
            wall = time.perf_counter() - t0
        out["cases"] = len(ids)
        out["time_boxed"] = len(ids) + sum(lat.errors.values()) < n
        _per_started(fig, n, len(ids))
        out["start"] = {"wall_s": round(wall, 1), "cases_per_s": round(len(ids) / wall, 1),
                        "open_ms": dist(lat.calls.get("open", [])), "by_third": thirds,
                        "errors": dict(lat.errors), **fig}
        print(f"  opened {len(ids)} cases in {wall:.0f} s ({len(ids) / wall:.1f}/s); "
              f"errors {sum(lat.errors.values())}")
        await asyncio.sleep(2)
        out["after_open"] = {"rss_mb": st.mon.rss_now(), "db_mb": db_sizes(st)}

        # 2. the clock sample: short report-in clocks, firing while nothing else runs
        sample = await clock_sample(st, api, args)
        out["clocks"] = sample
        print(f"  clocks: {sample.get('fired')} of {sample.get('expected')} fired; late "
              f"p50 {sample.get('late_ms', {}).get('p50')} ms, p99 "
              f"{sample.get('late_ms', {}).get('p99')} ms, max "
              f"{sample.get('late_ms', {}).get('max')} ms")
        out["idle"] = {"rss_mb": st.mon.rss_now(), "db_mb": db_sizes(st)}

        # 3. every open case: each department reports in and signs off
        lat = Lat()
        fig = {}
        todo = sample.get("case_ids", []) + ids
        done: list[str] = []

        async def sign(i: int) -> None:
            if await api.steps(lat, todo[i], DEPARTMENTS, close=False, measure_lag=False):
                done.append(todo[i])

        with st.mon.phase(fig, len(todo), ["server", "worker", "api", "bench"]):
            wall = await clients_run(clients, len(todo), sign,
                                     until=max(args.deadline - 15, time.monotonic() + 60))
        _per_started(fig, len(todo), len(done) + sum(lat.errors.values()))
        out["sign_off_all"] = {"cases": len(done), "of": len(todo),
                               "time_boxed": len(done) + sum(lat.errors.values()) < len(todo),
                               "wall_s": round(wall, 1),
                               "cases_per_s": round(len(done) / wall, 1),
                               "report_in_ms": dist(lat.calls.get("report_in", [])),
                               "sign_off_ms": dist(lat.calls.get("sign_off", [])),
                               "errors": dict(lat.errors), **fig}
        print(f"  signed off {len(done)} of {len(todo)} cases in {wall:.0f} s "
              f"({len(done) / wall:.1f}/s); "
              f"errors {sum(lat.errors.values())}")
        out["after_sign_off"] = {"rss_mb": st.mon.rss_now(), "db_mb": db_sizes(st)}
        sample.pop("case_ids", None)
    finally:
        await api.close()


def db_sizes(st: Stack) -> dict[str, float]:
    return {"temporal": db_size_mb(st.temporal_db), "whistle": db_size_mb(st.whistle_db),
            "dbos": db_size_mb(st.peer_db)}


async def clock_sample(st: Stack, api: Api, args: argparse.Namespace) -> dict[str, Any]:
    k = args.clock_sample
    body = {**INTAKE, "category": CLOCK_CATEGORY}
    lat = Lat()
    ids: list[str] = []

    async def one(i: int) -> None:
        cid = await api.open(lat, body)
        if cid:
            ids.append(cid)

    t0 = time.perf_counter()
    await clients_run(min(10, k), k, one)
    opened = time.perf_counter() - t0
    expected = len(ids) * len(DEPARTMENTS)
    # wait until the last clock is due, then until every missed clock is in the read model
    await asyncio.sleep(max(0.0, args.clock_seconds - opened))
    late: list[float] = []
    deadline = time.monotonic() + args.clock_seconds + 60
    while True:
        late = await asyncio.to_thread(missed_clocks, st.whistle_db, ids)
        if len(late) >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    return {"cases": len(ids), "clock_s": args.clock_seconds, "opened_in_s": round(opened, 1),
            "expected": expected, "fired": len(late), "late_ms": dist(late),
            "errors": dict(lat.errors), "case_ids": ids}


def missed_clocks(db: Path, ids: list[str]) -> list[float]:
    """For each clock_missed event of these cases in the read model: its time minus due."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        late = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = conn.execute(
                f"SELECT at, data FROM case_event WHERE kind = 'clock_missed' AND case_id IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall()
            for at, data in rows:
                due = datetime.fromisoformat(json.loads(data)["due"])
                when = datetime.fromisoformat(at)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                late.append((when - due).total_seconds())
        return late
    finally:
        conn.close()


# --- the report --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import temporalio

    try:
        from importlib.metadata import version
        dbos_version = version("dbos")
    except Exception:
        dbos_version = "?"
    return {"nproc": os.cpu_count(), "cpu": model,
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "temporalio": temporalio.__version__,
            "dbos": dbos_version, "sqlite_python": __import__("sqlite3").sqlite_version,
            # worker.py and floor_worker.py read the same variable (default off)
            "workflow_sandbox": os.environ.get("WHISTLE_WORKFLOW_SANDBOX", "false")}


def ratios(res: dict[str, Any]) -> dict[str, Any]:
    by = {(r["kind"], r["clients"], r.get("size", r["cases"])): r
          for r in res.get("lifecycle", [])}
    out: dict[str, Any] = {}
    runs = res.get("lifecycle", [])
    for clients in (10, 50):
        sizes = [r.get("size", r["cases"]) for r in runs
                 if r["kind"] == "whistle" and r["clients"] == clients]
        if not sizes:
            continue
        size = max(sizes)
        w = by.get(("whistle", clients, size))
        f = by.get(("floor", clients, size))
        p = by.get(("peer", clients, size))
        if not w:
            continue
        o: dict[str, Any] = {"size": size}
        if f and f["cases_per_s"]:
            o["whistle_over_floor_cases_per_s"] = round(w["cases_per_s"] / f["cases_per_s"], 2)
            if f["sign_off_ms"].get("p99"):
                o["sign_off_p99_whistle_over_floor"] = round(
                    w["sign_off_ms"]["p99"] / f["sign_off_ms"]["p99"], 2)
        if p and p["cases_per_s"]:
            o["whistle_over_peer_cases_per_s"] = round(w["cases_per_s"] / p["cases_per_s"], 2)
            o["floor_over_peer_cases_per_s"] = round(f["cases_per_s"] / p["cases_per_s"], 2) \
                if f else None
        out[f"{clients}_clients"] = o
    return out


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    r = res.get("ratios", {})
    t: list[tuple[str, str, bool | None]] = []
    r50, r10 = r.get("50_clients", {}), r.get("10_clients", {})
    x = r50.get("whistle_over_floor_cases_per_s")
    t.append(("Whistle >= 0.6x floor cases/s (50 clients)", f"{x}x",
              None if x is None else x >= 0.6))
    x = r50.get("whistle_over_peer_cases_per_s")
    t.append(("Whistle >= peer cases/s (50 clients)", f"{x}x", None if x is None else x >= 1.0))
    x = r10.get("sign_off_p99_whistle_over_floor")
    t.append(("sign-off p99 <= 1.5x floor update p99 (10 clients)", f"{x}x",
              None if x is None else x <= 1.5))
    oc = res.get("open_cases", {})
    if oc:
        rss = max((oc.get(k, {}).get("rss_mb", {}).get("worker", 0)
                   for k in ("after_open", "idle", "after_sign_off")), default=0)
        t.append((f"{oc['cases']} open cases: worker RSS < 1 GB", f"{rss} MB", rss < 1024))
        p99 = oc.get("clocks", {}).get("late_ms", {}).get("p99")
        t.append(("clocks fire within 2 s of due at p99 (idle)", f"{p99} ms",
                  None if p99 is None else p99 <= 2000))
    a = res.get("audit", {}).get("one_process", {})
    if a:
        t.append(("bulk audit >= 100 histories/s on one core",
                  f"{a.get('histories_per_s')}/s", a.get("histories_per_s", 0) >= 100))
    return t


def print_table(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"\n== Whistle bench {res['stamp']}  ({m['nproc']} cores, {m['cpu']}, "
          f"{m['ram_gb']} GB; load {res['load_start']} -> {res.get('load_end')})")
    hdr = (f"{'run':8} {'cl':>3} {'cases':>6} {'cases/s':>8} {'open p50/p95/p99 ms':>22} "
           f"{'sign-off p50/p95/p99 ms':>24} {'lag row|GET p50/p99':>20} cpu ms/case | peak RSS MB")
    print(hdr)
    for r in res.get("lifecycle", []):
        o, s = r["open_ms"], r["sign_off_ms"]
        lag = r.get("read_model_lag_ms", {})
        row = r.get("read_model_row_lag_ms", {})
        lags = "-" if not lag else f"{_d(row, 2)}|{_d(lag, 2)}"
        cpu = " ".join(f"{k}={v:g}" for k, v in r.get("cpu_ms_per_case", {}).items())
        rss = " ".join(f"{k}={v:g}" for k, v in r.get("peak_rss_mb", {}).items())
        err = f" ERR {sum(r['errors'].values())}" if r["errors"] else ""
        print(f"{r['kind']:8} {r['clients']:3} {r['cases']:6} {r['cases_per_s']:8} "
              f"{_d(o):>22} {_d(s):>24} {lags:>20}  {cpu} | {rss}{err}")
    print("\nratios:", json.dumps(res.get("ratios", {})))
    if "audit" in res:
        for k in ("one_process", "default"):
            a = res["audit"].get(k, {})
            if "histories" not in a:
                continue
            print(f"audit ({k}): {a.get('histories')} histories, {a.get('histories_per_s')}/s, "
                  f"audit cpu {a.get('audit_cpu_ms_per_history')} ms/h, server cpu "
                  f"{a.get('server_cpu_ms_per_history')} ms/h, ok={a.get('ok')}")
    oc = res.get("open_cases")
    if oc and "start" in oc:
        s = oc["start"]
        print(f"open cases: {oc['cases']} opened at {s['cases_per_s']}/s (by third: "
              f"{[t['cases_per_s'] for t in s['by_third']]}), open p50/p99 "
              f"{s['open_ms'].get('p50')}/{s['open_ms'].get('p99')} ms; cpu ms/case "
              f"{s.get('cpu_ms_per_case')}")
        for k in ("after_open", "idle", "after_sign_off"):
            if k in oc:
                print(f"  {k}: RSS MB {oc[k]['rss_mb']}, DB MB {oc[k]['db_mb']}")
        c = oc.get("clocks", {})
        print(f"  clocks ({c.get('cases')} cases, {c.get('clock_s')} s): fired "
              f"{c.get('fired')}/{c.get('expected')}, late ms {c.get('late_ms')}")
        so = oc.get("sign_off_all", {})
        if so:
            print(f"  sign-off of all: {so['cases']} cases at {so['cases_per_s']}/s, report-in "
                  f"p50/p99 {so['report_in_ms'].get('p50')}/{so['report_in_ms'].get('p99')} ms, "
                  f"sign-off p50/p99 {so['sign_off_ms'].get('p50')}/"
                  f"{so['sign_off_ms'].get('p99')} ms, errors {sum(so['errors'].values())}")
    print("\ntargets:")
    for name, value, ok in res.get("targets", []):
        mark = "n/a " if ok is None else ("MET " if ok else "MISS")
        print(f"  [{mark}] {name}: {value}")


def markdown(res: dict[str, Any]) -> str:
    """The figures of a results file as the tables in bench/README.md."""
    m = res["machine"]
    lines = [f"Run {res['stamp']}: {m['nproc']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, "
             f"Python {m['python']}, temporalio {m['temporalio']}, dbos {m['dbos']}, workflow "
             f"sandbox {m.get('workflow_sandbox', 'on')} (both workers); load "
             f"average {res['load_start']} at the start, {res.get('load_end')} at the end; "
             f"{res['wall_s']:.0f} s in all.", "",
             "| run | clients | cases | cases/s | open p50/p95/p99 ms | sign-off p50/p95/p99 ms "
             "| read-model lag row / GET p50/p99 ms | CPU ms per case | peak RSS MB | load |",
             "|---|--:|--:|--:|--:|--:|--:|---|---|---|"]
    for r in res.get("lifecycle", []):
        row, lag = r.get("read_model_row_lag_ms"), r.get("read_model_lag_ms")
        lags = f"{_d(row or {}, 2)} / {_d(lag or {}, 2)}" if lag else "–"
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_ms_per_case"].items())
        rss = ", ".join(f"{k} {v:.0f}" for k, v in r["peak_rss_mb"].items())
        lines.append(f"| {r['kind']} | {r['clients']} | {r['cases']} | {r['cases_per_s']} | "
                     f"{_d(r['open_ms'])} | {_d(r['sign_off_ms'])} | {lags} | {cpu} | {rss} | "
                     f"{r.get('load_before', [''])[0]} |")
    lines += ["", "Ratios (the largest size of each client count):", ""]
    for k, v in res.get("ratios", {}).items():
        lines.append(f"- {k.replace('_', ' ')} (size {v.pop('size', '?')}): "
                     + ", ".join(f"{a.replace('_', ' ')} **{b}**" for a, b in v.items()))
    lines += ["", "Targets:", ""]
    for name, value, ok in res.get("targets", []):
        mark = "n/a" if ok is None else ("met" if ok else "**missed**")
        lines.append(f"- {name}: {value} — {mark}")
    return "\n".join(lines)


def _d(d: dict[str, Any], n: int = 3) -> str:
    if not d or not d.get("n"):
        return "-"
    keys = ("p50", "p95", "p99") if n == 3 else ("p50", "p99")
    return "/".join(f"{d[k]:g}" for k in keys)


# --- main ----------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    args.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.deadline = time.monotonic() + args.budget
    res: dict[str, Any] = {"stamp": args.stamp, "machine": machine(), "load_start": load(),
                           "args": {k: v for k, v in vars(args).items()
                                    if k not in ("stamp", "deadline")}}
    work = Path(tempfile.mkdtemp(prefix="whistle-bench-", dir=args.work_dir))
    (work / "logs").mkdir()
    kids = Children(work / "logs")
    mon = Monitor()
    st = Stack(work=work, kids=kids, mon=mon)
    t0 = time.perf_counter()
    phases_done: list[str] = []
    try:
        print(f"starting the stack in {work} ...", flush=True)
        await start_stack(st, args)
        print(f"stack up in {time.perf_counter() - t0:.0f} s; lifecycle runs:", flush=True)
        if not args.open_only:
            await lifecycle(st, args, res)
            phases_done.append("lifecycle")
        if args.profile_cases and not args.open_only:
            print("profile (py-spy on API and worker) ...", flush=True)
            await profile(st, args, res)
            phases_done.append("profile")
        if not args.no_audit and not args.open_only:
            print("audit ...", flush=True)
            await audit(st, args, res)
            phases_done.append("audit")
        if args.open_cases:
            print(f"open cases ({args.open_cases}) ...", flush=True)
            await open_cases(st, args, res)
            phases_done.append("open")
        res["final"] = {"rss_mb": mon.rss_now(), "db_mb": db_sizes(st)}
    finally:
        res["phases_done"] = phases_done
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        res["load_end"] = load()
        mon.close()
        kids.stop_all()
        failed = [c for c in kids.all if c.name in ("worker", "api", "temporal", "peer")]
        res["logs"] = {c.name: c.tail(5) for c in failed} if args.keep else {}
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    res["ratios"] = ratios(res)
    res["targets"] = targets(res)
    return res


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes: the harness, in seconds")
    p.add_argument("--open-only", action="store_true",
                   help="only the open-case phase (no lifecycle, profile or audit)")
    p.add_argument("--open-share", type=float, default=0.5,
                   help="share of the open-case phase's time that opening may take")
    p.add_argument("--big", action="store_true", help="50,000 open cases")
    p.add_argument("--size10", type=int, default=40, help="cases of the 10-client runs")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                   default=[100, 150, 200], help="cases of the 50-client runs (growth)")
    p.add_argument("--peer-share", type=float, default=0.5,
                   help="the peer runs this share of each size (it is ~10x slower)")
    p.add_argument("--peer-poll", type=float, default=0.01,
                   help="DBOS notification polling interval on SQLite, seconds")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--lag-every", type=int, default=5,
                   help="measure the read-model lag on every n-th case's first sign-off")
    p.add_argument("--profile-cases", type=int, default=100, help="0: no py-spy profile")
    p.add_argument("--no-audit", action="store_true")
    p.add_argument("--audit-cases", type=int, default=1000,
                   help="closed cases the audit replays (topped up through the API if the "
                        "lifecycle runs closed fewer)")
    p.add_argument("--audit-modes", type=lambda s: s.split(","),
                   default=["one_process", "default"],
                   help="one_process (the one-core target) and/or default (a process per core)")
    p.add_argument("--open-cases", type=int, default=10_000)
    p.add_argument("--budget", type=float, default=None,
                   help="seconds the whole run may take (default 1140, --big 3600): the "
                        "open-case phase opens and signs off what fits and says so")
    p.add_argument("--clock-sample", type=int, default=200)
    p.add_argument("--clock-seconds", type=float, default=30.0)
    p.add_argument("--work-dir", default=None, help="where the databases go (default: /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the databases and logs")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default: bench/results/)")
    p.add_argument("--markdown", type=Path, default=None,
                   help="print the tables of this results file as markdown, run nothing")
    args = p.parse_args(argv)
    if args.big:
        args.open_cases = 50_000
    if args.budget is None:
        args.budget = 3600.0 if args.big else 1140.0
    if args.smoke:
        args.size10, args.sizes, args.peer_share = 2, [3], 0.5
        args.audit_modes, args.audit_cases = ["one_process"], 0
        args.profile_cases, args.open_cases, args.clock_sample = 0, 6, 2
        args.clock_seconds, args.lag_every = 3.0, 1
    return args


def run(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    interrupted = False

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwind through main()'s finally: children stopped by PID

    signal.signal(signal.SIGTERM, on_term)
    try:
        res = asyncio.run(main(args))
    except KeyboardInterrupt:
        print("\ninterrupted; every child stopped", file=sys.stderr)
        interrupted = True
        return 130
    finally:
        sys.stdout.flush()
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"{res['stamp']}.json"
    out.write_text(json.dumps(res, indent=1, ensure_ascii=False, default=str))
    print_table(res)
    print(f"\nwrote {out}")
    bad = [r for r in res.get("lifecycle", []) if r["errors"]]
    return 1 if interrupted or bad or "open" not in res["phases_done"] and args.open_cases else 0


if __name__ == "__main__":
    code = run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip native-runtime teardown (sdk-python #300)
