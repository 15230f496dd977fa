"""Settings from the environment (prefix WHISTLE_). Production refuses unsafe defaults."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"
DEV_SECRET_KEY = "dev-insecure-secret-change-me"
MIN_SECRET_KEY_LENGTH = 32
# A browser origin: scheme, host (name or [IPv6]) and optional port; no path, no wildcard.
_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting must not echo the secret (or a database
    # password) into the start-up error.
    model_config = SettingsConfigDict(env_prefix="WHISTLE_", extra="ignore",
                                      hide_input_in_errors=True)

    env: Literal["development", "production", "test"] = "development"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue: str = "whistle-cases"
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'data' / 'whistle.db'}"
    policy_file: Path = DATA_DIR / "policy.yaml"
    reference_file: Path = DATA_DIR / "reference.yaml"
    timezone: str = "Asia/Shanghai"
    max_body_bytes: int = 256 * 1024
    # How long a request waits for the case engine before answering "pending" (no worker
    # running, or a backlog). The step is not lost: it is applied when a worker takes it.
    step_timeout_seconds: float = 30.0
    # Keys the HMAC of API tokens (and signs sessions): changing it revokes every token.
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    # Browser origins allowed to call the API cross-origin; none (the default): no CORS at
    # all. A comma-separated list ("https://a.example,https://b.example") or a JSON list.
    cors_origins: Annotated[list[str], NoDecode] = []
    session_hours: float = Field(default=12.0, gt=0, le=24 * 7)  # a sign-in token's life
    token_max_days: int = Field(default=365, ge=1, le=3650)  # longest API-token life

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return text.split(",")
        return value

    @field_validator("cors_origins", mode="after")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        origins = []
        for raw in value:
            origin = raw.strip().rstrip("/")
            if not origin:
                continue
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{raw!r} is not an origin like https://cases.example.org "
                                 "(scheme and host, no path; no wildcard)")
            origins.append(origin)
        return origins

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env != "production":
            return self
        if self.database_url.startswith("sqlite"):
            raise ValueError("WHISTLE_DATABASE_URL must point at PostgreSQL in production")
        secret = self.secret_key.get_secret_value()
        if secret == DEV_SECRET_KEY or len(secret) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"WHISTLE_SECRET_KEY must be set to a random secret of at least "
                             f"{MIN_SECRET_KEY_LENGTH} characters in production (e.g. "
                             "python -c 'import secrets; print(secrets.token_urlsafe(48))')")
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
