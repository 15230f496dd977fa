"""`make run` stays up: scripts/dev.py started as a user starts it (free ports, a data folder
of its own), the worker killed with SIGKILL comes back within seconds while the API keeps
answering, and SIGTERM stops every child it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    """scripts/dev.py as a child; its output collected line by line."""

    def __init__(self, tmp_path: Path) -> None:
        self.api_port = free_port()
        env = {**os.environ, "WHISTLE_API_PORT": str(self.api_port),
               "WHISTLE_WORKER_METRICS_PORT": str(free_port()),
               "WHISTLE_DEV_GRPC_PORT": str(free_port()), "WHISTLE_DEV_UI_PORT": str(free_port()),
               "WHISTLE_ENV": "development", "PYTHONUNBUFFERED": "1"}
        for name in ("WHISTLE_DATABASE_URL", "WHISTLE_TEMPORAL_ADDRESS",
                     "WHISTLE_WORKFLOW_SANDBOX"):
            env.pop(name, None)
        self.out = tmp_path / "dev.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "dev.py"), "--data-dir",
                 str(tmp_path / "data")], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[], object], what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"dev.py exited while waiting for {what}:\n" \
                                             f"{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} in {timeout:g} s:\n{self.text()}"
            time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        found = re.search(r"^pids: (.*)$", self.text(), re.M)
        assert found, self.text()
        return {name: int(pid) for name, pid in
                (part.split() for part in found.group(1).split(", "))}

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.api_port}/api/v1/health"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited: only its entry is left
        return f.read().split(") ")[1][0] != "Z"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    yield r
    if r.proc.poll() is None:
        os.killpg(r.proc.pid, signal.SIGKILL)
        r.proc.wait()


def test_a_killed_worker_is_started_again_and_sigterm_stops_everything(run: Run) -> None:
    run.wait_for(lambda: "Whistle is running" in run.text() and "pids:" in run.text(),
                 "banner")
    pids = run.pids()
    assert set(pids) == {"temporal", "worker", "api"}
    os.kill(pids["worker"], signal.SIGKILL)
    run.wait_for(lambda: "worker was killed by SIGKILL; starting it again" in run.text(),
                 "the restart notice", timeout=10)
    run.wait_for(lambda: re.search(r"worker started again \(pid (\d+)\)", run.text()),
                 "the new worker", timeout=10)
    new = int(re.findall(r"worker started again \(pid (\d+)\)", run.text())[-1])
    assert new != pids["worker"] and alive(new)
    assert run.healthy() and alive(pids["temporal"]) and alive(pids["api"])

    run.proc.send_signal(signal.SIGTERM)
    run.proc.wait(45)
    assert run.proc.returncode == 0, run.text()[-2000:]
    assert not any(alive(p) for p in (pids["temporal"], pids["api"], new)), run.text()[-2000:]
