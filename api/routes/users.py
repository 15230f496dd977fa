"""User administration (admins only): accounts, roles, areas, API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func
from sqlmodel import col, select

from api.access import Admin
from api.deps import SessionDep, SettingsDep
from api.errors import ApiError, invalid, not_found
from api.routes.auth import TokenId, TokenInfo
from api.schemas import Local, Page
from whistle import identity
from whistle.domain import Code, Role
from whistle.identity import IdentityError, TokenKind
from whistle.models import ApiToken, AppUser

router = APIRouter(prefix="/users", tags=["users"])

Username = Annotated[str, Path(pattern=identity.USERNAME.pattern)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    display_name: str
    role: str
    jurisdiction: str
    department: str | None
    active: bool
    created_at: Local
    password_changed_at: Local | None


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(pattern=identity.USERNAME.pattern)]
    display_name: Name
    role: Role
    jurisdiction: Code | None = Field(None, description="default for department staff: "
                                                        "their department's node")
    department: Code | None = None
    password: Password | None = Field(None, description="none: the user signs in with "
                                                        "API tokens only")


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: Name | None = None
    role: Role | None = None
    jurisdiction: Code | None = None
    department: Code | None = None
    active: bool | None = None
    password: Password | None = None


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    expires_in_days: int = Field(90, ge=1, le=3650)


class IssuedToken(TokenInfo):
    token: str = Field(description="shown once: store it now")


def _user(session: SessionDep, username: str) -> AppUser:
    user = session.get(AppUser, username)
    if user is None:
        raise not_found("user", username)
    return user


def _out(user: AppUser) -> UserOut:
    return UserOut.model_validate(user)


@router.get("", response_model=Page[UserOut])
def list_users(
    session: SessionDep,
    who: Admin,
    role: Role | None = None,
    jurisdiction: Code | None = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[UserOut]:
    """Users, by name."""
    q = select(AppUser)
    if role is not None:
        q = q.where(AppUser.role == role)
    if jurisdiction is not None:
        q = q.where(AppUser.jurisdiction == jurisdiction)
    if active is not None:
        q = q.where(AppUser.active == active)
    total = session.exec(select(func.count()).select_from(q.subquery())).one()
    rows = session.exec(q.order_by(col(AppUser.username)).limit(limit).offset(offset))
    return Page(items=[_out(u) for u in rows], total=total, limit=limit, offset=offset)


@router.post("", status_code=201, response_model=UserOut)
def create_user(body: NewUser, session: SessionDep, who: Admin) -> UserOut:
    """Add a user with a role, a node and (department staff) a department."""
    try:
        user = identity.create_user(session, username=body.username,
                                    display_name=body.display_name, role=body.role,
                                    jurisdiction=body.jurisdiction or "",
                                    department=body.department, password=body.password)
    except IdentityError as e:
        if e.message.endswith("is taken"):
            raise ApiError(409, "user_exists", e.message, field=e.field) from e
        raise invalid(e.field, e.message) from e
    session.commit()
    return _out(user)


@router.get("/{username}", response_model=UserOut)
def get_user(username: Username, session: SessionDep, who: Admin) -> UserOut:
    return _out(_user(session, username))


@router.patch("/{username}", response_model=UserOut)
def change_user(username: Username, body: UserChange, session: SessionDep, who: Admin
                ) -> UserOut:
    """Change role, node, department, name; deactivate (`active: false`, which ends every
    token's use) or reset the password (which ends every sign-in)."""
    user = _user(session, username)
    if username == who.username and (body.active is False or
                                     body.role not in (None, Role.ADMIN)):
        raise ApiError(409, "own_account", "an admin cannot lock themselves out; ask "
                                           "another admin")
    try:
        identity.update_user(session, user, **body.model_dump(exclude_unset=True))
    except IdentityError as e:
        session.rollback()
        raise invalid(e.field, e.message) from e
    session.commit()
    return _out(user)


@router.get("/{username}/tokens", response_model=list[TokenInfo])
def user_tokens(username: Username, session: SessionDep, who: Admin) -> list[TokenInfo]:
    _user(session, username)
    return [TokenInfo.model_validate(t) for t in identity.tokens_of(session, username)]


@router.post("/{username}/tokens", status_code=201, response_model=IssuedToken)
def issue_token(username: Username, body: NewToken, session: SessionDep,
                settings: SettingsDep, who: Admin) -> IssuedToken:
    """An API token for a system or script acting as this user. The token is in this
    answer only; the server keeps a keyed hash of it."""
    user = _user(session, username)
    if not user.active:
        raise ApiError(409, "user_inactive", f"{username} is deactivated")
    if body.expires_in_days > settings.token_max_days:
        raise invalid("expires_in_days", f"at most {settings.token_max_days} days")
    token, row = identity.issue_token(
        session, secret_key=settings.secret_key.get_secret_value(), username=username,
        kind=TokenKind.API, name=body.name, ttl=timedelta(days=body.expires_in_days))
    session.commit()
    return IssuedToken(token=token, **TokenInfo.model_validate(row).model_dump())


@router.delete("/{username}/tokens/{token_id}", status_code=204, response_class=Response)
def revoke_token(username: Username, token_id: TokenId, session: SessionDep, who: Admin
                 ) -> Response:
    row = session.get(ApiToken, token_id)
    if row is None or row.username != username:
        raise not_found("token", token_id)
    identity.revoke(session, token_id)
    session.commit()
    return Response(status_code=204)
