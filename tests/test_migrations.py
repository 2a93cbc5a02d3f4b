"""The migrations are the only way the schema is made: the models must match them exactly."""

from __future__ import annotations

from alembic import command

from closerdesk.migrate import alembic_config


def test_models_match_the_migrated_schema(database_url: str) -> None:
    """``alembic check``: autogenerate finds nothing to add on the migrated test database."""
    command.check(alembic_config(database_url))
