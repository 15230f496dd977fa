"""Cross-check the read model of a case against the timeline its history proves.

History is the truth: each projection the workflow asked for is in it (see timeline.py).
A projection that completed must be in SQL exactly; one still running may or may not be
there yet (it is counted as pending, never reported). The case row and the summons rows
must equal the last snapshot written; the timeline, the outbox and the steps' actors must
agree event by event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from audit.history import CaseHistory
from audit.report import CheckReport, Finding, FindingKind
from audit.timeline import Reconstruction, Snapshot, StepMatch, match_steps, reconstruct
from whistle.models import CaseEventRecord, CaseRecord, OutboxMessage, SummonsRecord
from whistle.projection import case_row, summons_row

_EVENT_FIELDS = ("kind", "at", "actor", "department", "data")


@dataclass
class ReadModel:
    """The rows of one case in SQL."""

    case: CaseRecord | None
    summonses: list[SummonsRecord]
    events: list[CaseEventRecord]
    outbox: list[OutboxMessage]


def read_model(session: Session, case_id: str) -> ReadModel:
    """Every row the projection writes for `case_id`."""
    return read_models(session, [case_id])[case_id]


def read_models(session: Session, case_ids: Sequence[str]) -> dict[str, ReadModel]:
    """Every row the projection writes for each of `case_ids`: one query per table for
    them all, grouped by case."""
    ids = list(dict.fromkeys(case_ids))
    found = {cid: ReadModel(case=None, summonses=[], events=[], outbox=[]) for cid in ids}
    if not ids:
        return found
    for row in session.exec(select(CaseRecord).where(col(CaseRecord.case_id).in_(ids))):
        found[row.case_id].case = row
    for s in session.exec(select(SummonsRecord).where(col(SummonsRecord.case_id).in_(ids))):
        found[s.case_id].summonses.append(s)
    for e in session.exec(select(CaseEventRecord).where(col(CaseEventRecord.case_id).in_(ids))
                          .order_by(col(CaseEventRecord.case_id), col(CaseEventRecord.seq))):
        found[e.case_id].events.append(e)
    for m in session.exec(select(OutboxMessage).where(col(OutboxMessage.case_id).in_(ids))):
        found[m.case_id].outbox.append(m)
    return found


def check(r: Reconstruction, db: ReadModel) -> CheckReport:
    """Every difference between the read model `db` and what history `r` proves."""
    findings = [*_events(r, db), *_case(r, db), *_summonses(r, db), *_outbox(r, db),
                *_steps(r)]
    return CheckReport(
        case_id=r.case_id, workflow_id=r.workflow_id, runs=r.runs, events=len(r.events),
        pending=sum(not pe.projected for pe in r.events.values()),
        steps=len([s for s in r.steps if s.step is not None]), findings=findings,
    )


def check_in(session: Session, r: Reconstruction) -> CheckReport:
    """`check` against the rows in `session`."""
    return check(r, read_model(session, r.case_id))


def check_case(engine: Engine, case: CaseHistory) -> CheckReport:
    """Rebuild `case` from its history and cross-check the read model in `engine`."""
    r = reconstruct(case)
    with Session(engine) as session:
        return check_in(session, r)


def check_cases(engine: Engine, cases: Sequence[CaseHistory]) -> list[CheckReport | Exception]:
    """`check_case` of each of `cases`, reading their rows in one query per table. A case
    whose history cannot be rebuilt gets its exception in its place; a failure to read the
    database is raised."""
    rebuilt: list[Reconstruction | Exception] = []
    for case in cases:
        try:
            rebuilt.append(reconstruct(case))
        except Exception as e:  # one unreadable history must not stop the others' check
            rebuilt.append(e)
    with Session(engine) as session:
        rows = read_models(session, [r.case_id for r in rebuilt
                                     if isinstance(r, Reconstruction)])
        return [r if isinstance(r, Exception) else check(r, rows[r.case_id]) for r in rebuilt]


# --- comparing values ---------------------------------------------------------------------


def _norm(v: Any) -> Any:
    """A value as the read model stores it: enums as their value, times as UTC instants,
    JSON columns as JSON."""
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(v, dict | list):
        return json.loads(json.dumps(v, default=str, sort_keys=True))
    return v


def _shown(v: Any) -> Any:
    """A value as a finding shows it (JSON-ready)."""
    v = _norm(v)
    return v.isoformat() if isinstance(v, datetime) else v


def _differences(expected: dict[str, Any], row: Any) -> Iterator[tuple[str, Any, Any]]:
    for name, want in expected.items():
        have = getattr(row, name)
        if _norm(want) != _norm(have):
            yield name, _shown(want), _shown(have)


# --- timeline -----------------------------------------------------------------------------


def _events(r: Reconstruction, db: ReadModel) -> Iterator[Finding]:
    rows = {row.seq: row for row in db.events}
    for seq, pe in sorted(r.events.items()):
        row = rows.pop(seq, None)
        e = pe.event
        if row is None:
            if pe.projected:
                yield Finding(kind=FindingKind.EVENT_MISSING, table="case_event", key=f"seq {seq}",
                              expected=e.kind.value,
                              message=f"event {seq} ({e.kind}) is in history, not in the "
                                      "read model")
            continue
        want = {f: getattr(e, f) for f in _EVENT_FIELDS}
        for name, expected, found in _differences(want, row):
            yield Finding(kind=FindingKind.EVENT_DIFFERENT, table="case_event", key=f"seq {seq}",
                          field=name, expected=expected, found=found,
                          message=f"event {seq} ({e.kind}): {name} is {found!r} in the read "
                                  f"model, {expected!r} in history")
    for seq, row in sorted(rows.items()):
        yield Finding(kind=FindingKind.EVENT_EXTRA, table="case_event", key=f"seq {seq}",
                      found=row.kind,
                      message=f"event {seq} ({row.kind}, by {row.actor}) is in the read model, "
                              "not in history")


# --- case row -----------------------------------------------------------------------------


def _snapshot_for(r: Reconstruction, db: ReadModel) -> Snapshot | None:
    """The snapshot the case row must show: the last projected one, or a later one still
    running whose write has already landed (its last_seq says so)."""
    expected = r.last_projected()
    if db.case is not None and (expected is None or db.case.last_seq > expected.last_seq):
        later = [s for s in r.snapshots if not s.projected and s.last_seq == db.case.last_seq]
        expected = later[-1] if later else expected
    return expected


def _case(r: Reconstruction, db: ReadModel) -> Iterator[Finding]:
    snap = _snapshot_for(r, db)
    if snap is None:
        return  # not projected yet: nothing is due in the read model
    if db.case is None:
        yield Finding(kind=FindingKind.CASE_MISSING, table="case_record", key=r.case_id,
                      message=f"case {r.case_id} is in history, not in the read model")
        return
    for name, expected, found in _differences(case_row(snap.state, snap.last_seq),
                                              db.case):
        yield Finding(kind=FindingKind.CASE_DIFFERENT, table="case_record", key=r.case_id,
                      field=name, expected=expected, found=found,
                      message=f"case {r.case_id}: {name} is {found!r} in the read model, "
                              f"{expected!r} in history (as of event {snap.last_seq})")


# --- summonses ----------------------------------------------------------------------------


def _summonses(r: Reconstruction, db: ReadModel) -> Iterator[Finding]:
    snap = _snapshot_for(r, db)
    if snap is None:
        return
    rows = {(row.department, row.round): row for row in db.summonses}
    for x in snap.state.summonses:
        key = f"{x.department} round {x.round}"
        row = rows.pop((x.department, x.round), None)
        if row is None:
            yield Finding(kind=FindingKind.SUMMONS_MISSING, table="summons", key=key,
                          expected=x.status.value,
                          message=f"summons of {key} is in history, not in the read model")
            continue
        for name, expected, found in _differences(summons_row(x), row):
            yield Finding(kind=FindingKind.SUMMONS_DIFFERENT, table="summons", key=key,
                          field=name, expected=expected, found=found,
                          message=f"summons of {key}: {name} is {found!r} in the read model, "
                                  f"{expected!r} in history")
    for (department, rnd), row in sorted(rows.items()):
        yield Finding(kind=FindingKind.SUMMONS_EXTRA, table="summons",
                      key=f"{department} round {rnd}", found=row.status,
                      message=f"summons of {department} round {rnd} is in the read model, "
                              "not in history")


# --- outbox -------------------------------------------------------------------------------


def _outbox(r: Reconstruction, db: ReadModel) -> Iterator[Finding]:
    due: dict[tuple[int, str, str], bool] = {}
    for n, kind, projected in r.notifications:
        key = (n.seq, n.recipient, str(kind))
        due[key] = due.get(key, False) or projected
    # Notifications of events carried over from a run not available left history with it.
    rows = {(m.seq, m.recipient, m.kind) for m in db.outbox if m.seq >= r.first_seq}
    for (seq, recipient, kind), projected in sorted(due.items()):
        if projected and (seq, recipient, kind) not in rows:
            yield Finding(kind=FindingKind.OUTBOX_MISSING, table="outbox",
                          key=f"seq {seq} to {recipient}", expected=kind,
                          message=f"notification of event {seq} ({kind}) to {recipient} is in "
                                  "history, not in the outbox")
    for seq, recipient, kind in sorted(rows - due.keys()):
        yield Finding(kind=FindingKind.OUTBOX_EXTRA, table="outbox",
                      key=f"seq {seq} to {recipient}", found=kind,
                      message=f"notification of event {seq} ({kind}) to {recipient} is in the "
                              "outbox, not in history")


# --- who did which step -------------------------------------------------------------------


def _steps(r: Reconstruction) -> Iterator[Finding]:
    for m in match_steps(r):
        if not isinstance(m, StepMatch):
            yield Finding(kind=FindingKind.EVENT_WITHOUT_STEP, table="history",
                          key=f"seq {m.seq}", found=m.actor,
                          message=f"event {m.seq} ({m.kind} by {m.actor}) was caused by no "
                                  "step accepted in history")
            continue
        kind, department = m.fact
        what = f"{kind}" + (f" of {department}" if department else "")
        source = (f"update {m.source.update_id} ({m.source.name}, history event "
                  f"{m.source.history_event_id} of run {m.source.run})" if m.source else "intake")
        if m.event is None:
            if m.finished:
                yield Finding(kind=FindingKind.STEP_WITHOUT_EVENT, table="history", key=source,
                              expected=what,
                              message=f"{source} by {m.actor} left no {what} on the timeline")
        elif m.event.actor != m.actor:
            yield Finding(kind=FindingKind.STEP_ACTOR_DIFFERENT, table="history",
                          key=f"seq {m.event.seq}", field="actor", expected=m.actor,
                          found=m.event.actor,
                          message=f"event {m.event.seq} ({what}) names {m.event.actor!r}, but "
                                  f"{source} was sent by {m.actor!r}")

