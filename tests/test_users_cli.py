"""`whistle user …`, `whistle token …` and `whistle seed-demo` on a real SQLite read model."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlmodel import Session

import whistlectl
from whistle import identity
from whistle.db import make_engine, migrate
from whistle.identity import IdentityError, TokenRejected
from whistle.models import AppUser
from whistle.reference import load_reference
from whistle.settings import DATA_DIR, Settings, get_settings
from whistle.users_cli import DEMO_USERS, seed_demo

SECRET = "a-test-secret-that-is-long-enough-0123456789"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'whistle.db'}"
    engine = make_engine(url)
    migrate(engine)
    load_reference(engine, DATA_DIR / "reference.yaml")
    engine.dispose()
    monkeypatch.setenv("WHISTLE_DATABASE_URL", url)
    monkeypatch.setenv("WHISTLE_SECRET_KEY", SECRET)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def run(monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return whistlectl.main(list(argv))


def test_add_a_user_with_a_password_from_stdin_and_sign_in(db, monkeypatch, capsys):
    code = run(monkeypatch, "user", "add", "chen.liu", "--role", "coordinator",
               "--jurisdiction", "xiaojinkou", "--name", "陈六", "--password-stdin",
               stdin="a long passphrase\n")
    assert code == 0, capsys.readouterr().err
    engine = make_engine(db)
    with Session(engine) as session:
        stored = session.get(AppUser, "chen.liu")
        assert stored.password_hash.startswith("$argon2id$")
        assert identity.verify_password(session, "chen.liu", "a long passphrase") is not None
        assert identity.verify_password(session, "chen.liu", "a long passphrasE") is None
    engine.dispose()
    assert "a long passphrase" not in capsys.readouterr().out


def test_a_token_is_printed_once_works_and_stops_when_revoked(db, monkeypatch, capsys):
    assert run(monkeypatch, "user", "add", "system.gateway", "--role", "department",
               "--department", "xjk-police", "--no-password") == 0
    capsys.readouterr()
    assert run(monkeypatch, "token", "issue", "system.gateway", "--name", "粤平安",
               "--days", "30") == 0
    token = capsys.readouterr().out.strip()
    engine = make_engine(db)
    with Session(engine) as session:
        who = identity.authenticate(session, secret_key=SECRET, token=token)
        assert (who.role, who.department, who.jurisdiction) == ("department", "xjk-police",
                                                                "xiaojinkou")
    assert run(monkeypatch, "token", "list", "system.gateway") == 0
    listing = capsys.readouterr().out
    assert token.split("_")[1] in listing and token not in listing
    assert run(monkeypatch, "token", "revoke", token.split("_")[1]) == 0
    with Session(engine) as session, pytest.raises(TokenRejected) as e:
        identity.authenticate(session, secret_key=SECRET, token=token)
    assert e.value.code == "token_revoked"
    engine.dispose()


def test_a_reset_password_ends_sign_in_sessions(db, monkeypatch):
    engine = make_engine(db)
    with Session(engine) as session:
        identity.create_user(session, username="li.si", display_name="李四", role="auditor",
                             jurisdiction="huizhou", password="first password")
        token, _ = identity.issue_token(session, secret_key=SECRET, username="li.si",
                                        kind=identity.TokenKind.SESSION, name="sign-in",
                                        ttl=timedelta(hours=1))
        session.commit()
    assert run(monkeypatch, "user", "passwd", "li.si", "--password-stdin",
               stdin="second password\n") == 0
    with Session(engine) as session:
        with pytest.raises(TokenRejected):
            identity.authenticate(session, secret_key=SECRET, token=token)
        assert identity.verify_password(session, "li.si", "second password") is not None
    engine.dispose()


@pytest.mark.parametrize(("argv", "message"), [
    (("user", "add", "x", "--role", "coordinator", "--jurisdiction", "huizhou",
      "--no-password"), "username: 2 to 64 characters"),
    (("user", "add", "ok.name", "--role", "coordinator", "--jurisdiction", "atlantis",
      "--no-password"), "unknown jurisdiction 'atlantis'"),
    (("user", "add", "ok.name", "--role", "department", "--no-password"),
     "department staff belong to a department"),
    (("user", "add", "ok.name", "--role", "grid_worker", "--jurisdiction", "huicheng",
      "--no-password"), "a grid worker belongs to a grid"),
    (("user", "add", "ok.name", "--role", "auditor", "--jurisdiction", "huizhou",
      "--password-stdin"), "password: must be 10 to 128 characters"),
    (("token", "issue", "nobody", "--name", "x"), "no user 'nobody'"),
    (("token", "revoke", "0123456789ab"), "no token"),
])
def test_bad_input_is_exit_2_naming_the_problem_and_writes_nothing(db, monkeypatch, capsys,
                                                                    argv, message):
    assert run(monkeypatch, *argv, stdin="short\n") == 2
    assert message in capsys.readouterr().err
    engine = make_engine(db)
    with Session(engine) as session:
        assert session.get(AppUser, "ok.name") is None
    engine.dispose()


def test_seed_demo_makes_one_user_per_role_once_and_never_in_production(db, monkeypatch,
                                                                          capsys):
    assert run(monkeypatch, "seed-demo") == 0
    assert run(monkeypatch, "seed-demo") == 0
    out = capsys.readouterr().out
    assert f"{len(DEMO_USERS)} created" in out and f"0 created, {len(DEMO_USERS)}" in out
    engine = make_engine(db)
    with Session(engine) as session:
        roles = {session.get(AppUser, str(u["username"])).role for u in DEMO_USERS}
        assert roles == {"coordinator", "department", "grid_worker", "supervisor", "auditor",
                         "admin"}
        production = Settings(env="production", secret_key=SecretStr(SECRET),
                              database_url="postgresql+psycopg://whistle@db/whistle")
        with pytest.raises(IdentityError, match="never created in production"):
            seed_demo(session, production)
    engine.dispose()
