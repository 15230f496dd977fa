"""Settings from the environment (prefix WHISTLE_). Production refuses unsafe defaults."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WHISTLE_", extra="ignore")

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

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env == "production" and self.database_url.startswith("sqlite"):
            raise ValueError("WHISTLE_DATABASE_URL must point at PostgreSQL in production")
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
