"""Request bodies and responses of the JSON API. Bodies refuse unknown fields; the
department and the actor come from the path and the caller, never from the body."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
)

from whistle.settings import get_settings

Note = Annotated[str, StringConstraints(max_length=2000)]


@lru_cache
def _zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def _local(value: datetime) -> str:
    return value.astimezone(_zone()).isoformat()


# Every time the API answers with is shown in the deployment's zone (Asia/Shanghai: +08:00).
Local = Annotated[datetime, PlainSerializer(_local, return_type=str, when_used="json")]


def _representable(value: datetime) -> datetime:
    """Refuse an instant that has no UTC (read model) or deployment-zone (answers) form,
    e.g. 9999-12-31T23:00:00-10:00: accepted, it would reach the case and break it."""
    try:
        value.astimezone(UTC)
        value.astimezone(_zone())
    except OverflowError:
        raise ValueError("out of range: the instant must fall within years 1 to 9999 in UTC "
                         "and in the deployment's time zone") from None
    return value


# A time a client sends that the case keeps: with its zone, and one every zone can show.
Instant = Annotated[AwareDatetime, AfterValidator(_representable)]

T = TypeVar("T")


class Body(BaseModel):
    """A request body: unknown fields are refused. The steps' bodies derive from their
    messages (api/steps.py)."""

    model_config = ConfigDict(extra="forbid")


# --- responses ----------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error: a stable `code`, a human `message`, the `field` at fault if one is."""

    code: str
    message: str
    field: str | None = None
    errors: list[FieldError] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "the body could not be parsed",
        401: "not signed in, or the token is unknown, expired or revoked",
        403: "the caller's role or area does not allow it (the reason is in `message`)",
        404: "unknown case or department",
        409: "the step does not fit the case's state (the reason is in `message`)",
        413: "request body too large",
        504: "the engine did not answer in time; the step may still be applied",
        422: "invalid input; `field` names it",
        503: "the case engine or database is unavailable; try again (a repeat is never "
             "doubled)",
    }.items()
}
ERRORS[401]["headers"] = {"WWW-Authenticate": {"description": "`Bearer`",
                                               "schema": {"type": "string"}}}


class PendingOut(BaseModel):
    case_id: str
    code: str
    message: str


class StepOut(BaseModel):
    case_id: str
    seq: int
    status: str
    level: str


class SummonsOut(BaseModel):
    department: str
    round: int
    status: str
    supervisor: str | None
    lead: bool
    summoned_at: Local
    report_in_due: Local
    sign_off_due: Local
    # 暂定: the due counted over a year whose official calendar is not published yet
    report_in_provisional: bool = False
    sign_off_provisional: bool = False
    next_due: Local | None
    next_due_provisional: bool = False  # the due of the clock running now is 暂定
    reported_in_at: Local | None
    signed_off_at: Local | None
    opinion: str | None
    actions_taken: str | None
    return_reason: str | None
    redispatched_to: str | None
    extension_status: str | None
    extension_deadline: Local | None
    extension_reason: str | None
    overdue: bool
    escalation: str | None


class EventOut(BaseModel):
    seq: int
    kind: str
    at: Local
    actor: str
    department: str | None
    data: dict[str, Any]


class CaseOut(BaseModel):
    case_id: str
    external_ref: str | None
    title: str
    category: str
    status: str
    level: str
    owner: str
    location: str
    source_channel: str
    departments: list[str]
    overdue: bool
    provisional: bool = False  # a running clock's due is provisional (暂定)
    attention: str | None = None  # 需人工处理: why the case cannot go on by itself
    attention_since: Local | None = None
    unresolved_at_top: bool
    outcome_kind: str | None
    satisfaction: str | None
    close_reason: str | None
    reopen_count: int
    taken_over_by: str | None = None
    opened_at: Local
    updated_at: Local
    feedback_due: Local | None
    feedback_due_provisional: bool = False
    closed_at: Local | None


class CaseDetail(CaseOut):
    description: str
    parties: list[dict[str, Any]]
    policy_version: str | None
    outcome_summary: str | None
    agreement_text: str | None
    opened_by: str
    workflow_id: str
    temporal_ui_url: str
    summonses: list[SummonsOut]
    timeline: list[EventOut]
    # 重复纠纷: earlier cases at the same place or with a party in common (at intake)
    repeat_of: list[str] = []


class InboxItem(SummonsOut):
    case_id: str
    case_title: str
    case_category: str
    case_level: str


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class Jurisdiction(BaseModel):
    code: str
    level: str
    name_zh: str
    name_en: str
    parent: str | None


class Department(BaseModel):
    code: str
    kind: str
    jurisdiction: str
    name_zh: str
    name_en: str
    supervisor: str | None


class Category(BaseModel):
    code: str
    name_zh: str
    name_en: str
