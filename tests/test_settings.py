"""Settings: production refuses unsafe defaults; list settings read from the environment;
the secret never shows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from whistle.settings import DEV_SECRET_KEY, Settings

POSTGRES = "postgresql+psycopg://whistle:pw@db.example:5432/whistle"
STRONG = "k" * 32
ENV_VARS = ("WHISTLE_ENV", "WHISTLE_DATABASE_URL", "WHISTLE_SECRET_KEY",
            "WHISTLE_CORS_ORIGINS", "WHISTLE_SESSION_HOURS", "WHISTLE_TOKEN_MAX_DAYS")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    s = Settings()
    assert s.secret_key.get_secret_value() == DEV_SECRET_KEY
    assert s.cors_origins == []
    assert s.session_hours == 12.0
    assert s.token_max_days == 365


def test_production_with_postgres_and_a_strong_secret_starts() -> None:
    s = Settings(env="production", database_url=POSTGRES, secret_key=STRONG)
    assert s.secret_key.get_secret_value() == STRONG


@pytest.mark.parametrize("secret", [None, DEV_SECRET_KEY, "k" * 31, ""])
def test_production_refuses_default_or_short_secret(secret: str | None) -> None:
    kwargs = {} if secret is None else {"secret_key": secret}
    with pytest.raises(ValidationError, match="WHISTLE_SECRET_KEY") as refused:
        Settings(env="production", database_url=POSTGRES, **kwargs)
    if secret:
        assert secret not in str(refused.value)  # the refusal does not echo the secret


def test_production_refuses_secret_from_environment_without_echoing_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_ENV", "production")
    monkeypatch.setenv("WHISTLE_DATABASE_URL", POSTGRES)
    monkeypatch.setenv("WHISTLE_SECRET_KEY", "too-short-but-secret")
    with pytest.raises(ValidationError, match="WHISTLE_SECRET_KEY") as refused:
        Settings()
    assert "too-short-but-secret" not in str(refused.value)
    assert ":pw@" not in str(refused.value)  # nor the database password


def test_production_refuses_sqlite() -> None:
    with pytest.raises(ValidationError, match="WHISTLE_DATABASE_URL"):
        Settings(env="production", database_url="sqlite:///whistle.db", secret_key=STRONG)


def test_development_accepts_the_dev_secret_and_sqlite() -> None:
    Settings(env="development", database_url="sqlite:///whistle.db")


def test_cors_origins_comma_separated_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_CORS_ORIGINS", "https://a.example, https://b.example:8443/,")
    assert Settings().cors_origins == ["https://a.example", "https://b.example:8443"]


def test_cors_origins_json_list_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_CORS_ORIGINS", '["https://a.example", "http://[::1]:3000"]')
    assert Settings().cors_origins == ["https://a.example", "http://[::1]:3000"]


def test_cors_origins_single_and_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_CORS_ORIGINS", "https://a.example")
    assert Settings().cors_origins == ["https://a.example"]
    monkeypatch.setenv("WHISTLE_CORS_ORIGINS", "")
    assert Settings().cors_origins == []


@pytest.mark.parametrize("origin", ["*", "a.example", "https://a.example/app", "ftp://a.example",
                                    "https://*.example"])
def test_cors_origins_refuse_what_is_not_an_origin(origin: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(cors_origins=origin)


@pytest.mark.parametrize(("field", "value"), [
    ("session_hours", 0), ("session_hours", -1), ("session_hours", 24 * 7 + 1),
    ("token_max_days", 0), ("token_max_days", 3651),
])
def test_lifetimes_are_bounded(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_lifetimes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_SESSION_HOURS", "8.5")
    monkeypatch.setenv("WHISTLE_TOKEN_MAX_DAYS", "30")
    s = Settings()
    assert (s.session_hours, s.token_max_days) == (8.5, 30)


def test_secret_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_SECRET_KEY", "a-very-secret-value-nobody-may-see-0123")
    s = Settings()
    for shown in (repr(s), str(s), s.model_dump_json(), repr(Settings())):
        assert "a-very-secret-value-nobody-may-see-0123" not in shown
    assert DEV_SECRET_KEY not in repr(Settings(secret_key=DEV_SECRET_KEY))
