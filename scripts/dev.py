"""`make run`: the Temporal dev server, the worker and the API on this machine.

Everything persists under data/ (SQLite files and logs), so a restart keeps all cases.
A child that dies (the worker killed, the API crashed, even the Temporal server) is started
again after a back-off (1 s, doubling up to 30 s; back to 1 s once it has stayed up a minute),
with a line saying so; the others keep running. Ctrl-C (or SIGTERM) stops the children in
reverse order. Standard library only, plus `whistle.search_attributes` for the custom search
attributes to register.

    python scripts/dev.py [--only-temporal] [--data-dir DIR]

Ports: WHISTLE_API_PORT (8000), WHISTLE_WORKER_METRICS_PORT (9464), WHISTLE_DEV_GRPC_PORT
(7233: the worker and the API are pointed at it) and WHISTLE_DEV_UI_PORT (8233).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from whistle.search_attributes import dev_server_args  # noqa: E402
from whistle.users_cli import DEMO_PASSWORD  # noqa: E402

BIN = Path(sys.executable).parent  # the venv's bin/: temporal, whistle
GRPC_PORT = int(os.environ.get("WHISTLE_DEV_GRPC_PORT", "7233"))
UI_PORT = int(os.environ.get("WHISTLE_DEV_UI_PORT", "8233"))
STOP_TIMEOUT = 15.0
READY_TIMEOUT = 60.0
FIRST_BACKOFF, MAX_BACKOFF, STEADY = 1.0, 30.0, 60.0  # restarts: seconds
stop_requested = False  # set by the SIGINT/SIGTERM handler


class Stop(Exception):
    """Ctrl-C or SIGTERM arrived: unwind into the orderly shutdown."""


class ChildFailed(Exception):
    """A child exited or never became ready; the message says which and why."""


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def check_ports_free(ports: list[int]) -> None:
    """Exit with a message naming the first port something already listens on."""
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                fail(f"port {port} is busy (another `make run`? see `ss -ltnp 'sport = :{port}'`)")


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of this run's part of a log file, for error reports."""
    try:
        run = path.read_text(errors="replace").rsplit("\n--- ", 1)[-1]
        return "\n".join(run.splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Child:
    """A process started in its own session with output going to a log file."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str]):
        self.name, self.log, self.cmd, self.env = name, log, cmd, env
        self.backoff = FIRST_BACKOFF
        self.restart_at: float | None = None  # set while it is down, waiting to start again
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n--- {time.strftime('%F %T')} {' '.join(self.cmd)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.started = time.monotonic()

    def keep_up(self) -> None:
        """Once running: if it has exited, say so and start it again after the back-off."""
        if stop_requested:
            raise Stop
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restart_at = None
                self.start()
                print(f"{time.strftime('%T')} {self.name} started again "
                      f"(pid {self.proc.pid})", flush=True)
            return
        code = self.proc.poll()
        if code is None:
            if now - self.started > STEADY:
                self.backoff = FIRST_BACKOFF
            return
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
        print(f"{time.strftime('%T')} {self.name} {how}; starting it again in "
              f"{self.backoff:g} s (log: {self.log})", flush=True)
        self.restart_at = now + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def check_alive(self) -> None:
        """Raise Stop if asked to stop, ChildFailed (with the log's tail) if the child exited."""
        if stop_requested:
            raise Stop
        code = self.proc.poll()
        if code is not None:
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
            raise ChildFailed(f"{self.name} {how}; last lines of {self.log}:\n{tail(self.log)}")

    def stop(self) -> None:
        """SIGTERM its process group, wait up to STOP_TIMEOUT, then SIGKILL."""
        self.restart_at = None
        if self.proc.poll() is not None:
            return
        print(f"stopping {self.name} (pid {self.proc.pid})", flush=True)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(STOP_TIMEOUT)
                return
            except subprocess.TimeoutExpired:
                print(f"{self.name} still running after {STOP_TIMEOUT:.0f} s; SIGKILL", flush=True)


def wait_until(ready, child: Child, what: str) -> None:
    """Poll `ready()` until true; fail if `child` dies or READY_TIMEOUT passes."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        child.check_alive()
        if time.monotonic() > deadline:
            raise ChildFailed(f"{what} not ready after {READY_TIMEOUT:.0f} s; "
                              f"last lines of {child.log}:\n{tail(child.log)}")
        time.sleep(0.25)


def tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


SIGN_IN = """\
    TOKEN=$(curl -s {base}/api/v1/auth/token -H 'content-type: application/json' \\
      -d '{{"username": "coord.xjk", "password": "{password}"}}' \\
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
    curl -s {base}/api/v1/cases -H "Authorization: Bearer $TOKEN"
"""


def start_all(args, data: Path, env: dict[str, str], children: list[Child]) -> None:
    """Start the server, run `whistle init`, start worker and API; print the banner."""
    logs = data / "logs"
    temporal = Child("temporal", [
        str(BIN / "temporal"), "server", "start-dev", "--db-filename", str(data / "temporal.db"),
        "--ip", "127.0.0.1", "--port", str(GRPC_PORT), "--ui-port", str(UI_PORT),
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=full",
        "--log-level", "warn", *dev_server_args(),
    ], logs / "temporal.log", env)
    children.append(temporal)
    wait_until(lambda: tcp_open(GRPC_PORT), temporal, f"Temporal on port {GRPC_PORT}")
    ui = env.get("WHISTLE_TEMPORAL_UI_URL", f"http://127.0.0.1:{UI_PORT}")
    if args.only_temporal:
        print(f"\nTemporal is up: 127.0.0.1:{GRPC_PORT}, UI {ui}, log {logs / 'temporal.log'}\n"
              "Ctrl-C stops it.", flush=True)
        return

    init = subprocess.run([str(BIN / "whistle"), "init"], cwd=ROOT, env=env)
    temporal.check_alive()
    if init.returncode != 0:
        raise ChildFailed("`whistle init` failed (output above)")
    if subprocess.run([str(BIN / "whistle"), "seed-demo"], cwd=ROOT, env=env).returncode:
        raise ChildFailed("`whistle seed-demo` failed (output above)")
    py = sys.executable
    children.append(Child("worker", [py, "worker.py"], logs / "worker.log", env))
    api = Child("api", [py, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
                        "--port", str(args.api_port), "--timeout-graceful-shutdown", "5"],
                logs / "api.log", env)
    children.append(api)
    base = f"http://127.0.0.1:{args.api_port}"
    worker_metrics = args.worker_metrics_port
    wait_until(lambda: http_ok(f"{base}/api/v1/health"), api, "API")
    print(f"""
Whistle is running.
  Pages       {base}/login   (中文 by default; English in the header)
  API docs    {base}/docs
  Temporal UI {ui}
  Metrics     {base}/metrics (API), http://127.0.0.1:{worker_metrics}/metrics (worker)
  Digests     {BIN / 'temporal'} schedule list   (one Schedule per centre)
  Logs        {logs}/{{temporal,worker,api}}.log
  Sign in     as a demo user above (password {DEMO_PASSWORD}):
{SIGN_IN.format(base=base, password=DEMO_PASSWORD)}
Ctrl-C stops everything.
""", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only-temporal", action="store_true", help="start only the dev server")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    args = parser.parse_args()
    args.api_port = int(os.environ.get("WHISTLE_API_PORT", "8000"))
    args.worker_metrics_port = int(os.environ.get("WHISTLE_WORKER_METRICS_PORT", "9464"))

    check_ports_free([GRPC_PORT, UI_PORT] + ([] if args.only_temporal else
                                             [args.api_port, args.worker_metrics_port]))
    data = args.data_dir.resolve()
    (data / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("WHISTLE_TEMPORAL_ADDRESS", f"127.0.0.1:{GRPC_PORT}")
    if data != ROOT / "data":
        env.setdefault("WHISTLE_DATABASE_URL", f"sqlite:///{data / 'whistle.db'}")

    def on_signal(signum, _frame):
        # Only a flag: raising here could land between Popen() and recording the child.
        global stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[Child] = []
    code = 0
    try:
        start_all(args, data, env, children)
        print("pids: " + ", ".join(f"{c.name} {c.proc.pid}" for c in children), flush=True)
        while True:
            for child in children:
                child.keep_up()
            time.sleep(0.5)
    except Stop:
        print("\nshutting down", flush=True)
    except ChildFailed as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
