"""Fixtures of the operations tests: a local webhook receiver that fails the first
attempts, a local SMTP server (aiosmtpd), a read model on SQLite and PostgreSQL, and a
policy with a short report-in clock. Nothing leaves the machine: every server binds to
127.0.0.1 on a free port and is stopped when the test ends."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.engine import Engine

from tests import helpers
from tests.conftest import prepare_read_model
from whistle.db import make_engine
from whistle.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_policy(path: Path, report_in_seconds: dict[str, float]) -> Path:
    return helpers.write_policy(path, report_in_seconds, tag="ops")


@pytest.fixture
def ops_settings(database_url: str, tmp_path: Path) -> Settings:
    """A read model (SQLite, then PostgreSQL) with the reference data, a task queue of its
    own and a policy whose neighbour cases miss their report-in clock after a minute."""
    prepare_read_model(database_url)
    policy = write_policy(tmp_path / "policy.yaml", {"neighbour": 60})
    return Settings(env="test", database_url=database_url, policy_file=policy,
                    task_queue=f"tq-{uuid.uuid4().hex[:12]}", smtp_port=1)


@pytest.fixture
def ops_engine(ops_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(ops_settings.database_url)
    yield engine
    engine.dispose()


# --- the webhook receiver -------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers 500 to the first `fail_first` requests of each idempotency key, then 200."""

    url: str
    fail_first: int = 2
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            key = headers.get("idempotency-key", "")
            seen = sum(1 for r in self.requests if r.headers.get("idempotency-key") == key)
            status = 500 if seen < self.fail_first else 200
            self.requests.append(Received(headers, body, status))
            return status


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    rec = Receiver(url=f"http://127.0.0.1:{port}/hooks/whistle")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = rec.answer({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
    thread.join(5)


# --- the SMTP server ------------------------------------------------------------------------


@dataclass
class Mailbox:
    port: int
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.original_content,
                                                 policy=policy.default))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()
