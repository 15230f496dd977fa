"""`whistle user …`, `whistle token …`, `whistle seed-demo`: accounts from the command line.

Passwords are read from a prompt (or one line of standard input with --password-stdin),
never from the command line, so they stay out of shell history and `ps`."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import timedelta

from sqlmodel import Session, col, select

from whistle import identity
from whistle.db import make_engine, migrate
from whistle.domain import Role
from whistle.identity import IdentityError, TokenKind
from whistle.models import AppUser
from whistle.settings import Settings, get_settings

DEMO_PASSWORD = "whistle-demo-2026"
# One user per role, around the worked example (a land dispute in Jiulong village,
# Xiaojinkou street, Huicheng district). `make run` creates them in development only.
DEMO_USERS: list[dict[str, str | None]] = [
    dict(username="coord.xjk", display_name="小金口街道综治中心 陈协调", role=Role.COORDINATOR,
         jurisdiction="xiaojinkou", department=None),
    dict(username="grid.jiulong", display_name="九龙村网格员 刘网格", role=Role.GRID_WORKER,
         jurisdiction="jiulong-grid-1", department=None),
    dict(username="petition.xjk", display_name="小金口信访办 王信访", role=Role.DEPARTMENT,
         jurisdiction="", department="xjk-petition"),
    dict(username="land.xjk", display_name="小金口国土所 李国土", role=Role.DEPARTMENT,
         jurisdiction="", department="xjk-land-office"),
    dict(username="enforce.xjk", display_name="小金口执法队 赵执法", role=Role.DEPARTMENT,
         jurisdiction="", department="xjk-law-enforcement"),
    dict(username="super.huicheng", display_name="惠城区综治中心 周督办", role=Role.SUPERVISOR,
         jurisdiction="huicheng", department=None),
    dict(username="auditor.city", display_name="惠州市评价监督 吴审计", role=Role.AUDITOR,
         jurisdiction="huizhou", department=None),
    dict(username="admin", display_name="系统管理员", role=Role.ADMIN,
         jurisdiction="huizhou", department=None),
]


def _password(args: argparse.Namespace, prompt: str = "password: ") -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("again: ") != first:
        raise IdentityError("password", "the two entries differ")
    return first


def _session() -> Session:
    engine = make_engine(get_settings().database_url)
    migrate(engine)
    return Session(engine)


def _user(session: Session, username: str) -> AppUser:
    user = session.get(AppUser, username)
    if user is None:
        raise IdentityError("username", f"no user {username!r}")
    return user


def cmd_user_add(args: argparse.Namespace) -> int:
    """Add a user (asks for a password unless --no-password)."""
    with _session() as session:
        password = None if args.no_password else _password(args)
        user = identity.create_user(
            session, username=args.username, display_name=args.name or args.username,
            role=args.role, jurisdiction=args.jurisdiction or "", department=args.department,
            password=password)
        session.commit()
        print(f"added {user.username}: {user.role} at {user.jurisdiction}"
              + (f", {user.department}" if user.department else ""))
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    """Set a user's password; their sign-in sessions end."""
    with _session() as session:
        user = _user(session, args.username)
        identity.update_user(session, user, password=_password(args, "new password: "))
        session.commit()
        print(f"password of {user.username} changed; sign-in sessions ended")
    return 0


