"""The clients that load the stack during a fault, the ledger of what they were told, and
the checker that compares it with every case's history and read model.

A client behaves as a careful caller should: it repeats a request that got no answer (a
dropped connection), 503 (unavailable: nothing recorded) or 504/202 (pending: it may have
been recorded) until it gets a real one, always with the same body — the same external_ref
for an opening. A 409 to a repeat of a step that had no clear answer means an earlier try
was applied. "Lost" and "duplicated" are counted against what the clients were told:

- lost: a step the client got 200/201 for, a step of the case's script, or a clock that
  was due, missing from the case's history or its read model (or a case missing);
- duplicated: the same step twice in history or read model (two signed_off for one
  summons round…), a second case for one external_ref, a workflow no client was told of,
  a deliberate repeat that was accepted instead of refused.

The audit cross-check (audit.check) must also find nothing: the read model of every case
equals what its history proves, event by event.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from audit.check import check_cases, read_models
from audit.history import CaseHistory, case_id_from, fetch_case
from audit.report import CheckReport, FindingKind
from audit.timeline import Reconstruction, reconstruct
from tests.api.test_cases_api import INTAKE
from tests.helpers import TestUsers
from whistle.domain import ActivityName, EventKind, Role
from whistle.models import CaseEventRecord, CaseRecord

SIGN_OFF = {"opinion": "同意", "actions_taken": "现场核查"}
OUTCOME = {"kind": "administrative_resolution", "summary": "行政处理"}
FEEDBACK = {"satisfaction": "satisfied"}

Fact = tuple[str, str | None]  # (event kind, department)


@dataclass
class Plan:
    """One case and the script its client follows.

    "full": open, each department reports in then signs off, outcome, feedback → closed.
    "clock": open and wait; the short report-in clock of its category is missed and the
    ladder's one step (a reminder) taken."""

    ref: str
    kind: str
    category: str
    departments: list[str]
    case_id: str | None = None

    def body(self) -> dict[str, Any]:
        return {**INTAKE, "category": self.category, "departments": self.departments,
                "external_ref": self.ref}

    def steps(self) -> list[tuple[str, dict[str, Any], Fact]]:
        if self.kind != "full":
            return []
        return ([(f"summonses/{d}/report-in", {}, (EventKind.REPORTED_IN, d))
                 for d in self.departments]
                + [(f"summonses/{d}/sign-off", SIGN_OFF, (EventKind.SIGNED_OFF, d))
                   for d in self.departments]
                + [("outcome", OUTCOME, (EventKind.OUTCOME, None)),
                   ("feedback", FEEDBACK, (EventKind.FEEDBACK, None))])

    def expected(self) -> Counter[Fact]:
        """Every timeline event the case must end with, exactly once each."""
        facts: list[Fact] = [(EventKind.OPENED, None)]
        facts += [(EventKind.SUMMONED, d) for d in self.departments]
        if self.kind == "full":
            facts += [fact for _, _, fact in self.steps()] + [(EventKind.CLOSED, None)]
        else:
            facts += [(k, d) for d in self.departments
                      for k in (EventKind.CLOCK_MISSED, EventKind.ESCALATED)]
        return Counter((str(k), d) for k, d in facts)

    def optional(self) -> Counter[Fact]:
        """Events the case may end with, at most once each: the early warning of a clock
        case (skipped when a fault kept the case from running until the clock was missed)."""
        if self.kind == "full":
            return Counter()
        return Counter((str(EventKind.CLOCK_WARNING), d) for d in self.departments)


def sizes(full: int, clock: int) -> tuple[int, int]:
    """(scripted, clock) case counts: as given, or WHISTLE_FAULT_CASES in all, split alike."""
    total = os.environ.get("WHISTLE_FAULT_CASES")
    if not total:
        return full, clock
    scripted = round(int(total) * full / (full + clock))
    return scripted, int(total) - scripted


