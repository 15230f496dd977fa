"""Users, passwords and bearer tokens. No web framework here: the API, the CLI and the
tests share these functions.

Passwords are hashed with argon2 (argon2-cffi). A token reads `whs_<id>_<secret>`: the id
finds the row, and only an HMAC-SHA256 of the whole token under WHISTLE_SECRET_KEY is
stored, so a copy of the database gives no usable token. Tokens are shown once."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from whistle.domain import Level, Role
from whistle.models import ApiToken, AppUser, Department, Jurisdiction

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
PASSWORD_MIN, PASSWORD_MAX = 10, 128
TOKEN = re.compile(r"^whs_([0-9a-f]{12})_([A-Za-z0-9_-]{20,64})$")
# Wrong passwords in a row that lock an account, and for how long.
LOCK_AFTER, LOCK_FOR = 5, timedelta(minutes=15)
# Refresh `last_used_at` at most this often, so reading a token is not a write per request.
_TOUCH_EVERY = timedelta(minutes=5)
log = logging.getLogger(__name__)

_hasher = PasswordHasher()
# Verified when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-password-" + secrets.token_hex(8))


class TokenKind(StrEnum):
    SESSION = "session"  # from signing in with a password; short-lived
    API = "api"  # for a system or a script; issued by an admin or the user, revocable


class IdentityError(ValueError):
    """Bad input for a user or token operation; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class AccountLocked(Exception):
    """Too many wrong passwords in a row: no sign-in until `until`."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"locked until {until.isoformat()}")
        self.until = until


class TokenRejected(Exception):
    """A bearer token that does not let anyone in; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Principal:
    """The signed-in user as the authorisation rules see them."""

    username: str
    display_name: str
    role: Role
    jurisdiction: str
    jurisdiction_path: str  # "/huizhou/huicheng/" — this node and below is their area
    level: Level
    department: str | None
    token_id: str | None = None

    def covers(self, path: str) -> bool:
        """The node at `path` is in this user's area (their node or below it)."""
        return path.startswith(self.jurisdiction_path)


def now() -> datetime:
    return datetime.now(UTC)


# --- passwords ----------------------------------------------------------------------------


