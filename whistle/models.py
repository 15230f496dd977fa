"""Read-model tables: what the API lists and filters. The workflow history is the truth;
these rows are its projection, written idempotently by the projection activity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from whistle.db import UTCDateTime


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


# --- reference data -----------------------------------------------------------------------


class Jurisdiction(SQLModel, table=True):
    """A node of the hierarchy: city, county, town, village or grid."""

    code: str = Field(primary_key=True, max_length=64)
    level: str = Field(index=True, max_length=16)
    name_zh: str = Field(max_length=100)
    name_en: str = Field(max_length=200)
    parent: str | None = Field(default=None, index=True, max_length=64)
    path: str = Field(index=True, max_length=1000)  # "/huizhou/huicheng/xiaojinkou/"


class Department(SQLModel, table=True):
    """A unit that can be summoned: one kind (police, land_office, …) at one node."""

    code: str = Field(primary_key=True, max_length=64)
    kind: str = Field(index=True, max_length=64)
    jurisdiction: str = Field(index=True, max_length=64)
    name_zh: str = Field(max_length=100)
    name_en: str = Field(max_length=200)
    supervisor: str | None = Field(default=None, max_length=64)


class Category(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=64)
    name_zh: str = Field(max_length=100)
    name_en: str = Field(max_length=200)


# --- cases --------------------------------------------------------------------------------


class CaseRecord(SQLModel, table=True):
    __tablename__ = "case_record"

    case_id: str = Field(primary_key=True, max_length=64)
    external_ref: str | None = Field(default=None, unique=True, max_length=128)
    title: str = Field(max_length=200)
    description: str = Field(sa_column=Column(Text, nullable=False))
    category: str = Field(index=True, max_length=64)
    status: str = Field(index=True, max_length=32)
    level: str = Field(index=True, max_length=16)
    owner: str = Field(index=True, max_length=64)
    location: str = Field(max_length=64)
    jurisdiction_path: str = Field(index=True, max_length=1000)
    source_channel: str = Field(max_length=64)
    parties: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    departments: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    policy_version: str | None = Field(default=None, max_length=64)
    overdue: bool = Field(default=False, index=True)
    # A clock still to run has a provisional due (暂定: counted over a year whose official
    # arrangement is not published); `whistle recompute-deadlines` finds these.
    provisional: bool = Field(default=False, index=True,
                              sa_column_kwargs={"server_default": false()})
    # 需人工处理: why the case cannot go on by itself (None while it can).
    attention: str | None = Field(default=None, sa_column=Column(Text))
    attention_since: datetime | None = _ts()
    unresolved_at_top: bool = False
    outcome_kind: str | None = Field(default=None, max_length=64)
    outcome_summary: str | None = Field(default=None, sa_column=Column(Text))
    agreement_text: str | None = Field(default=None, sa_column=Column(Text))
    satisfaction: str | None = Field(default=None, max_length=32)
    close_reason: str | None = Field(default=None, max_length=32)
    reopen_count: int = 0
    taken_over_by: str | None = Field(default=None, max_length=64)
    opened_by: str = Field(max_length=128)
    opened_at: datetime = _ts(nullable=False, index=True)
    updated_at: datetime = _ts(nullable=False)
    feedback_due: datetime | None = _ts()
    feedback_due_provisional: bool = Field(default=False,
                                           sa_column_kwargs={"server_default": false()})
    closed_at: datetime | None = _ts()
    last_seq: int = 0


class SummonsRecord(SQLModel, table=True):
    """One department's part in a case (one row per round: a returned then re-summoned
    department has two)."""

    __tablename__ = "summons"
    __table_args__ = (Index("ix_summons_inbox", "department", "status", "next_due"),)

    case_id: str = Field(primary_key=True, max_length=64)
    department: str = Field(primary_key=True, max_length=64)
    round: int = Field(primary_key=True)
    status: str = Field(max_length=32)
    supervisor: str | None = Field(default=None, max_length=64)
    lead: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    summoned_at: datetime = _ts(nullable=False)
    report_in_due: datetime = _ts(nullable=False)
    sign_off_due: datetime = _ts(nullable=False)
    # each due rests on a provisional calendar (暂定) until recomputed
    report_in_provisional: bool = Field(default=False,
                                        sa_column_kwargs={"server_default": false()})
    sign_off_provisional: bool = Field(default=False,
                                       sa_column_kwargs={"server_default": false()})
    next_due: datetime | None = _ts()  # the clock running now, for the inbox order
    next_due_provisional: bool = Field(default=False,  # …and whether that due is 暂定
                                       sa_column_kwargs={"server_default": false()})
    reported_in_at: datetime | None = _ts()
    signed_off_at: datetime | None = _ts()
    opinion: str | None = Field(default=None, sa_column=Column(Text))
    actions_taken: str | None = Field(default=None, sa_column=Column(Text))
    return_reason: str | None = Field(default=None, sa_column=Column(Text))
    redispatched_to: str | None = Field(default=None, max_length=64)
    extension_status: str | None = Field(default=None, max_length=16)
    extension_deadline: datetime | None = _ts()
    extension_reason: str | None = Field(default=None, sa_column=Column(Text))
    overdue: bool = False
    escalation: str | None = Field(default=None, max_length=32)  # last ladder step taken


class CaseEventRecord(SQLModel, table=True):
    """The append-only timeline; (case_id, seq) makes a retried projection a no-op."""

    __tablename__ = "case_event"

    case_id: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True)
    kind: str = Field(index=True, max_length=32)
    at: datetime = _ts(nullable=False)
    actor: str = Field(max_length=128)
    department: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class OutboxMessage(SQLModel, table=True):
    """A notification waiting for delivery (delivery is its own component)."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("case_id", "seq", "recipient"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True, max_length=64)
    seq: int
    recipient: str = Field(index=True, max_length=128)
    kind: str = Field(max_length=32)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts(nullable=False)
    delivered_at: datetime | None = _ts(index=True)


