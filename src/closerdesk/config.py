"""Settings, read from ``CLOSERDESK_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_KEY = "closerdesk-development-secret-change-me"  # noqa: S105 - the known default


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """Every knob of a closerdesk process.

    ``CLOSERDESK_DATABASE_URL`` selects the database: the embedded SQLite file by default,
    ``postgresql+asyncpg://…`` in production.
    """

    model_config = SettingsConfigDict(env_prefix="CLOSERDESK_", env_file=None, extra="ignore")

    env: Environment = Environment.development
    database_url: str = "sqlite+aiosqlite:///./closerdesk.db"
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEFAULT_SECRET_KEY
    jitsi_base_url: str = "https://meet.jit.si"
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    webhook_allow_private_targets: bool = False
    webhook_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    """How long a dispatcher owns a claimed delivery; a crashed one's deliveries are taken
    again after it. Keep it above the 15 s attempt timeout."""
    calendar_sync_seconds: float = Field(default=300.0, ge=5, le=86400)
    """Every external calendar's busy mirror is re-synced at least this often (seconds)."""
    calendar_mirror_days: int = Field(default=120, ge=7, le=730)
    """How far ahead the busy mirror reaches (days); slots beyond it see no calendar busy."""
    calendar_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """Bound on each request to a calendar provider (seconds); past it the request fails."""

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def check_production_ready(self) -> None:
        """Refuse to run in production with the default secret (SPEC §7).

        Raises ``RuntimeError`` with a sentence that names the variable to set.
        """
        if self.env is Environment.production and self.secret_key == DEFAULT_SECRET_KEY:
            raise RuntimeError(
                "CLOSERDESK_SECRET_KEY still has its default value; "
                "set a random secret before running with CLOSERDESK_ENV=production"
            )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