def check_password_rules(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise IdentityError("password", f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if password.strip() != password:
        raise IdentityError("password", "must not start or end with white space")


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def verify_password(session: Session, username: str, password: str) -> AppUser | None:
    """The active user with this name and password, or None. Upgrades an old hash.
    LOCK_AFTER wrong passwords in a row lock the account for LOCK_FOR (AccountLocked),
    whatever is tried meanwhile."""
    user = session.get(AppUser, username) if USERNAME.match(username) else None
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
        right = True
    except (VerificationError, InvalidHashError):
        right = False
    if user is None or not user.password_hash or not user.active:
        return None
    at = now()
    if user.locked_until is not None and user.locked_until > at:
        raise AccountLocked(user.locked_until)
    if not right:
        user.failed_sign_ins += 1
        if user.failed_sign_ins >= LOCK_AFTER:
            user.failed_sign_ins, user.locked_until = 0, at + LOCK_FOR
        session.add(user)
        session.commit()
        return None
    if user.failed_sign_ins or user.locked_until is not None:
        user.failed_sign_ins, user.locked_until = 0, None
        session.add(user)
        session.commit()
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.add(user)
        session.commit()
    return user


# --- users --------------------------------------------------------------------------------


def create_user(session: Session, *, username: str, display_name: str, role: Role | str,
                jurisdiction: str, department: str | None = None,
                password: str | None = None) -> AppUser:
    """Add a user (not committed). Department staff take their department's node as
    their jurisdiction when none is given."""
    if not USERNAME.match(username):
        raise IdentityError("username", "2 to 64 characters: a-z, 0-9, '.', '_', '-'; "
                                        "starting with a letter or digit")
    if session.get(AppUser, username) is not None:
        raise IdentityError("username", f"{username!r} is taken")
    user = AppUser(username=username, display_name="-", role="-", jurisdiction="-",
                   created_at=now())
    _assign(session, user, display_name=display_name, role=role, jurisdiction=jurisdiction,
            department=department)
    if password is not None:
        user.password_hash = hash_password(password)
        user.password_changed_at = now()
    session.add(user)
    return user


def update_user(session: Session, user: AppUser, *, display_name: str | None = None,
                role: Role | str | None = None, jurisdiction: str | None = None,
                department: str | None = None, active: bool | None = None,
                password: str | None = None) -> AppUser:
    """Change a user (not committed). Deactivating or changing the password ends every
    sign-in session of theirs; API tokens of a deactivated user stop working too."""
    _assign(session, user,
            display_name=display_name if display_name is not None else user.display_name,
            role=role if role is not None else user.role,
            jurisdiction=jurisdiction if jurisdiction is not None else user.jurisdiction,
            department=department if department is not None or role is not None
            else user.department)
    if active is not None:
        user.active = active
    if password is not None:
        user.password_hash = hash_password(password)
        user.password_changed_at = now()
        user.failed_sign_ins, user.locked_until = 0, None  # an admin's reset unlocks
    if password is not None or active is False:
        revoke_all(session, user.username, kind=TokenKind.SESSION)
    session.add(user)
    return user


def _assign(session: Session, user: AppUser, *, display_name: str, role: Role | str,
            jurisdiction: str, department: str | None) -> None:
    display_name = display_name.strip()
    if not 1 <= len(display_name) <= 100:
        raise IdentityError("display_name", "must be 1 to 100 characters")
    try:
        role = Role(role)
    except ValueError:
        raise IdentityError("role", "one of " + ", ".join(Role)) from None
    if role == Role.DEPARTMENT:
        if department is None:
            raise IdentityError("department", "department staff belong to a department")
        dept = session.get(Department, department)
        if dept is None:
            raise IdentityError("department", f"unknown department {department!r}")
        jurisdiction = jurisdiction or dept.jurisdiction
    elif department is not None:
        raise IdentityError("department", f"only department staff have one, not a {role}")
    node = session.get(Jurisdiction, jurisdiction)
    if node is None:
        raise IdentityError("jurisdiction", f"unknown jurisdiction {jurisdiction!r}")
    if role == Role.GRID_WORKER and node.level not in (Level.GRID, Level.VILLAGE):
        raise IdentityError("jurisdiction", "a grid worker belongs to a grid (or a village)")
    user.display_name, user.role, user.jurisdiction = display_name, role, jurisdiction
    user.department = department if role == Role.DEPARTMENT else None


def principal(session: Session, user: AppUser, token_id: str | None = None) -> Principal:
    return _principal(user, session.get(Jurisdiction, user.jurisdiction), token_id)


def _principal(user: AppUser, node: Jurisdiction | None, token_id: str | None) -> Principal:
    if node is None:  # reference data lost the node: the user has no area at all
        raise TokenRejected("user_inactive", f"{user.username}'s jurisdiction "
                                             f"{user.jurisdiction!r} no longer exists")
    return Principal(username=user.username, display_name=user.display_name,
                     role=Role(user.role), jurisdiction=user.jurisdiction,
                     jurisdiction_path=node.path, level=Level(node.level),
                     department=user.department, token_id=token_id)


# --- tokens -------------------------------------------------------------------------------


def _digest(secret_key: str, token: str) -> str:
    return hmac.new(secret_key.encode(), token.encode(), hashlib.sha256).hexdigest()


def issue_token(session: Session, *, secret_key: str, username: str, kind: TokenKind,
                name: str, ttl: timedelta) -> tuple[str, ApiToken]:
    """A new token for `username` (not committed): the plain token, to show once, and
    its row."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise IdentityError("name", "must be 1 to 100 characters")
    if ttl <= timedelta(0):
        raise IdentityError("expires_in_days", "must be in the future")
    token_id = secrets.token_hex(6)
    token = f"whs_{token_id}_{secrets.token_urlsafe(32)}"
    issued = now()
    row = ApiToken(id=token_id, username=username, kind=kind, name=name,
                   secret_hash=_digest(secret_key, token), created_at=issued,
                   expires_at=issued + ttl)
    session.add(row)
    return token, row


# Built once: every request runs it, and building the statement cost as much as running it.
_SIGN_IN = (select(ApiToken, AppUser, Jurisdiction)
            .join(AppUser, col(AppUser.username) == col(ApiToken.username), isouter=True)
            .join(Jurisdiction, col(Jurisdiction.code) == col(AppUser.jurisdiction),
                  isouter=True)
            .where(col(ApiToken.id) == bindparam("token_id")))


def authenticate(session: Session, *, secret_key: str, token: str) -> Principal:
    """The principal a bearer token stands for, or TokenRejected saying why not. Every
    request comes through here: the token, its user and the user's node are one query."""
    m = TOKEN.match(token)
    found = session.exec(_SIGN_IN, params={"token_id": m.group(1)}).first() if m else None
    row, user, node = found if found is not None else (None, None, None)
    # Compare even when the row is missing, so timing does not tell ids apart.
    expected = row.secret_hash if row is not None else _digest(secret_key, "")
    if not hmac.compare_digest(expected, _digest(secret_key, token)) or row is None:
        raise TokenRejected("invalid_token", "the token is not valid")
    at = now()
    if row.revoked_at is not None:
        raise TokenRejected("token_revoked", "the token was revoked")
    if row.expires_at <= at:
        raise TokenRejected("token_expired", "the token has expired; sign in again")
    if user is None or not user.active:
        raise TokenRejected("user_inactive", "the account is deactivated")
    who = _principal(user, node, row.id)  # before the touch's commit expires the rows
    if row.last_used_at is None or at - row.last_used_at > _TOUCH_EVERY:
        _touch(session, row, at)
    return who


def _touch(session: Session, row: ApiToken, at: datetime) -> None:
    """Record when a token was last used. Only a hint for its owner, so best effort: when
    the database cannot take writes (SQLite locked, a connection lost) the request goes on
    as a read instead of failing on it."""
    token_id = row.id
    row.last_used_at = at
    session.add(row)
    try:
        session.commit()
    except OperationalError as e:
        session.rollback()
        log.warning("token %s: last use not recorded (%s)", token_id, e.orig or e)


def revoke(session: Session, token_id: str) -> ApiToken | None:
    """Revoke one token (not committed); None if there is no such token."""
    row = session.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now()
        session.add(row)
    return row


def revoke_all(session: Session, username: str, kind: TokenKind | None = None) -> int:
    q = select(ApiToken).where(ApiToken.username == username,
                               col(ApiToken.revoked_at).is_(None))
    if kind is not None:
        q = q.where(ApiToken.kind == kind)
    rows = list(session.exec(q))
    for row in rows:
        row.revoked_at = now()
        session.add(row)
    return len(rows)


def tokens_of(session: Session, username: str) -> list[ApiToken]:
    q = select(ApiToken).where(ApiToken.username == username)
    return list(session.exec(q.order_by(col(ApiToken.created_at).desc())))
