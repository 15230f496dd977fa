"""Schemathesis against the app's own OpenAPI document: every operation, a bounded number of
generated requests each, signed in, on the real Temporal dev server with a worker and a real
read model. Every response must be no 5xx, carry a documented status code and content type,
and match the documented body schema and headers.

How it runs: the schema is the app's /openapi.json. Hypothesis drives each operation (in a
thread, since Hypothesis is synchronous) with a fixed seed; each generated request is sent on
the test's event loop, so the app, the Temporal client and the worker all run where they
always do. Failures are collected (not raised at the first one), deduplicated by operation,
check and status, printed with the figures, and fail the test together.

Passes per operation:
- "positive": schema-valid data, signed in as a user the route lets through (so the deep
  code paths run). Every other example gets real path ids and reference codes (a case
  brought to the state where the step can succeed, the summoned department, a real user and
  token, a real category and location: see `realistic`); the rest stay as generated, so
  404s and 422s are checked too. After a case-scoped operation the case is read back, which
  must still work and conform (a step must not leave a case that cannot be shown);
- "negative": schema-violating data, same user: must get a documented 4xx;
- "refused role": a role the route refuses: the 403 must be documented and conform;
- "anonymous": nobody signed in: likewise the 401.
Then "edge values": inputs the generator rarely reaches that once broke the API, each of
which must be refused with 422.

Both read models, as the conftest `settings` fixture gives them: some input only breaks on
PostgreSQL (text holding NUL), and one pass takes about half a minute.

Run longer locally with WHISTLE_FUZZ_SCALE=5 (examples × 5) and WHISTLE_FUZZ_RANDOM=1
(a fresh seed instead of the fixed one); WHISTLE_FUZZ_VERBOSE=1 prints status codes per
operation.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from tests.api.test_access_matrix import EXPECTED, ROLES
from tests.api.test_cases_api import INTAKE
from tests.helpers import TestUsers
from whistle.db import make_engine
from whistle.settings import Settings
from worker import build_worker

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
BASE = "http://whistle"

# Examples per operation and pass (Hypothesis stops earlier when an operation has fewer
# distinct inputs, e.g. none). Sized for well under a minute on a 2-core machine.
SCALE = int(os.environ.get("WHISTLE_FUZZ_SCALE", "1"))
POSITIVE_EXAMPLES = 20 * SCALE
NEGATIVE_EXAMPLES = 8 * SCALE
REFUSED_EXAMPLES = 2
PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/token")}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A short step timeout: a step the engine cannot finish shows as a 504 (a failure
    here) in seconds, not after the production 30."""
    return settings.model_copy(update={"step_timeout_seconds": 5.0})


@pytest.fixture
async def client(dev_env: WorkflowEnvironment, settings: Settings, users: TestUsers
                 ) -> AsyncIterator[httpx.AsyncClient]:
    """The `api` fixture's app and worker, with a client that returns the app's 500 as a
    response (for the checks to see) instead of raising the exception behind it."""
    app = create_app(settings, client=dev_env.client)
    engine = make_engine(settings.database_url)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with (
            build_worker(dev_env.client, settings, executor, engine),
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url=BASE,
                              event_hooks={"request": [users.sign_in_hook]}) as http,
        ):
            yield http
    engine.dispose()


# --- who calls, on what ---------------------------------------------------------------------

DEPT = "xjk-petition"  # summoned (as lead) to the town-level land case of INTAKE
TARGET_USER = "st.target"  # the account /users/{username} works on: nobody else uses it
USERS: dict[str, tuple[str, str, str | None]] = {
    "coordinator": ("coordinator-city", "huizhou", None),
    "department": (f"staff-{DEPT}", "", DEPT),
    "grid_worker": ("st.grid", "jiulong", None),
    "supervisor": ("st.supervisor", "xiaojinkou", None),  # town level, as the case
    "auditor": ("auditor", "huizhou", None),
    "admin": ("admin", "huizhou", None),
}
# The role each route is driven as: the first that may call it, in this order.
PREFERENCE = ("coordinator", "admin", "auditor", "department", "supervisor", "grid_worker")


def fitting_role(method: str, path: str) -> str:
    return next(r for r in PREFERENCE if r in EXPECTED[method, path])


def refused_role(method: str, path: str) -> str | None:
    return next((r for r in ROLES if r not in EXPECTED[method, path]), None)


