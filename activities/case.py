"""Activities of the case workflow. Each is safe to retry: the projection writes an event
once however often it runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from whistle.db import session_scope
from whistle.domain import (
    CASE_LABELS_ZH,
    ActivityName,
    CaseEvent,
    CasePolicy,
    CaseState,
    DeadlineRequest,
    Notification,
    Projection,
    Summons,
    SummonsStatus,
)
from whistle.models import CaseEventRecord, CaseRecord, OutboxMessage, SummonsRecord
from whistle.policy import load_policy
from whistle.workdays import CalendarNotCovered, deadline


class CaseActivities:
    """The activities, bound to one database and one policy file."""

    def __init__(self, engine: Engine, policy_file: Path, timezone: str = "Asia/Shanghai"
                 ) -> None:
        self.engine = engine
        self.policy_file = policy_file
        self.timezone = timezone

    @activity.defn(name=ActivityName.LOAD_POLICY)
    def load_policy(self, category: str) -> CasePolicy:
        """The clocks and ladder a new case of `category` runs under (read at case start,
        so later policy edits never change a running case)."""
        return load_policy(self.policy_file).for_category(category)

    @activity.defn(name=ActivityName.PLAN_DEADLINES)
    def plan_deadlines(self, req: DeadlineRequest) -> list[datetime]:
        """The deadline of each clock from `start`: plain hours, or working days on China's
        official calendar in the deployment's time zone. A year the calendar does not know
        fails the attempt with the reason and is retried — the case waits (visibly, in the
        Temporal UI) for an updated calendar rather than get a guessed deadline."""
        overrides = load_policy(self.policy_file).spec.calendar
        try:
            return [deadline(req.start, c, self.timezone, overrides) for c in req.clocks]
        except CalendarNotCovered as e:
            raise ApplicationError(str(e), type="calendar_not_covered") from e

    @activity.defn(name=ActivityName.PROJECT_CASE)
    def project_case(self, p: Projection) -> int:
        """Write the case snapshot, its new timeline events and their notifications in one
        transaction; events already written are skipped. Returns the events written."""
        with session_scope(self.engine) as session:
            written = _write_events(session, p.state.case_id, p.events)
            _write_outbox(session, p.state.case_id, p.events, p.notifications)
            seq = max(e.seq for e in p.events)
            _write_case(session, p.state, seq)
        return written


def _write_events(session: Session, case_id: str, events: list[CaseEvent]) -> int:
    have = set(session.exec(select(CaseEventRecord.seq).where(
        CaseEventRecord.case_id == case_id,
        CaseEventRecord.seq.in_([e.seq for e in events]),  # type: ignore[attr-defined]
    )))
    new = [e for e in events if e.seq not in have]
    for e in new:
        session.add(CaseEventRecord(case_id=case_id, **e.model_dump(mode="json", exclude={"at"}),
                                    at=e.at))
    return len(new)


def _write_outbox(session: Session, case_id: str, events: list[CaseEvent],
                  notes: list[Notification]) -> None:
    by_seq = {e.seq: e for e in events}
    have = set(session.exec(select(OutboxMessage.seq, OutboxMessage.recipient).where(
        OutboxMessage.case_id == case_id,
        OutboxMessage.seq.in_([n.seq for n in notes]),  # type: ignore[attr-defined]
    )))
    now = datetime.now(UTC)
    for n in notes:
        if (n.seq, n.recipient) in have or n.seq not in by_seq:
            continue
        have.add((n.seq, n.recipient))  # one message per recipient, even if listed twice
        e = by_seq[n.seq]
        session.add(OutboxMessage(case_id=case_id, seq=n.seq, recipient=n.recipient,
                                  kind=e.kind, text=_render(case_id, e), created_at=now))


def _render(case_id: str, e: CaseEvent) -> str:
    label = CASE_LABELS_ZH[e.kind]
    detail = e.data.get("action") or e.data.get("reason") or ""
    who = f"【{e.department}】" if e.department else ""
    return f"案件 {case_id}：{label}{who} {detail}".strip()


def _write_case(session: Session, s: CaseState, seq: int) -> None:
    row = session.get(CaseRecord, s.case_id)
    if row is not None and row.last_seq >= seq:
        return  # an older snapshot than the one written already (a retried attempt)
    intake = s.start.intake
    values = dict(
        status=s.status, level=s.level, owner=s.owner, overdue=s.overdue,
        unresolved_at_top=s.unresolved_at_top, policy_version=s.policy and s.policy.version,
        departments=sorted({x.department for x in s.summonses}),
        outcome_kind=s.outcome and s.outcome.kind,
        outcome_summary=s.outcome and s.outcome.summary,
        agreement_text=s.outcome and s.outcome.agreement_text,
        satisfaction=s.feedback and s.feedback.satisfaction,
        close_reason=s.close_reason, reopen_count=s.reopen_count,
        feedback_due=s.feedback_due, closed_at=s.closed_at,
        updated_at=datetime.now(UTC), last_seq=seq,
    )
    if row is None:
        row = CaseRecord(
            case_id=s.case_id, external_ref=intake.external_ref, title=intake.title,
            description=intake.description, category=intake.category,
            location=intake.location,
            jurisdiction_path="/" + "/".join(n.code for n in s.start.path) + "/",
            source_channel=intake.source_channel,
            parties=[p.model_dump() for p in intake.parties],
            opened_by=s.start.actor, opened_at=s.opened_at, **values,
        )
        session.add(row)
    else:
        for k, v in values.items():
            setattr(row, k, v)
    for summons in s.summonses:
        session.merge(_summons_row(s.case_id, summons))


def _summons_row(case_id: str, x: Summons) -> SummonsRecord:
    ext = x.extension
    running = x.report_in_due if x.status == SummonsStatus.SUMMONED else x.sign_off_due
    return SummonsRecord(
        case_id=case_id, department=x.department, round=x.round, status=x.status,
        supervisor=x.supervisor, lead=x.lead, summoned_at=x.summoned_at,
        report_in_due=x.report_in_due,
        sign_off_due=x.sign_off_due, next_due=running if x.status.is_open else None,
        reported_in_at=x.reported_in_at, signed_off_at=x.signed_off_at, opinion=x.opinion,
        actions_taken=x.actions_taken, return_reason=x.return_reason,
        redispatched_to=x.redispatched_to,
        extension_status=ext and ext.status, extension_deadline=ext and ext.new_deadline,
        extension_reason=ext and ext.reason, overdue=x.overdue,
        escalation=x.escalations[-1].last_action if x.escalations else None,
    )
