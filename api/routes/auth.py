"""Signing in and one's own account: a password buys a short-lived bearer token; the
token signs every other request."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from api.access import Anyone, Public, unauthenticated
from api.deps import SessionDep, SettingsDep
from api.errors import ApiError, invalid, not_found
from api.schemas import ERRORS, Local
from whistle import identity
from whistle.identity import AccountLocked, IdentityError, TokenKind
from whistle.models import ApiToken

log = logging.getLogger("whistle.auth")
router = APIRouter(prefix="/auth", tags=["auth"])

Secret = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                               max_length=64)]
    password: Secret


class Me(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    display_name: str
    role: str
    jurisdiction: str
    level: str
    department: str | None


class TokenOut(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_at: Local
    user: Me


class TokenInfo(BaseModel):
    """A token as listed: never the token itself."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    name: str
    created_at: Local
    expires_at: Local
    revoked_at: Local | None
    last_used_at: Local | None


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: Secret
    new_password: Secret


@router.post("/token", response_model=TokenOut,
             responses={401: {**ERRORS[401], "description": "wrong user name or password, "
                                                         "or the account is locked"}})
def sign_in(body: Credentials, session: SessionDep, settings: SettingsDep, _: Public
            ) -> TokenOut:
    """Sign in with user name and password; the answer's `token` goes in
    `Authorization: Bearer …` on every request until `expires_at`."""
    try:
        user = identity.verify_password(session, body.username, body.password)
    except AccountLocked as e:
        log.warning("sign-in refused for %r: locked", body.username[:64])
        raise unauthenticated(
            "account_locked", f"too many wrong passwords: try again after "
            f"{e.until.astimezone(ZoneInfo(settings.timezone)):%H:%M}, or ask an admin to "
            "reset the password") from e
    if user is None:
        log.warning("failed sign-in for %r", body.username[:64])
        raise unauthenticated("invalid_credentials", "wrong user name or password")
    token, row = identity.issue_token(
        session, secret_key=settings.secret_key.get_secret_value(), username=user.username,
        kind=TokenKind.SESSION, name="sign-in", ttl=timedelta(hours=settings.session_hours))
    session.commit()
    who = identity.principal(session, user)
    return TokenOut(token=token, expires_at=row.expires_at, user=Me.model_validate(who))


@router.get("/me", response_model=Me)
def me(who: Anyone) -> Me:
    """Who the token belongs to: role, jurisdiction, department."""
    return Me.model_validate(who)


@router.post("/logout", status_code=204, response_class=Response)
def sign_out(session: SessionDep, who: Anyone) -> Response:
    """End this sign-in: the token stops working now."""
    if who.token_id is not None:
        identity.revoke(session, who.token_id)
        session.commit()
    return Response(status_code=204)


@router.post("/password", status_code=204, response_class=Response)
def change_password(body: PasswordChange, session: SessionDep, who: Anyone) -> Response:
    """Change one's own password; every sign-in session ends (API tokens stay)."""
    try:
        user = identity.verify_password(session, who.username, body.current_password)
    except AccountLocked:
        user = None
    if user is None:
        raise ApiError(403, "forbidden", "the current password is wrong",
                       field="current_password")
    try:
        identity.update_user(session, user, password=body.new_password)
    except IdentityError as e:
        raise invalid("new_password", e.message) from e
    session.commit()
    return Response(status_code=204)


@router.get("/tokens", response_model=list[TokenInfo])
def my_tokens(session: SessionDep, who: Anyone) -> list[TokenInfo]:
    """One's own tokens (sign-ins and API tokens), newest first."""
    return [TokenInfo.model_validate(t) for t in identity.tokens_of(session, who.username)]


@router.delete("/tokens/{token_id}", status_code=204, response_class=Response)
def revoke_my_token(token_id: TokenId, session: SessionDep, who: Anyone) -> Response:
    """Revoke one of one's own tokens."""
    row = session.get(ApiToken, token_id)
    if row is None or row.username != who.username:
        raise not_found("token", token_id)
    identity.revoke(session, token_id)
    session.commit()
    return Response(status_code=204)