def headers_for(users: TestUsers, role: str, fresh: bool = False) -> dict[str, str]:
    username, node, dept = USERS[role]
    if fresh:  # a token of its own, not kept: POST /auth/logout ends the token it is sent with
        kept = users.tokens.pop(username, None)
        headers = users.headers(username, role, node, dept)
        users.tokens.pop(username)
        if kept is not None:
            users.tokens[username] = kept
        return headers
    return users.headers(username, role, node, dept)


# Real reference data for generated fields of these names (query parameters and top-level
# body fields), so that every other example gets past "unknown category" and the like.
KNOWN = {"category": "land", "location": "jiulong-grid-1", "jurisdiction": "xiaojinkou",
         "parent": "xiaojinkou", "kind": "court", "department": DEPT,
         "departments": ["xjk-hrss"], "to": "xjk-market-supervision",
         "supervisor": "hz-petition"}
SIGN_IN = {"username": "st.signin", "password": "st-password-1"}


def realistic(case: schemathesis.Case, method: str, path: str, real: dict[str, str]) -> None:
    """Put real ids and reference codes where the generated ones would only meet a 404 or
    422 (values of the same type and pattern: the case stays a positive one)."""
    for name in real:
        if name in case.path_parameters and not (
                name == "token_id" and path.startswith("/api/v1/auth/")  # our own tokens
                or name == "department" and method == "PUT"):  # keep the sample data as is
            case.path_parameters[name] = real[name]
    known = SIGN_IN if path == "/api/v1/auth/token" else KNOWN
    if "/reference/" not in path:  # a department's kind; elsewhere `kind` is an outcome's
        known = {k: v for k, v in known.items() if k != "kind"}
    for name in set(case.query or {}) & set(known):
        case.query[name] = known[name]
    if isinstance(case.body, dict):
        for name in set(case.body) & set(known):
            case.body[name] = known[name]


def setup_steps(path: str) -> list[tuple[str, dict[str, Any]]]:
    """The steps that bring a fresh case to where the operation at `path` can succeed;
    "{d}" runs a step for every summoned department."""
    signed_off = [("summonses/{d}/report-in", {}),
                  ("summonses/{d}/sign-off", {"opinion": "同意", "actions_taken": "核查"})]
    outcome = [*signed_off, ("outcome", {"kind": "administrative_resolution",
                                         "summary": "已处理"})]
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    return {
        "sign-off": [(f"summonses/{DEPT}/report-in", {})],
        "extension": [(f"summonses/{DEPT}/report-in", {})],
        "extension/decision": [(f"summonses/{DEPT}/report-in", {}),
                               (f"summonses/{DEPT}/extension",
                                {"new_deadline": later, "reason": "需要更多时间"})],
        "redispatch": [(f"summonses/{DEPT}/return", {"reason": "不属本部门"})],
        "outcome": signed_off,
        "feedback": outcome,
        "close": outcome,
    }.get(path.rsplit("}/", 1)[-1], [])


# --- the run --------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    per_operation: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_pass: Counter[str] = field(default_factory=Counter)
    findings: dict[tuple[str, str, int], list[Any]] = field(default_factory=dict)

    def record(self, name: str, label: str, response: httpx.Response, failures: list[Any]
               ) -> None:
        self.requests += 1
        self.by_pass[name] += 1
        self.statuses[response.status_code] += 1
        code = ""
        if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            code = response.json().get("code", "")
        self.per_operation[label, f"{response.status_code} {code}".strip()] += 1
        for f in failures:
            key = (label, f.title, response.status_code)
            if key not in self.findings:
                request = response.request
                self.findings[key] = [0, f"{f.message}\n    {request.method} {request.url} "
                                         f"{request.content[:300]!r}\n    → "
                                         f"{response.text[:300]}"]
            self.findings[key][0] += 1

    def unexpected(self, label: str, response: httpx.Response, want: str) -> None:
        self.findings[label, f"Unexpected status ({want})", response.status_code] = [
            1, f"{response.request.method} {response.request.url} "
               f"{response.request.content[:300]!r}\n    → {response.text[:300]}"]

    def report(self, operations: int, elapsed: float) -> str:
        passes = ", ".join(f"{k} {v}" for k, v in self.by_pass.items())
        lines = [f"schemathesis {schemathesis.__version__}: {operations} operations, "
                 f"{self.requests} requests in {elapsed:.1f} s ({passes}); statuses "
                 f"{dict(sorted(self.statuses.items()))}; {len(self.findings)} failures"]
        if os.environ.get("WHISTLE_FUZZ_VERBOSE"):
            lines += [f"  {op} {st} ×{n}" for (op, st), n in sorted(self.per_operation.items())]
        lines += [f"- {op} [{status}] {title} ×{n}\n    {message}"
                  for (op, title, status), (n, message) in self.findings.items()]
        return "\n".join(lines)