def plans(prefix: str, full: int, clock: int, clock_categories: tuple[str, ...] = ("neighbour",)
          ) -> list[Plan]:
    """`full` scripted cases (one or two departments) and `clock` cases left waiting on a
    short clock, spread over `clock_categories`."""
    made = []
    for i in range(full):
        departments = ["xjk-police"] if i % 2 else ["xjk-police", "xjk-justice"]
        made.append(Plan(f"{prefix}-F{i:03d}-{uuid.uuid4().hex[:6]}", "full", "land",
                         departments))
    for i in range(clock):
        category = clock_categories[i % len(clock_categories)]
        made.append(Plan(f"{prefix}-C{i:03d}-{uuid.uuid4().hex[:6]}", "clock", category,
                         ["xjk-justice"]))
    return made


@dataclass
class Ack:
    """A 200/201 a client got: the case, the step's event, the last seq it was told of."""

    case_id: str
    fact: Fact
    seq: int


@dataclass
class Ledger:
    """What the clients sent and were told."""

    requests: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "201", "503 database_unavailable"
    acks: list[Ack] = field(default_factory=list)
    case_ids: dict[str, set[str]] = field(default_factory=dict)  # external_ref → ids told
    retried: int = 0  # requests repeated after no answer, 503, 504 or 202
    applied_earlier: int = 0  # a repeat refused because an unanswered try was applied
    repeats_refused: int = 0  # deliberate repeats of an acknowledged step: 409 / same case
    repeats_accepted: int = 0  # ... that were accepted again (a duplicate!)
    unexpected: list[str] = field(default_factory=list)
    in_flight: int = 0
    slowest: float = 0.0  # the longest a single request took to be answered

    @property
    def steps_acked(self) -> int:
        return sum(a.fact[0] != EventKind.OPENED for a in self.acks)


RETRY = {202, 502, 503, 504}  # try again: pending or unavailable (either may have been applied)
# Refusals of a repeated step that an earlier try applied, or is applying (step_in_progress:
# the repeat arrived while that try was still planning its deadlines).
ALREADY = {"wrong_summons_status", "case_closed", "wrong_case_status", "step_in_progress"}


def _code(r: httpx.Response) -> str:
    try:
        return str(r.json().get("code", ""))
    except ValueError:
        return "(not JSON)"


class Clients:
    """Drives plans through the API, `concurrency` requests at a time."""

    def __init__(self, api: httpx.AsyncClient, ledger: Ledger, *, concurrency: int = 10,
                 repeat: bool = False, give_up_after: float = 150.0) -> None:
        self.api, self.ledger, self.repeat = api, ledger, repeat
        self.sem = asyncio.Semaphore(concurrency)
        self.give_up_after = give_up_after

    async def _post(self, path: str, body: Any) -> httpx.Response | None:
        async with self.sem:
            self.ledger.requests += 1
            self.ledger.in_flight += 1
            began = time.monotonic()
            try:
                r = await self.api.post(path, json=body)
            except httpx.TransportError as e:  # no answer: the API went away mid-request
                self.ledger.answers[f"no answer ({type(e).__name__})"] += 1
                return None
            finally:
                self.ledger.in_flight -= 1
                self.ledger.slowest = max(self.ledger.slowest, time.monotonic() - began)
        code = _code(r) if r.status_code >= 300 else ""
        self.ledger.answers[f"{r.status_code} {code}".strip()] += 1
        return r

    async def _until_answered(self, path: str, body: Any) -> tuple[httpx.Response, bool]:
        """POST until the answer is neither missing nor 'try again'. Also returns whether
        some try got no clear answer (none, 202, 503 or 504: it may have been applied)."""
        unclear = False
        deadline = time.monotonic() + self.give_up_after
        while True:
            r = await self._post(path, body)
            if r is not None and r.status_code not in RETRY:
                return r, unclear
            unclear = True
            if time.monotonic() > deadline:
                raise AssertionError(f"POST {path}: no answer in {self.give_up_after:g} s")
            self.ledger.retried += 1
            await asyncio.sleep(0.3 + random.random() * 0.4)

    async def open(self, plan: Plan) -> None:
        r, _ = await self._until_answered("/api/v1/cases", plan.body())
        if r.status_code not in (200, 201):
            self.ledger.unexpected.append(f"open {plan.ref}: {r.status_code} {r.text[:200]}")
            return
        case_id = r.json()["case_id"]
        plan.case_id = case_id
        self.ledger.case_ids.setdefault(plan.ref, set()).add(case_id)
        self.ledger.acks.append(Ack(case_id, (str(EventKind.OPENED), None), 1))
        if self.repeat:
            await self.open_again(plan)

    async def open_again(self, plan: Plan) -> None:
        """The same opening again: it must answer 200 with the same case, not a second."""
        again, _ = await self._until_answered("/api/v1/cases", plan.body())
        self.ledger.case_ids.setdefault(plan.ref, set()).add(again.json().get("case_id", "?"))
        if again.status_code == 200 and again.json()["case_id"] == plan.case_id:
            self.ledger.repeats_refused += 1
        else:
            self.ledger.repeats_accepted += 1

    async def step(self, plan: Plan, path: str, body: Any, fact: Fact) -> bool:
        assert plan.case_id is not None
        url = f"/api/v1/cases/{plan.case_id}/{path}"
        r, unclear = await self._until_answered(url, body)
        if r.status_code == 200:
            self.ledger.acks.append(Ack(plan.case_id, (str(fact[0]), fact[1]), r.json()["seq"]))
        elif r.status_code == 409 and unclear and r.json()["code"] in ALREADY:
            self.ledger.applied_earlier += 1  # an earlier try did it; the checker checks
        else:
            self.ledger.unexpected.append(f"{plan.ref} {path}: {r.status_code} {r.text[:200]}")
            return False
        if self.repeat and path.endswith("sign-off"):  # a retried sign-off: refused
            again, _ = await self._until_answered(url, body)
            if again.status_code == 409:
                self.ledger.repeats_refused += 1
            else:
                self.ledger.repeats_accepted += 1
        return True

    async def run(self, plan: Plan) -> None:
        await self.open(plan)
        if plan.case_id is None:
            return
        for path, body, fact in plan.steps():
            if not await self.step(plan, path, body, fact):
                return

    async def run_all(self, cases: list[Plan]) -> None:
        await asyncio.gather(*(self.run(p) for p in cases))


