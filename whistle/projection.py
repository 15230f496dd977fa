"""How a case snapshot maps onto read-model rows. One mapping, used by the projection
activity that writes the rows and by the audit that checks them."""

from __future__ import annotations

from typing import Any

from whistle.domain import CaseState, Clock, Summons


def case_row(s: CaseState, last_seq: int) -> dict[str, Any]:
    """Every case_record column a snapshot up to event `last_seq` determines (all but the
    key and updated_at, the projection's own clock)."""
    intake = s.start.intake
    return dict(
        external_ref=intake.external_ref, title=intake.title, description=intake.description,
        category=intake.category, location=intake.location,
        jurisdiction_path="/" + "/".join(n.code for n in s.start.path) + "/",
        source_channel=intake.source_channel,
        parties=[p.model_dump(mode="json") for p in intake.parties],
        opened_by=s.start.actor, opened_at=s.opened_at,
        status=s.status, level=s.level, owner=s.owner, overdue=s.overdue,
        provisional=s.provisional,
        attention=s.attention.reason if s.attention else None,
        attention_since=s.attention.since if s.attention else None,
        unresolved_at_top=s.unresolved_at_top,
        policy_version=s.policy.version if s.policy else None,
        departments=sorted({x.department for x in s.summonses}),
        outcome_kind=s.outcome.kind if s.outcome else None,
        outcome_summary=s.outcome.summary if s.outcome else None,
        agreement_text=s.outcome.agreement_text if s.outcome else None,
        satisfaction=s.feedback.satisfaction if s.feedback else None,
        close_reason=s.close_reason, reopen_count=s.reopen_count, taken_over_by=s.handler,
        feedback_due=s.feedback_due, feedback_due_provisional=s.feedback_provisional,
        closed_at=s.closed_at, last_seq=last_seq,
    )


def summons_row(x: Summons) -> dict[str, Any]:
    """Every summons column but the key (case, department, round)."""
    ext = x.extension
    clock, running = x.running_clock
    return dict(
        status=x.status, supervisor=x.supervisor, lead=x.lead, summoned_at=x.summoned_at,
        report_in_due=x.report_in_due, sign_off_due=x.sign_off_due,
        report_in_provisional=x.is_provisional(Clock.REPORT_IN),
        sign_off_provisional=x.is_provisional(Clock.SIGN_OFF),
        next_due=running if x.status.is_open else None,
        next_due_provisional=x.status.is_open and x.is_provisional(clock),
        reported_in_at=x.reported_in_at, signed_off_at=x.signed_off_at, opinion=x.opinion,
        actions_taken=x.actions_taken, return_reason=x.return_reason,
        redispatched_to=x.redispatched_to,
        extension_status=ext.status if ext else None,
        extension_deadline=ext.new_deadline if ext else None,
        extension_reason=ext.reason if ext else None, overdue=x.overdue,
        escalation=x.escalations[-1].last_action if x.escalations else None,
    )
