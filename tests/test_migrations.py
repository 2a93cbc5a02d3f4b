"""The models and the migrations describe the same schema (``alembic check``)."""

from __future__ import annotations

from alembic import command

from closerdesk.migrate import alembic_config


def test_models_match_the_migrations(database_url: str) -> None:
    """Autogenerate finds nothing to do on the migrated test database (raises otherwise)."""
    command.check(alembic_config(database_url))