async def sign_in_all(api: httpx.AsyncClient, users: TestUsers, cases: list[Plan]) -> None:
    """Issue and use once the token of everyone the scripts act as, before any fault: the
    test's sign-in hook issues tokens with a blocking write of its own, and the first use
    of a token records itself (a write of the API's)."""
    who = [users.headers("coordinator-city", Role.COORDINATOR, "huizhou")]
    who += [users.headers(f"staff-{d}", Role.DEPARTMENT, department=d)
            for d in sorted({d for p in cases for d in p.departments})]
    for headers in who:
        r = await api.get("/api/v1/cases", params={"limit": 1}, headers=headers)
        assert r.status_code == 200, r.text


async def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# --- the checker ----------------------------------------------------------------------------


@dataclass
class Verdict:
    """What the checker found, and the figures a test prints."""

    scenario: str
    cases: int = 0
    faults: list[str] = field(default_factory=list)
    events_checked: int = 0  # timeline events history proves, over every case
    rows_checked: int = 0  # timeline rows in the read model
    projections_retried: int = 0  # projection attempts after the first, from history
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # events no script or clock explains
    findings: Counter[str] = field(default_factory=Counter)  # audit cross-check, by kind
    finding_examples: list[str] = field(default_factory=list)
    histories: dict[str, Reconstruction] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def show(self, ledger: Ledger) -> None:
        wall = time.monotonic() - self.started
        print(f"\n[faults] {self.scenario}: {wall:.1f} s wall")
        print(f"  cases {self.cases}; faults injected {len(self.faults)}: "
              + "; ".join(self.faults))
        print(f"  requests {ledger.requests} (repeated {ledger.retried}), slowest answer "
              f"{ledger.slowest:.1f} s; answers {dict(sorted(ledger.answers.items()))}")
        print(f"  acknowledged: {len(ledger.acks) - ledger.steps_acked} openings, "
              f"{ledger.steps_acked} steps; applied by an unanswered try "
              f"{ledger.applied_earlier}; deliberate repeats refused {ledger.repeats_refused}")
        print(f"  events checked {self.events_checked} in history, {self.rows_checked} in the "
              f"read model; projections retried {self.projections_retried}")
        for note in self.notes:
            print(f"  {note}")
        print(f"  LOST {len(self.lost)}, DUPLICATED {len(self.duplicated)}, audit findings "
              f"{sum(self.findings.values())} {dict(self.findings)}, unexpected events "
              f"{len(self.unexpected)}, unexpected answers {len(ledger.unexpected)}")
        for line in (self.lost[:5] + self.duplicated[:5] + self.finding_examples[:5]
                     + self.unexpected[:5] + ledger.unexpected[:5]):
            print(f"    {line}")

    def assert_clean(self, ledger: Ledger) -> None:
        self.show(ledger)
        assert not ledger.unexpected, ledger.unexpected[:5]
        assert not self.lost, self.lost[:10]
        assert not self.duplicated, self.duplicated[:10]
        assert not self.findings, self.finding_examples[:10]
        assert not self.unexpected, self.unexpected[:10]


