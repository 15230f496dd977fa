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

    # --- operations: logs, metrics, notification delivery, digests (README "Operations") --
    log_format: Literal["json", "plain"] | None = None  # none: json in production, else plain
    log_level: str = "INFO"
    # GET /metrics on the API: with a token, only `Authorization: Bearer <token>`; without
    # one, only clients on this host (127.0.0.1, ::1).
    metrics_token: SecretStr | None = None
    # Run case workflows inside the Temporal workflow sandbox. The sandbox re-imports the
    # workflow module for every case run and wraps every activation and payload in it:
    # about a third of the worker's CPU (bench/README.md). The test suite runs every
    # workflow sandboxed (tests/conftest.py turns this on), so a forbidden call (a clock,
    # randomness, I/O) in workflow code fails CI; the worker trusts that and runs without.
    workflow_sandbox: bool = False
    # The worker's Prometheus endpoint (SDK runtime + business gauges); 0 turns it off.
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # The delivery dispatcher (workflows/delivery.py): how long one claim waits for new
    # outbox rows, and how a failing channel is retried before it is marked failed.
    delivery_enabled: bool = True
    # The task queue of delivery and digests (default: WHISTLE_TASK_QUEUE + "-ops").
    ops_queue: str | None = None
    delivery_poll_seconds: float = Field(default=5.0, gt=0, le=60)
    delivery_retry_initial_seconds: float = Field(default=2.0, gt=0)
    delivery_retry_max_seconds: float = Field(default=300.0, gt=0)
    delivery_max_attempts: int = Field(default=10, ge=1)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "whistle@localhost"
    # Work-meeting digests: one Temporal Schedule per centre at these levels (cron in
    # WHISTLE_TIMEZONE; WHISTLE_DIGEST_INTERVAL_HOURS, when set, replaces the cron).
    digest_enabled: bool = True
    digest_cron: str = "0 8 * * 1"  # Mondays 08:00
    digest_interval_hours: float | None = Field(default=None, gt=0)
    digest_period_days: int = Field(default=7, ge=1, le=366)
    digest_levels: Annotated[list[str], NoDecode] = ["city", "county", "town"]
    # A centre's own cron, as JSON: {"xiaojinkou": "0 9 * * 5"} (the others keep digest_cron)
    digest_cron_by_centre: dict[str, str] = {}

    @field_validator("metrics_token", "smtp_password", "smtp_username", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # compose passes `${VAR:-}` as an empty string: that means "not set", never an
        # empty token that an empty Authorization header would match.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("digest_levels", mode="before")
    @classmethod
    def _split_levels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        known = {"city", "county", "town", "village", "grid"}
        if isinstance(value, list) and not set(value) <= known:
            raise ValueError(f"levels are {', '.join(sorted(known))}")
        return value

    @property
    def ops_task_queue(self) -> str:
        """Where the dispatcher and the digests run: apart from the cases."""
        return self.ops_queue or f"{self.task_queue}-ops"

    @property
    def log_json(self) -> bool:
        """JSON log lines: the setting, else production."""
        return self.log_format == "json" if self.log_format else self.env == "production"

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
