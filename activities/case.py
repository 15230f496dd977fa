"""Activities of the case workflow. Each is safe to retry: the projection writes an event
once however often it runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Insert, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from whistle.domain import (
    CASE_LABELS_ZH,
    ActivityName,
    CaseEvent,
    CasePolicy,
    CaseState,
    DeadlineRequest,
    Notification,
    PlannedDeadline,
    PlanRequest,
    Projection,
)
from whistle.models import CaseEventRecord, CaseRecord, OutboxMessage, SummonsRecord
from whistle.policy import LivePolicy, Policy, PolicyError
from whistle.projection import case_row, summons_row
from whistle.settings import get_settings
from whistle.workdays import CalendarNotCovered, plan

# TEST-ONLY fault switch (issue #8; see tests/faults/test_idempotency.py). With it on, a
# projection delivered again (a retried attempt) appends its events once more under new
# seq numbers instead of skipping them: the fault suite runs a worker with this bug to
# prove its checker reports the duplicates. Honoured only when WHISTLE_ENV=test, so no
# development or production worker can run with it.
TEST_BREAK_IDEMPOTENCY = "WHISTLE_TEST_BREAK_IDEMPOTENCY"


def _test_break_idempotency() -> bool:
    return os.environ.get(TEST_BREAK_IDEMPOTENCY) == "1" and get_settings().env == "test"


class CaseActivities:
    """The activities, bound to one database and one policy file."""

    def __init__(self, engine: Engine, policy_file: Path, timezone: str = "Asia/Shanghai"
                 ) -> None:
        self.engine = engine
        self.timezone = timezone
        self._policy = LivePolicy(policy_file)
        self._break_idempotency = _test_break_idempotency()  # TEST-ONLY, see above

    def all(self) -> list[Callable[..., Any]]:
        """Every activity a case worker registers."""
        return [self.load_policy, self.plan_deadlines, self.plan_clocks, self.project_case]

    def policy(self) -> Policy:
        """The policy file as it is now, parsed again only when the file has changed
        (every summons plans deadlines: no YAML parse per step). A file that cannot be read
        or is invalid fails the attempt with the reason (PolicyError's message names the
        field); the workflow retries a few times, then marks the case for attention."""
        try:
            return self._policy.current()
        except PolicyError as e:
            raise ApplicationError(str(e), type="policy_invalid") from e

    # Reading the policy and planning are async activities: they run on the worker's event
    # loop (a file stat, a parse when the file changed, a few date computations), never
    # queued behind projections that wait for a locked or unreachable database in the
    # activity threads — a case must plan its clocks while the read model is down.

    @activity.defn(name=ActivityName.LOAD_POLICY)
    async def load_policy(self, category: str) -> CasePolicy:
        """The clocks and ladder a new case of `category` runs under (read at case start,
        so later policy edits never change a running case)."""
        return self.policy().for_category(category)

    @activity.defn(name=ActivityName.PLAN_DEADLINES)
    def plan_deadlines(self, req: DeadlineRequest) -> list[datetime]:
        """The deadline of each clock from `start`, for runs recorded before provisional
        calendars (`plan_clocks` since): the same calendar, provisional years included, so
        such a run never stalls; whether a deadline is provisional is not returned."""
        overrides = self.policy().spec.calendar
        try:
            return [plan(req.start, c, self.timezone, overrides).due for c in req.clocks]
        except CalendarNotCovered as e:
            raise ApplicationError(str(e), type="calendar_not_covered") from e

    @activity.defn(name=ActivityName.PLAN_CLOCKS)
    async def plan_clocks(self, req: PlanRequest) -> list[list[PlannedDeadline]]:
        """The deadline of each clock of each request: plain hours, or working days on
        China's calendar in the deployment's time zone, official where the arrangement is
        published (policy `calendar:` block, then the chinese-calendar package) and
        provisional where it is not, each deadline saying whether it is. A year no
        calendar covers fails at once (retrying cannot mend it): the case then shows that
        it needs attention, with this reason."""
        return self.plan(req)

    def plan(self, req: PlanRequest) -> list[list[PlannedDeadline]]:
        """`plan_clocks`, called directly."""
        overrides = self.policy().spec.calendar
        try:
            return [[plan(r.start, c, self.timezone, overrides) for c in r.clocks]
                    for r in req.requests]
        except CalendarNotCovered as e:
            raise ApplicationError(str(e), type="calendar_not_covered",
                                   non_retryable=True) from e

    @activity.defn(name=ActivityName.PROJECT_CASE)
    def project_case(self, p: Projection) -> int:
        """Write the case snapshot, its new timeline events and their notifications in one
        transaction; events already written are skipped. Returns the events written.

        Core SQL, not the ORM: this runs once per step of every case, and the unit of work
        (a SELECT and an UPDATE per summons through `merge`) was a third of the worker's
        CPU. Each table is one or two statements whatever the case's size."""
        with self.engine.begin() as conn:
            written = _write_events(conn, p.state.case_id, p.events, self._break_idempotency)
            _write_outbox(conn, p.state.case_id, p.events, p.notifications)
            _write_case(conn, p.state, max(e.seq for e in p.events))
        return written


