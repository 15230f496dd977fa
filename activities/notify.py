"""Activities of notification delivery and work-meeting digests.

Every send is recorded in `notification_delivery` (one row per message and channel): the
attempt is counted *before* the send and the success written after it, so a crash in
between leaves the row pending and the next attempt sends again with the same idempotency
key — at least once, never lost, and a receiver that keeps the keys drops the repeat.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from whistle import digests
from whistle.channels import (
    ChannelKind,
    DeliveryStatus,
    SendFailed,
    SmtpConfig,
    channels_for,
    digest_key,
    outbox_key,
    send_email,
    send_log,
    send_webhook,
)
from whistle.db import session_scope
from whistle.domain import centre_address
from whistle.models import (
    AppUser,
    DigestRecord,
    NotificationChannel,
    NotificationDelivery,
    OutboxMessage,
)
from workflows.delivery import ActivityName as DeliveryActivity
from workflows.delivery import ClaimRequest, DeliverRequest
from workflows.digest import ActivityName as DigestActivity
from workflows.digest import DigestPeriod

log = logging.getLogger("whistle.notify")


def _now() -> datetime:
    return datetime.now(UTC)


class NotifyActivities:
    """Delivery and digest activities, bound to one read model and one SMTP relay."""

    def __init__(self, engine: Engine, smtp: SmtpConfig, *, webhook_timeout: float = 10.0
                 ) -> None:
        self.engine, self.smtp, self.webhook_timeout = engine, smtp, webhook_timeout

    # --- the dispatcher's two steps --------------------------------------------------------

    @activity.defn(name=DeliveryActivity.CLAIM)
    def claim_deliveries(self, req: ClaimRequest) -> list[int]:
        """Turn new outbox rows into pending deliveries (one per channel of the recipient)
        and return the pending deliveries not already in flight. Waits up to
        `wait_seconds` for work (a long poll: one activity per few seconds when idle)."""
        deadline = time.monotonic() + req.wait_seconds
        while True:
            found = self._claim_once(req)
            if found or time.monotonic() >= deadline or activity.is_worker_shutdown():
                return found
            activity.heartbeat()
            time.sleep(0.5)

    def _claim_once(self, req: ClaimRequest) -> list[int]:
        with session_scope(self.engine) as session:
            _fan_out(session, req.limit)
        with Session(self.engine) as session:
            q = (select(NotificationDelivery.id)
                 .where(NotificationDelivery.status == DeliveryStatus.PENDING)
                 .order_by(col(NotificationDelivery.id)).limit(req.limit))
            if req.exclude:
                q = q.where(col(NotificationDelivery.id).not_in(req.exclude))
            return [i for i in session.exec(q) if i is not None]

    @activity.defn(name=DeliveryActivity.DELIVER)
    def deliver(self, req: DeliverRequest) -> bool:
        """One attempt to send one delivery. True when sent (now or before); a failure
        raises and Temporal retries with backoff; the last attempt marks the row failed."""
        attempt = activity.info().attempt
        with session_scope(self.engine) as session:
            d = session.get(NotificationDelivery, req.delivery_id)
            if d is None or d.status != DeliveryStatus.PENDING:
                return d is not None and d.status == DeliveryStatus.DELIVERED
            ch = session.get(NotificationChannel, d.channel_id)
            payload = _payload(session, d)
            d.attempts += 1
            d.last_attempt_at = _now()
            if ch is None or not ch.active or payload is None:
                d.status, d.last_error = DeliveryStatus.FAILED, "channel removed or switched off"
                return False
            channel = ch.model_copy()
        case_id = payload.get("case_id")
        try:
            self._send(channel, d.idempotency_key, payload)
        except SendFailed as e:
            last = attempt >= req.max_attempts
            with session_scope(self.engine) as session:
                row = session.get(NotificationDelivery, req.delivery_id)
                assert row is not None
                row.last_error = str(e)[:2000]
                if last:
                    row.status = DeliveryStatus.FAILED
            log.warning("delivery %s on channel %s, attempt %s%s: %s", req.delivery_id,
                        channel.id, attempt, " (the last)" if last else "", e,
                        extra={"case_id": case_id})
            raise ApplicationError(str(e), type="delivery_failed", non_retryable=last) from e
        with session_scope(self.engine) as session:
            row = session.get(NotificationDelivery, req.delivery_id)
            assert row is not None
            row.status, row.delivered_at, row.last_error = DeliveryStatus.DELIVERED, _now(), None
            _settle_message(session, row.message_id)
        log.info("delivered %s on %s channel %s (attempt %s)", d.idempotency_key, channel.kind,
                 channel.id, attempt, extra={"case_id": case_id})
        return True

    def _send(self, ch: NotificationChannel, key: str, payload: dict[str, Any]) -> None:
        match ch.kind:
            case ChannelKind.WEBHOOK:
                send_webhook(ch.target, ch.secret or "", key, payload,
                             timeout=self.webhook_timeout)
            case ChannelKind.EMAIL:
                send_email(self.smtp, ch.target, key, payload["subject"], payload["text"])
            case _:
                send_log(ch.target, key, payload)

    # --- digests ---------------------------------------------------------------------------

    @activity.defn(name=DigestActivity.BUILD_DIGEST)
    def build_digest(self, p: DigestPeriod) -> int:
        """Count the period's cases of the centre's area and store the digest (once per
        centre and period: a retry finds the row). Returns its id."""
        end = datetime.fromisoformat(p.period_end_iso).astimezone(UTC)
        with session_scope(self.engine) as session:
            return digests.build(session, p.centre, end - timedelta(days=p.period_days), end)

    @activity.defn(name=DigestActivity.SEND_DIGEST)
    def send_digest(self, digest_id: int) -> int:
        """Queue the digest on the centre's channels (the dispatcher sends it). Returns how
        many deliveries it queued (none again on a retry)."""
        with session_scope(self.engine) as session:
            digest = session.get(DigestRecord, digest_id)
            if digest is None:
                raise ApplicationError(f"no digest {digest_id}", non_retryable=True)
            key = digest_key(digest.centre, digest.period_end.isoformat())
            chans = channels_for(centre_address(digest.centre), _channels(session),
                                 _users(session))
            return _add_deliveries(session, key, chans, digest_id=digest_id)


def _channels(session: Session) -> list[NotificationChannel]:
    return list(session.exec(select(NotificationChannel).where(
        NotificationChannel.active == True)))  # noqa: E712


def _users(session: Session) -> dict[str, AppUser]:
    return {u.username: u for u in session.exec(select(AppUser).where(
        AppUser.active == True))}  # noqa: E712


def _add_deliveries(session: Session, key: str, chans: list[NotificationChannel], *,
                    message_id: int | None = None, digest_id: int | None = None) -> int:
    have = set(session.exec(select(NotificationDelivery.channel_id).where(
        NotificationDelivery.idempotency_key == key)))
    added = 0
    for ch in chans:
        if ch.id is None or ch.id in have:
            continue
        session.add(NotificationDelivery(idempotency_key=key, channel_id=ch.id,
                                         message_id=message_id, digest_id=digest_id,
                                         status=DeliveryStatus.PENDING, created_at=_now()))
        added += 1
    return added


def _fan_out(session: Session, limit: int) -> None:
    """Outbox rows not yet fanned out get one pending delivery per channel; a recipient
    without a channel gets the log, and its message counts as delivered."""
    fanned = exists().where(NotificationDelivery.message_id == OutboxMessage.id)
    new = list(session.exec(select(OutboxMessage).where(
        col(OutboxMessage.delivered_at).is_(None), ~fanned)
        .order_by(col(OutboxMessage.id)).limit(limit)))
    if not new:
        return
    chans, users = _channels(session), _users(session)
    for m in new:
        found = channels_for(m.recipient, chans, users)
        if not found:
            log.info("notification %s to %s (no channel configured): %s", m.kind, m.recipient,
                     m.text, extra={"case_id": m.case_id})
            m.delivered_at = _now()
            continue
        _add_deliveries(session, outbox_key(m.case_id, m.seq, m.recipient, m.kind), found,
                        message_id=m.id)


def _settle_message(session: Session, message_id: int | None) -> None:
    """An outbox row is delivered when every channel has it."""
    if message_id is None:
        return
    open_ = session.exec(select(NotificationDelivery.id).where(
        NotificationDelivery.message_id == message_id,
        NotificationDelivery.status != DeliveryStatus.DELIVERED)).first()
    if open_ is None:
        m = session.get(OutboxMessage, message_id)
        if m is not None and m.delivered_at is None:
            m.delivered_at = _now()


def _payload(session: Session, d: NotificationDelivery) -> dict[str, Any] | None:
    """What is sent: the same fields on every channel and every attempt."""
    if d.message_id is not None:
        m = session.get(OutboxMessage, d.message_id)
        if m is None:
            return None
        return {"type": "case_notification", "id": d.idempotency_key, "case_id": m.case_id,
                "seq": m.seq, "recipient": m.recipient, "kind": m.kind, "text": m.text,
                "created_at": m.created_at.isoformat(),
                "subject": f"[Whistle] 案件 {m.case_id}：{m.kind}"}
    if d.digest_id is not None:
        g = session.get(DigestRecord, d.digest_id)
        if g is None:
            return None
        return {"type": "digest", "id": d.idempotency_key, "digest_id": g.id,
                "recipient": centre_address(g.centre), "kind": "digest", "centre": g.centre,
                "period_start": g.period_start.isoformat(),
                "period_end": g.period_end.isoformat(), "counts": g.counts,
                "text": digests.render_text(g),
                "subject": f"[Whistle] 工作例会 {g.centre} "
                           f"{g.period_start.date()}–{g.period_end.date()}"}
    return None