def cmd_user_set_active(args: argparse.Namespace) -> int:
    with _session() as session:
        user = _user(session, args.username)
        identity.update_user(session, user, active=args.active)
        session.commit()
        print(f"{user.username} is {'active' if args.active else 'deactivated'}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    """List users."""
    with _session() as session:
        for u in session.exec(select(AppUser).order_by(col(AppUser.username))):
            flag = "" if u.active else "  (deactivated)"
            print(f"{u.username:20} {u.role:12} {u.jurisdiction:16} {u.department or '-':24}"
                  f" {u.display_name}{flag}")
    return 0


def cmd_token_issue(args: argparse.Namespace) -> int:
    """Issue an API token for a user; it is printed once, keep it."""
    settings = get_settings()
    if not 1 <= args.days <= settings.token_max_days:
        raise IdentityError("--days", f"1 to {settings.token_max_days}")
    with _session() as session:
        user = _user(session, args.username)
        if not user.active:
            raise IdentityError("username", f"{user.username} is deactivated")
        token, row = identity.issue_token(
            session, secret_key=settings.secret_key.get_secret_value(), username=user.username,
            kind=TokenKind.API, name=args.name, ttl=timedelta(days=args.days))
        session.commit()
        print(f"token {row.id} for {user.username}, expires {row.expires_at:%Y-%m-%d}:",
              file=sys.stderr)
        print(token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    """List a user's tokens (never the tokens themselves)."""
    with _session() as session:
        for t in identity.tokens_of(session, _user(session, args.username).username):
            state = "revoked" if t.revoked_at else "active"
            print(f"{t.id}  {t.kind:8} {state:8} expires {t.expires_at:%Y-%m-%d %H:%M}Z  "
                  f"{t.name}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """Revoke a token by its id (the 12 hex digits after `whs_`)."""
    with _session() as session:
        if identity.revoke(session, args.token_id) is None:
            raise IdentityError("token_id", f"no token {args.token_id!r}")
        session.commit()
        print(f"token {args.token_id} revoked")
    return 0


def seed_demo(session: Session, settings: Settings) -> list[str]:
    """Create the demo users that are missing; their names."""
    if settings.env == "production":
        raise IdentityError("WHISTLE_ENV", "demo users are never created in production")
    made = []
    for spec in DEMO_USERS:
        if session.get(AppUser, spec["username"]) is None:
            identity.create_user(session, **spec, password=DEMO_PASSWORD)  # type: ignore[arg-type]
            made.append(str(spec["username"]))
    session.commit()
    return made


def cmd_seed_demo(args: argparse.Namespace) -> int:
    """Create one demo user per role (development only), password whistle-demo-2026."""
    with _session() as session:
        made = seed_demo(session, get_settings())
    print(f"demo users: {len(made)} created, {len(DEMO_USERS) - len(made)} already there; "
          f"password {DEMO_PASSWORD}")
    for spec in DEMO_USERS:
        where = spec["department"] or spec["jurisdiction"]
        print(f"  {spec['username']:16} {spec['role']:12} {where}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    user = sub.add_parser("user", help="add, list, change users").add_subparsers(
        required=True, metavar="ACTION")
    p = user.add_parser("add", help=cmd_user_add.__doc__)
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--jurisdiction", help="the user's node (department staff: default "
                                          "their department's node)")
    p.add_argument("--department", help="department staff only")
    p.add_argument("--name", help="display name")
    p.add_argument("--no-password", action="store_true", help="API tokens only")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(fn=cmd_user_add)
    p = user.add_parser("passwd", help=cmd_user_passwd.__doc__)
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(fn=cmd_user_passwd)
    for name, active in (("deactivate", False), ("activate", True)):
        p = user.add_parser(name, help=f"{name} a user")
        p.add_argument("username")
        p.set_defaults(fn=cmd_user_set_active, active=active)
    user.add_parser("list", help=cmd_user_list.__doc__).set_defaults(fn=cmd_user_list)

    token = sub.add_parser("token", help="issue, list, revoke API tokens").add_subparsers(
        required=True, metavar="ACTION")
    p = token.add_parser("issue", help=cmd_token_issue.__doc__)
    p.add_argument("username")
    p.add_argument("--name", required=True, help="what the token is for")
    p.add_argument("--days", type=int, default=90)
    p.set_defaults(fn=cmd_token_issue)
    p = token.add_parser("list", help=cmd_token_list.__doc__)
    p.add_argument("username")
    p.set_defaults(fn=cmd_token_list)
    p = token.add_parser("revoke", help=cmd_token_revoke.__doc__)
    p.add_argument("token_id")
    p.set_defaults(fn=cmd_token_revoke)

    sub.add_parser("seed-demo", help=cmd_seed_demo.__doc__).set_defaults(fn=cmd_seed_demo)
