"""Notification channels (admins only): where each department's, centre's or user's
notifications go — a signed webhook, an email address or the log — and what was
delivered on each."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlmodel import Session, col, select

from api.access import ChannelAdmin
from api.deps import SessionDep
from api.errors import invalid, not_found
from api.schemas import Local
from whistle.channels import ChannelKind, DeliveryStatus, new_secret
from whistle.models import (
    AppUser,
    Department,
    Jurisdiction,
    NotificationChannel,
    NotificationDelivery,
)

router = APIRouter(prefix="/channels", tags=["channels"])

ChannelId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Owner = Annotated[str, StringConstraints(
    pattern=r"^(department|centre|user):[a-z0-9][a-z0-9._-]{0,63}$")]
Target = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s]*)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOGGER = re.compile(r"^[A-Za-z0-9_.-]{0,100}$")


class ChannelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner: str
    kind: ChannelKind
    target: str
    active: bool
    created_at: Local
    has_secret: bool = False


class ChannelWithSecret(ChannelOut):
    secret: str | None = Field(None, description="webhooks: the HMAC key, shown in this "
                                                 "answer only; store it in the receiver")


class NewChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: Owner = Field(description="department:CODE, centre:NODE or user:USERNAME")
    kind: ChannelKind
    target: Target = Field("", description="webhook: http(s) URL; email: address; "
                                           "log: a logger name (empty: whistle.notify.log)")
    active: bool = True


class ChannelChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Target | None = None
    active: bool | None = None
    rotate_secret: bool = Field(False, description="webhooks: a new HMAC key (in the answer)")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    idempotency_key: str
    message_id: int | None
    digest_id: int | None
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    created_at: Local
    last_attempt_at: Local | None
    delivered_at: Local | None


def _out(ch: NotificationChannel, secret: str | None = None) -> ChannelWithSecret:
    return ChannelWithSecret(id=ch.id or 0, owner=ch.owner, kind=ChannelKind(ch.kind),
                             target=ch.target, active=ch.active, created_at=ch.created_at,
                             has_secret=bool(ch.secret), secret=secret)


def _check_target(kind: ChannelKind, target: str) -> None:
    ok = {ChannelKind.WEBHOOK: _URL, ChannelKind.EMAIL: _EMAIL, ChannelKind.LOG: _LOGGER}
    if not ok[kind].match(target):
        want = {ChannelKind.WEBHOOK: "an http(s) URL", ChannelKind.EMAIL: "an email address",
                ChannelKind.LOG: "a logger name"}[kind]
        raise invalid("target", f"a {kind} channel needs {want}")


def _check_owner(session: Session, owner: str) -> None:
    kind, code = owner.split(":", 1)
    table = {"department": Department, "centre": Jurisdiction, "user": AppUser}[kind]
    if session.get(table, code) is None:
        raise invalid("owner", f"no {kind} {code}")


def _channel(session: Session, channel_id: int) -> NotificationChannel:
    ch = session.get(NotificationChannel, channel_id)
    if ch is None:
        raise not_found("channel", str(channel_id))
    return ch


@router.get("", response_model=list[ChannelOut])
def list_channels(session: SessionDep, who: ChannelAdmin,
                  owner: Annotated[str | None, Query(max_length=128)] = None
                  ) -> list[ChannelWithSecret]:
    """Channels, optionally of one owner (secrets are never listed)."""
    q = select(NotificationChannel).order_by(col(NotificationChannel.id))
    if owner is not None:
        q = q.where(NotificationChannel.owner == owner)
    return [_out(ch) for ch in session.exec(q)]


@router.post("", status_code=201, response_model=ChannelWithSecret)
def create_channel(body: NewChannel, session: SessionDep, who: ChannelAdmin
                   ) -> ChannelWithSecret:
    """Add a channel. A webhook gets an HMAC key, shown in this answer only."""
    _check_owner(session, body.owner)
    _check_target(body.kind, body.target)
    secret = new_secret() if body.kind == ChannelKind.WEBHOOK else None
    ch = NotificationChannel(owner=body.owner, kind=body.kind, target=body.target,
                             secret=secret, active=body.active, created_at=datetime.now(UTC))
    session.add(ch)
    session.commit()
    return _out(ch, secret)


@router.get("/{channel_id}", response_model=ChannelOut)
def get_channel(channel_id: ChannelId, session: SessionDep, who: ChannelAdmin
                ) -> ChannelWithSecret:
    return _out(_channel(session, channel_id))


@router.patch("/{channel_id}", response_model=ChannelWithSecret)
def change_channel(channel_id: ChannelId, body: ChannelChange, session: SessionDep,
                   who: ChannelAdmin) -> ChannelWithSecret:
    """Change the target, switch the channel off or on, or rotate a webhook's key."""
    ch = _channel(session, channel_id)
    if body.target is not None:
        _check_target(ChannelKind(ch.kind), body.target)
        ch.target = body.target
    if body.active is not None:
        ch.active = body.active
    secret = None
    if body.rotate_secret:
        if ch.kind != ChannelKind.WEBHOOK:
            raise invalid("rotate_secret", "only webhooks have a key")
        secret = ch.secret = new_secret()
    session.add(ch)
    session.commit()
    return _out(ch, secret)


@router.delete("/{channel_id}", status_code=204, response_class=Response)
def delete_channel(channel_id: ChannelId, session: SessionDep, who: ChannelAdmin
                   ) -> Response:
    """Remove a channel; its pending deliveries end as failed (with the reason)."""
    session.delete(_channel(session, channel_id))
    session.commit()
    return Response(status_code=204)


@router.get("/{channel_id}/deliveries", response_model=list[DeliveryOut])
def channel_deliveries(
    channel_id: ChannelId, session: SessionDep, who: ChannelAdmin,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryOut]:
    """What was sent on this channel, newest first: attempts, last error, delivered_at."""
    _channel(session, channel_id)
    q = select(NotificationDelivery).where(NotificationDelivery.channel_id == channel_id)
    if status is not None:
        q = q.where(NotificationDelivery.status == status)
    rows = session.exec(q.order_by(col(NotificationDelivery.id).desc()).limit(limit))
    return [DeliveryOut.model_validate(r) for r in rows]
