"""Notification channels: which channels a recipient has, the stable idempotency key of a
message, the webhook signature, and the three senders (webhook, email, log).

The delivery workflow and its activities (workflows/delivery.py, activities/notify.py)
decide when to send; this module only knows how. Standard library plus httpx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import smtplib
import time
from collections.abc import Iterable
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from whistle.domain import centre_address, department_address
from whistle.models import AppUser, NotificationChannel

log = logging.getLogger("whistle.notify")

SIGNATURE_HEADER = "Whistle-Signature"  # "sha256=<hex>"
TIMESTAMP_HEADER = "Whistle-Timestamp"  # Unix seconds, part of what is signed
KEY_HEADER = "Idempotency-Key"  # the same on every attempt of one message


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"
    LOG = "log"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last attempt; the row says why


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- keys and signatures --------------------------------------------------------------------


def idempotency_key(*parts: object) -> str:
    """A stable key for one event: the same whatever attempt or process sends it."""
    raw = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def outbox_key(case_id: str, seq: int, recipient: str, kind: str) -> str:
    return idempotency_key("outbox", case_id, seq, recipient, kind)


def digest_key(centre: str, period_end_iso: str) -> str:
    return idempotency_key("digest", centre, period_end_iso)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + HMAC-SHA256(secret, timestamp + "." + body), hex. The timestamp is
    signed too, so a receiver can refuse an old request replayed later."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str,
           tolerance_seconds: float = 300, now: float | None = None) -> bool:
    """What a receiver does (the README's recipe): recompute, compare in constant time,
    refuse a timestamp too far from now."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_seconds and hmac.compare_digest(sign(secret, timestamp, body),
                                                            signature)


# --- which channels a message goes to -------------------------------------------------------


def user_recipient(user: AppUser) -> str:
    """The outbox recipient a user's own channel listens to."""
    return department_address(user.department) if user.department else \
        centre_address(user.jurisdiction)


def channels_for(recipient: str, channels: Iterable[NotificationChannel],
                 users: dict[str, AppUser]) -> list[NotificationChannel]:
    """The active channels of `recipient`: its own, and those of active users whose
    department (or centre) it is."""
    found = []
    for ch in channels:
        if not ch.active:
            continue
        if ch.owner == recipient:
            found.append(ch)
        elif ch.owner.startswith("user:"):
            user = users.get(ch.owner.removeprefix("user:"))
            if user is not None and user.active and user_recipient(user) == recipient:
                found.append(ch)
    return found


# --- senders --------------------------------------------------------------------------------


class SendFailed(Exception):
    """The channel did not take the message; the text says why (kept as last_error)."""


def send_webhook(url: str, secret: str, key: str, payload: dict[str, Any], *,
                 timeout: float) -> None:
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
    ts = str(int(time.time()))
    headers = {"Content-Type": "application/json", KEY_HEADER: key, TIMESTAMP_HEADER: ts,
               SIGNATURE_HEADER: sign(secret, ts, body), "User-Agent": "whistle-notify/1"}
    try:
        r = httpx.post(url, content=body, headers=headers, timeout=timeout,
                       follow_redirects=False)
    except httpx.HTTPError as e:
        raise SendFailed(f"{type(e).__name__}: {e}") from e
    if not 200 <= r.status_code < 300:
        raise SendFailed(f"HTTP {r.status_code}: {r.text[:200]}")


class SmtpConfig(_Msg):
    host: str
    port: int
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    sender: str
    timeout: float = 10.0


def send_email(smtp: SmtpConfig, to: str, key: str, subject: str, text: str) -> None:
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = to
    msg["Subject"] = subject
    # The same Message-ID on every attempt: a mail system can drop the repeat.
    msg["Message-ID"] = f"<{key}@whistle>"
    msg.set_content(text)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as s:
            if smtp.starttls:
                s.starttls()
            if smtp.username:
                s.login(smtp.username, smtp.password or "")
            s.send_message(msg)
    except (OSError, smtplib.SMTPException) as e:
        raise SendFailed(f"{type(e).__name__}: {e}") from e


def send_log(logger_name: str, key: str, payload: dict[str, Any]) -> None:
    logging.getLogger(logger_name or "whistle.notify.log").info(
        "notification %s to %s: %s", payload.get("kind"), payload.get("recipient"),
        payload.get("text"), extra={"case_id": payload.get("case_id"),
                                    "idempotency_key": key})