def _settled(engine: Engine, cases: list[Plan]) -> bool:
    """Every case shows the end of its script in the read model."""
    ids = [p.case_id for p in cases if p.case_id]
    with Session(engine) as session:
        status = dict(session.exec(select(CaseRecord.case_id, CaseRecord.status)
                                   .where(col(CaseRecord.case_id).in_(ids))).all())
        counts = Counter(session.exec(select(CaseEventRecord.case_id)
                                      .where(col(CaseEventRecord.case_id).in_(ids))).all())
    for p in cases:
        if p.case_id is None:
            return False
        want = sum(p.expected().values())
        if p.kind == "full" and status.get(p.case_id) != "closed":
            return False
        if counts[p.case_id] < want:
            return False
    return True


async def settle(engine: Engine, cases: list[Plan], timeout: float) -> float:
    """Wait (at most `timeout`) until every case has reached the end of its script in the
    read model; returns the seconds waited."""
    began = time.monotonic()
    while not await asyncio.to_thread(_settled, engine, cases):
        if time.monotonic() - began > timeout:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - began


async def fetch_all(client: Client, case_ids: list[str], streams: int = 8
                    ) -> dict[str, CaseHistory]:
    sem = asyncio.Semaphore(streams)

    async def one(cid: str) -> tuple[str, CaseHistory]:
        async with sem:
            return cid, await fetch_case(client, cid)

    return dict(await asyncio.gather(*(one(c) for c in case_ids)))