_EVENTS = CaseEventRecord.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
_CASES = CaseRecord.__table__  # type: ignore[attr-defined]
_SUMMONSES = SummonsRecord.__table__  # type: ignore[attr-defined]
_SUMMONS_KEY = ("case_id", "department", "round")

# The statements are built once: building one (and its cache key) per call cost more than
# running it. Values go in as parameters; an UPDATE without .values() sets the columns its
# parameters name.
_EVENTS_HAVE = select(_EVENTS.c.seq).where(
    _EVENTS.c.case_id == bindparam("cid"), _EVENTS.c.seq.in_(bindparam("seqs", expanding=True)))
_EVENTS_TOP = select(func.max(_EVENTS.c.seq)).where(_EVENTS.c.case_id == bindparam("cid"))
_OUTBOX_HAVE = select(_OUTBOX.c.seq, _OUTBOX.c.recipient).where(
    _OUTBOX.c.case_id == bindparam("cid"), _OUTBOX.c.seq.in_(bindparam("seqs", expanding=True)))
_CASE_SEQ = select(_CASES.c.last_seq).where(_CASES.c.case_id == bindparam("cid"))
_CASE_UPDATE = update(_CASES).where(_CASES.c.case_id == bindparam("cid"))
_INSERT = {t.name: insert(t) for t in (_EVENTS, _OUTBOX, _CASES)}


def _write_events(conn: Connection, case_id: str, events: list[CaseEvent],
                  break_idempotency: bool = False) -> int:
    have = set(conn.execute(_EVENTS_HAVE, {"cid": case_id, "seqs": [e.seq for e in events]})
               .scalars())
    new = [e for e in events if e.seq not in have]
    if break_idempotency and have:  # TEST-ONLY bug (see TEST_BREAK_IDEMPOTENCY)
        top = conn.execute(_EVENTS_TOP, {"cid": case_id}).scalar_one()
        new = [e.model_copy(update={"seq": top + i}) for i, e in enumerate(events, start=1)]
    if new:
        conn.execute(_INSERT[_EVENTS.name], [
            {"case_id": case_id, **e.model_dump(mode="json", exclude={"at"}), "at": e.at}
            for e in new])
    return len(new)


def _write_outbox(conn: Connection, case_id: str, events: list[CaseEvent],
                  notes: list[Notification]) -> None:
    if not notes:
        return
    by_seq = {e.seq: e for e in events}
    have = set(conn.execute(_OUTBOX_HAVE, {"cid": case_id, "seqs": [n.seq for n in notes]})
               .tuples())
    now = datetime.now(UTC)
    rows = []
    for n in notes:
        if (n.seq, n.recipient) in have or n.seq not in by_seq:
            continue
        have.add((n.seq, n.recipient))  # one message per recipient, even if listed twice
        e = by_seq[n.seq]
        rows.append({"case_id": case_id, "seq": n.seq, "recipient": n.recipient,
                     "kind": e.kind, "text": _render(case_id, e), "created_at": now,
                     "delivered_at": None})
    if rows:
        conn.execute(_INSERT[_OUTBOX.name], rows)


def _render(case_id: str, e: CaseEvent) -> str:
    label = CASE_LABELS_ZH[e.kind]
    detail = e.data.get("action") or e.data.get("reason") or ""
    who = f"【{e.department}】" if e.department else ""
    return f"案件 {case_id}：{label}{who} {detail}".strip()


def _write_case(conn: Connection, s: CaseState, seq: int) -> None:
    written = conn.execute(_CASE_SEQ, {"cid": s.case_id}).scalar_one_or_none()
    if written is not None and written >= seq:
        return  # an older snapshot than the one written already (a retried attempt)
    values = {**case_row(s, seq), "updated_at": datetime.now(UTC)}
    if written is None:
        conn.execute(_INSERT[_CASES.name], {"case_id": s.case_id, **values})
    else:
        conn.execute(_CASE_UPDATE, {"cid": s.case_id, **values})
    if s.summonses:
        rows = [{"case_id": s.case_id, "department": x.department, "round": x.round,
                 **summons_row(x)} for x in s.summonses]
        conn.execute(_summons_upsert(conn.dialect.name), rows)


@cache
def _summons_upsert(dialect: str) -> Insert:
    """INSERT … ON CONFLICT (case, department, round) DO UPDATE of every other column, on
    SQLite or PostgreSQL."""
    if dialect == "postgresql":
        stmt: Any = pg_insert(_SUMMONSES)
    elif dialect == "sqlite":
        stmt = sqlite_insert(_SUMMONSES)
    else:  # pragma: no cover - the settings accept only these two
        raise RuntimeError(f"no upsert for the {dialect} dialect")
    return stmt.on_conflict_do_update(
        index_elements=list(_SUMMONS_KEY),
        set_={c.name: stmt.excluded[c.name] for c in _SUMMONSES.c
              if c.name not in _SUMMONS_KEY})