def _send_kwargs(case: schemathesis.Case, headers: dict[str, str]) -> dict[str, Any]:
    """The request schemathesis would send, as httpx.AsyncClient.request arguments, with
    `headers` in place of any generated Authorization."""
    kw = case.as_transport_kwargs(base_url=BASE)
    sent = {k: v for k, v in (kw.get("headers") or {}).items() if k.lower() != "authorization"}
    sent.update(headers)
    out: dict[str, Any] = {"method": kw["method"], "url": kw["url"], "headers": sent,
                           "params": kw.get("params") or None}
    if "json" in kw:
        out["json"] = kw["json"]
    elif kw.get("data") is not None:
        out["content"] = kw["data"]
    if kw.get("cookies"):
        out["cookies"] = kw["cookies"]
    return out


def _hypothesis(max_examples: int) -> Callable[[Any], Any]:
    return hypothesis_settings(
        max_examples=max_examples, derandomize=not os.environ.get("WHISTLE_FUZZ_RANDOM"),
        deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected
        # Generating large bodies can be slow on a busy 2-core machine; generation speed is
        # not what this test is about.
        suppress_health_check=[HealthCheck.too_slow],
    )


async def test_the_api_conforms_to_its_own_openapi_document(client: httpx.AsyncClient,
                                                           users: TestUsers) -> None:
    # Real things for the path parameters: the summoned department, a user with an API
    # token, a user with a password; each case-scoped operation gets a case of its own.
    made = await client.post("/api/v1/users", json={
        "username": TARGET_USER, "display_name": "t", "role": "grid_worker",
        "jurisdiction": "jiulong"})
    assert made.status_code == 201, made.text
    issued = await client.post(f"/api/v1/users/{TARGET_USER}/tokens", json={"name": "st"})
    assert issued.status_code == 201, issued.text
    signin = await client.post("/api/v1/users", json={
        **SIGN_IN, "display_name": "s", "role": "auditor", "jurisdiction": "huizhou"})
    assert signin.status_code == 201, signin.text
    real = {"department": DEPT, "username": TARGET_USER, "token_id": issued.json()["id"]}
    for role in USERS:
        headers_for(users, role)  # every user exists before any request is generated

    async def new_case(path: str) -> str:
        """A fresh case, brought to where the operation at `path` can succeed."""
        opened = await client.post("/api/v1/cases",
                                   json={**INTAKE, "location": "jiulong-grid-1"})
        assert opened.status_code == 201, opened.text
        case = opened.json()
        assert case["level"] == "town" and DEPT in case["departments"]
        for step, body in setup_steps(path):
            for d in case["departments"] if "{d}" in step else [DEPT]:
                r = await client.post(f"/api/v1/cases/{case['case_id']}/"
                                      + step.format(d=d), json=body)
                assert r.status_code == 200, r.text
        return str(case["case_id"])

    document = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} == set(EXPECTED)
    unsecured = {(method.upper(), path) for path, ops in document["paths"].items()
                 for method, op in ops.items() if not op.get("security")}
    assert unsecured == PUBLIC, "the document's security requirements are off"
    read_case = schema["/api/v1/cases/{case_id}"]["GET"]

    loop = asyncio.get_running_loop()
    run_id = f"st-{uuid.uuid4().hex[:8]}-"

    def on_loop(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

    tally = Tally()

    def send(name: str, case: schemathesis.Case, headers: dict[str, str]) -> httpx.Response:
        kwargs = _send_kwargs(case, headers)
        response = on_loop(client.request(**kwargs))
        failures: list[Any] = []
        try:
            case.validate_response(response, checks=CHECKS, headers=kwargs["headers"])
        except schemathesis.errors.FailureGroup as group:
            failures.extend(group.exceptions)
        tally.record(name, f"{case.operation.method.upper()} {case.operation.path}",
                     response, failures)
        return response

    def run(op: Any, name: str, mode: GenerationMode, examples: int, role: str | None) -> None:
        method, path = op.method.upper(), op.path
        deep = name == "positive"
        ids = dict(real)
        if deep and "{case_id}" in path:
            ids["case_id"] = on_loop(new_case(path))
        counter = iter(range(1_000_000))

        @_hypothesis(examples)
        @given(case=op.as_strategy(generation_mode=mode))
        def drive(case: schemathesis.Case) -> None:
            if deep and next(counter) % 2 == 0:
                realistic(case, method, path, ids)
            if isinstance(case.body, dict) and isinstance(case.body.get("external_ref"), str):
                # An external_ref fixes the case id, and the Temporal server is shared by
                # the session's tests: the same ref from another test would find that
                # test's case, whose worker is gone (202, pending for ever).
                case.body["external_ref"] = (run_id + case.body["external_ref"])[:128]
            if role is None:
                headers = {"x-test-anonymous": "1"}  # the client's hook signs nobody in
            else:
                headers = headers_for(users, role, fresh=path == "/api/v1/auth/logout")
            send(name, case, headers)

        try:
            drive()
        except Unsatisfiable:
            # Only where no input can break the schema (GET /health: no parameters, no
            # body, no security requirement).
            if not mode.is_negative:
                raise
            tally.by_pass["nothing to negate"] += 1
        if "case_id" in ids:  # the case the steps ran on still reads back, conforming
            send("read back", read_case.Case(path_parameters={"case_id": ids["case_id"]}),
                 headers_for(users, "coordinator"))

    def edges() -> None:
        """Values the generator rarely reaches that once broke the API: instants at the ends
        of the representable range, text holding NUL. Each must be refused with 422 (and
        conform); a case they were sent to must still read back."""
        extension = "/api/v1/cases/{case_id}/summonses/{department}/extension"
        cid = on_loop(new_case(extension))
        cases: list[tuple[str, str, dict[str, Any], str]] = [
            *(("GET", "/api/v1/routing", {"query": {
                "category": "land", "location": "jiulong-grid-1", "start": start}},
               "coordinator") for start in ("0001-01-01T00:00:00+10:00", "9999-12-31T20:00:00Z")),
            *(("POST", extension, {"path_parameters": {"case_id": cid, "department": DEPT},
                                   "body": {"new_deadline": deadline, "reason": "edge"}},
               "department")
              for deadline in ("9999-12-31T23:00:00-10:00", "0001-01-01T00:00:00+10:00")),
            ("POST", "/api/v1/cases/{case_id}/facts",
             {"path_parameters": {"case_id": cid}, "body": {"text": "a\x00b"}}, "coordinator"),
            ("POST", "/api/v1/cases", {"body": {**INTAKE, "title": "\x00"}}, "coordinator"),
            ("POST", "/api/v1/users", {"body": {"username": "st.nul", "display_name": "a\x00",
                                                "role": "auditor"}}, "admin"),
            ("GET", "/api/v1/audit/denials", {"query": {"username": "a\x00"}}, "auditor"),
            ("POST", "/api/v1/auth/token", {"body": {"username": "\x00", "password": "x"}},
             "coordinator"),
        ]
        for method, path, parts, role in cases:
            case = schema[path][method].Case(**parts)
            response = send("edge values", case, headers_for(users, role))
            if response.status_code != 422:
                tally.unexpected(f"{method} {path}", response, "want 422")
        send("read back", read_case.Case(path_parameters={"case_id": cid}),
             headers_for(users, "coordinator"))

    def run_all() -> None:
        for op in operations:
            method, path = op.method.upper(), op.path
            role = fitting_role(method, path)
            run(op, "positive", GenerationMode.POSITIVE, POSITIVE_EXAMPLES, role)
            run(op, "negative", GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, role)
            if (refused := refused_role(method, path)) is not None:
                run(op, "refused role", GenerationMode.POSITIVE, REFUSED_EXAMPLES, refused)
            if (method, path) not in PUBLIC:
                run(op, "anonymous", GenerationMode.POSITIVE, REFUSED_EXAMPLES, None)
        edges()

    started = time.monotonic()
    await asyncio.to_thread(run_all)
    report = tally.report(len(operations), time.monotonic() - started)
    print("\n" + report)
    assert not tally.findings, report