async def listed_case_ids(client: Client, task_queue: str, expect: int, wait: float = 15.0
                          ) -> set[str]:
    """The cases the server has workflows for on `task_queue` (visibility is eventually
    consistent: wait until at least `expect` show, or `wait` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        ids = {case_id_from(wf.id)
               async for wf in client.list_workflows(f"TaskQueue = '{task_queue}'")}
        if len(ids) >= expect or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.5)


def _retried_projections(history: CaseHistory) -> int:
    n = 0
    for run in history.runs:
        projections = {e.event_id for e in run.events
                       if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                       and e.activity_task_scheduled_event_attributes.activity_type.name
                       == ActivityName.PROJECT_CASE}
        for e in run.events:
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                a = e.activity_task_started_event_attributes
                if a.scheduled_event_id in projections and a.attempt > 1:
                    n += a.attempt - 1
    return n


_LOST = {FindingKind.EVENT_MISSING, FindingKind.CASE_MISSING, FindingKind.SUMMONS_MISSING,
         FindingKind.OUTBOX_MISSING, FindingKind.STEP_WITHOUT_EVENT}
_DOUBLED = {FindingKind.EVENT_EXTRA, FindingKind.SUMMONS_EXTRA, FindingKind.OUTBOX_EXTRA}


async def check(verdict: Verdict, client: Client, engine: Engine, cases: list[Plan],
                ledger: Ledger, task_queue: str, *, settle_timeout: float = 60.0) -> Verdict:
    """Wait for the cases to settle, then compare history, read model and ledger."""
    waited = await settle(engine, cases, settle_timeout)
    verdict.notes.append(f"settled {waited:.1f} s after the clients finished")
    verdict.cases = len(cases)
    ids = [p.case_id for p in cases if p.case_id]
    for p in cases:
        if p.case_id is None:
            verdict.lost.append(f"{p.ref}: the client never got its case opened")
    # A projection may still be running: fetch again until none is (a few seconds at most).
    reports: dict[str, CheckReport] = {}
    histories: dict[str, CaseHistory] = {}
    pending = ids
    for _ in range(20):
        fetched = await fetch_all(client, pending)
        histories.update(fetched)
        checked = await asyncio.to_thread(check_cases, engine, [fetched[c] for c in pending])
        for cid, rep in zip(pending, checked, strict=True):
            if isinstance(rep, Exception):
                raise rep
            reports[cid] = rep
        pending = [c for c in pending if reports[c].pending]
        if not pending:
            break
        await asyncio.sleep(1)
    with Session(engine) as session:
        rows = read_models(session, ids)
    for p in cases:
        if p.case_id is None:
            continue
        rep, history = reports[p.case_id], histories[p.case_id]
        r = reconstruct(history)
        verdict.histories[p.case_id] = r
        verdict.events_checked += rep.events
        verdict.projections_retried += _retried_projections(history)
        db = rows[p.case_id].events
        verdict.rows_checked += len(db)
        for f in rep.findings:
            verdict.findings[f.kind.value] += 1
            verdict.finding_examples.append(f"{p.ref} ({p.case_id}): {f.message}")
            if f.kind in _LOST:
                verdict.lost.append(f"{p.case_id}: {f.message}")
            elif f.kind in _DOUBLED:
                verdict.duplicated.append(f"{p.case_id}: {f.message}")
        _compare(verdict, p, r, db)
    for a in ledger.acks:
        r = verdict.histories.get(a.case_id)
        in_history = r is not None and any(
            (str(pe.event.kind), pe.event.department) == a.fact and pe.event.seq <= a.seq
            for pe in r.events.values())
        in_db = any((row.kind, row.department) == a.fact and row.seq <= a.seq
                    for row in rows.get(a.case_id, _NO_ROWS).events)
        if not (in_history and in_db):
            verdict.lost.append(f"{a.case_id}: acknowledged {a.fact} (seq ≤ {a.seq}) is "
                                f"missing from {'the read model' if in_history else 'history'}")
    for ref, told in ledger.case_ids.items():
        if len(told) > 1:
            verdict.duplicated.append(f"{ref}: the API answered with {len(told)} cases {told}")
    listed = await listed_case_ids(client, task_queue, len(ids))
    for cid in sorted(listed - set(ids)):
        verdict.duplicated.append(f"workflow of case {cid} on the task queue: no client was "
                                  "told of it (a second case for one submission)")
    for cid in sorted(set(ids) - listed):
        verdict.lost.append(f"case {cid}: the client was told of it; no workflow")
    verdict.duplicated += [f"a deliberate repeat was accepted ({ledger.repeats_accepted}x)"
                           ] * bool(ledger.repeats_accepted)
    return verdict


class _NoRows:
    events: list[CaseEventRecord] = []


_NO_ROWS = _NoRows()


def _compare(verdict: Verdict, p: Plan, r: Reconstruction, db: list[CaseEventRecord]) -> None:
    """The timeline in history and in the read model against the end of the case's script:
    each expected event exactly once, seqs 1..n without a gap."""
    want, may = p.expected(), p.optional()
    for source, facts, seqs in (
        ("history", Counter((str(pe.event.kind), pe.event.department)
                            for pe in r.events.values()), sorted(r.events)),
        ("read model", Counter((row.kind, row.department) for row in db),
         [row.seq for row in db]),
    ):
        for fact, n in (want - facts).items():
            verdict.lost.append(f"{p.case_id} ({p.kind}): {fact} missing {n}x from {source}")
        for fact, n in (facts - want).items():
            if fact in may and n <= may[fact]:
                continue
            if fact in want or fact in may:
                verdict.duplicated.append(f"{p.case_id} ({p.kind}): {fact} {n} time(s) too "
                                          f"many in {source}")
            else:
                verdict.unexpected.append(f"{p.case_id} ({p.kind}): {fact} in {source}")
        if seqs != list(range(1, len(seqs) + 1)):
            verdict.lost.append(f"{p.case_id}: {source} seqs are {seqs}, not 1..{len(seqs)}")