# --- identity -----------------------------------------------------------------------------


class AppUser(SQLModel, table=True):
    """A person who signs in: one role, one jurisdiction node, and for department staff
    one department. The password is kept only as an argon2 hash."""

    __tablename__ = "app_user"

    username: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=100)
    role: str = Field(index=True, max_length=32)
    jurisdiction: str = Field(index=True, max_length=64)
    department: str | None = Field(default=None, index=True, max_length=64)
    password_hash: str | None = Field(default=None, max_length=255)
    active: bool = True
    created_at: datetime = _ts(nullable=False)
    password_changed_at: datetime | None = _ts()
    failed_sign_ins: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    locked_until: datetime | None = _ts()  # too many wrong passwords in a row


class ApiToken(SQLModel, table=True):
    """A bearer token: a sign-in session or a long-lived token for a system. Only the
    HMAC of the secret is stored; the token itself is shown once."""

    __tablename__ = "api_token"

    id: str = Field(primary_key=True, max_length=32)  # public part of the token
    username: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=16)  # session | api
    name: str = Field(max_length=100)
    secret_hash: str = Field(max_length=128)
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = _ts()
    last_used_at: datetime | None = _ts()


class AccessDenial(SQLModel, table=True):
    """A request refused with 403: who, what, why. Kept for the auditors."""

    __tablename__ = "access_denial"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(nullable=False, index=True)
    username: str = Field(index=True, max_length=64)
    role: str = Field(max_length=32)
    method: str = Field(max_length=8)
    path: str = Field(max_length=500)
    permission: str = Field(max_length=64)
    case_id: str | None = Field(default=None, index=True, max_length=64)
    reason: str = Field(max_length=500)


# --- notification delivery and work-meeting digests ------------------------------------------


class NotificationChannel(SQLModel, table=True):
    """Where one recipient's notifications go: a signed webhook, an email address or the
    log. `owner` is an outbox recipient (`department:CODE`, `centre:NODE`) or `user:NAME`
    (that user's department, or their centre when they have none)."""

    __tablename__ = "notification_channel"

    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(index=True, max_length=128)
    kind: str = Field(max_length=16)  # webhook | email | log
    target: str = Field(max_length=500)  # URL, email address, or a logger name
    secret: str | None = Field(default=None, max_length=200)  # webhook HMAC key
    active: bool = True
    created_at: datetime = _ts(nullable=False)


class NotificationDelivery(SQLModel, table=True):
    """One message on one channel: attempts, last error, when it got through. The
    idempotency key is stable per event, so a receiver drops a repeat."""

    __tablename__ = "notification_delivery"
    __table_args__ = (UniqueConstraint("idempotency_key", "channel_id"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=64)
    channel_id: int = Field(index=True)
    message_id: int | None = Field(default=None, index=True)  # outbox.id
    digest_id: int | None = Field(default=None, index=True)
    status: str = Field(index=True, max_length=16)  # pending | delivered | failed
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = _ts(nullable=False)
    last_attempt_at: datetime | None = _ts()
    delivered_at: datetime | None = _ts()


class DigestRecord(SQLModel, table=True):
    """A work-meeting digest (工作例会) of one centre's area for one period."""

    __tablename__ = "digest"
    __table_args__ = (UniqueConstraint("centre", "period_end"),)

    id: int | None = Field(default=None, primary_key=True)
    centre: str = Field(index=True, max_length=64)
    centre_path: str = Field(max_length=1000)
    period_start: datetime = _ts(nullable=False)
    period_end: datetime = _ts(nullable=False, index=True)
    created_at: datetime = _ts(nullable=False)
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    cases: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
