"""encrypt secrets at rest

Webhook signing secrets (current and previous) and calendar credentials become Fernet tokens
under the first key of ``CLOSERDESK_ENCRYPTION_KEYS`` (``kit/secrets.py``):

* ``webhook_subscriptions.secret`` / ``previous_secret``: ``VARCHAR(100)`` → ``TEXT`` (a token
  of a ``whsec_…`` secret is about 165 characters), each value encrypted;
* ``calendar_connections.credentials``: JSON → nullable ``TEXT``, a token of the JSON object,
  or NULL when the object is empty (the built-in calendar's ``{}``).

The keys come from the settings Alembic is given (``migrate.upgrade(..., settings=...)``) or
else from the environment; with ``CLOSERDESK_ENV=production`` the development key is refused,
as at start-up. The downgrade decrypts everything back (every key that encrypted a value must
still be configured). On SQLite both tables are rebuilt in batch mode with foreign keys off
(``migrations/env.py``), so no row is lost to a cascade.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from closerdesk.config import Settings
from closerdesk.kit.secrets import SecretBox, secret_box

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

subscriptions = sa.table(
    "webhook_subscriptions",
    sa.column("id", sa.String()),
    sa.column("secret", sa.Text()),
    sa.column("previous_secret", sa.Text()),
)
connections = sa.table(
    "calendar_connections",
    sa.column("id", sa.String()),
    sa.column("credentials", sa.Text()),
)


def _box(*, production_check: bool) -> SecretBox:
    given = context.config.attributes.get("settings")
    settings = given if isinstance(given, Settings) else Settings()
    if production_check:
        settings.check_encryption_ready()
    return secret_box(settings)


def _update_many(
    table: sa.TableClause, rows: list[dict[str, Any]], columns: dict[str, str]
) -> None:
    """``UPDATE table SET column = :param WHERE id = :_id`` for every row (one executemany);
    ``columns`` maps each column to its parameter in ``rows``."""
    if not rows:
        return
    values: dict[str, Any] = {column: sa.bindparam(param) for column, param in columns.items()}
    op.get_bind().execute(
        table.update().where(table.c.id == sa.bindparam("_id")).values(**values), rows
    )


def upgrade() -> None:
    box = _box(production_check=True)
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.alter_column(
            "secret", existing_type=sa.String(length=100), type_=sa.Text(), existing_nullable=False
        )
        batch_op.alter_column(
            "previous_secret",
            existing_type=sa.String(length=100),
            type_=sa.Text(),
            existing_nullable=True,
        )
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.alter_column(
            "credentials",
            existing_type=JSON_TYPE,
            type_=sa.Text(),
            nullable=True,
            existing_nullable=False,
            postgresql_using="credentials::text",
        )

    bind = op.get_bind()
    secrets = [
        {
            "_id": row.id,
            "_secret": box.encrypt(row.secret),
            "_previous": None if row.previous_secret is None else box.encrypt(row.previous_secret),
        }
        for row in bind.execute(
            sa.select(subscriptions.c.id, subscriptions.c.secret, subscriptions.c.previous_secret)
        )
    ]
    _update_many(subscriptions, secrets, {"secret": "_secret", "previous_secret": "_previous"})

    credentials = []
    for row in bind.execute(sa.select(connections.c.id, connections.c.credentials)):
        value = json.loads(row.credentials) if row.credentials is not None else None
        sealed = box.encrypt(json.dumps(value, separators=(",", ":"))) if value else None
        credentials.append({"_id": row.id, "_credentials": sealed})
    _update_many(connections, credentials, {"credentials": "_credentials"})


def downgrade() -> None:
    box = _box(production_check=False)
    bind = op.get_bind()
    secrets = [
        {
            "_id": row.id,
            "_secret": box.decrypt(row.secret),
            "_previous": None if row.previous_secret is None else box.decrypt(row.previous_secret),
        }
        for row in bind.execute(
            sa.select(subscriptions.c.id, subscriptions.c.secret, subscriptions.c.previous_secret)
        )
    ]
    _update_many(subscriptions, secrets, {"secret": "_secret", "previous_secret": "_previous"})
    credentials = [
        {
            "_id": row.id,
            "_credentials": "{}" if row.credentials is None else box.decrypt(row.credentials),
        }
        for row in bind.execute(sa.select(connections.c.id, connections.c.credentials))
    ]
    _update_many(connections, credentials, {"credentials": "_credentials"})

    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.alter_column(
            "credentials",
            existing_type=sa.Text(),
            type_=JSON_TYPE,
            nullable=False,
            existing_nullable=True,
            postgresql_using="credentials::jsonb",
        )
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.alter_column(
            "secret", existing_type=sa.Text(), type_=sa.String(length=100), existing_nullable=False
        )
        batch_op.alter_column(
            "previous_secret",
            existing_type=sa.Text(),
            type_=sa.String(length=100),
            existing_nullable=True,
        )
