"""Schema management: Alembic migrations are the only way the schema is made (README)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from closerdesk.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str, settings: Settings | None = None) -> Config:
    """The Alembic configuration for ``database_url``. ``settings`` reach the migrations that
    need more than the schema (0005 encrypts with ``CLOSERDESK_ENCRYPTION_KEYS``); without
    them such a migration reads the settings from the environment."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    if settings is not None:
        config.attributes["settings"] = settings
    return config


def upgrade(database_url: str, revision: str = "head", *, settings: Settings | None = None) -> None:
    """Bring the database at ``database_url`` to ``revision`` (blocking; runs its own loop)."""
    command.upgrade(alembic_config(database_url, settings), revision)


def downgrade(database_url: str, revision: str, *, settings: Settings | None = None) -> None:
    """Take the database at ``database_url`` back to ``revision`` (blocking)."""
    command.downgrade(alembic_config(database_url, settings), revision)
