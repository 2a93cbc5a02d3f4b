"""cloud calendars: push channels, requested syncs, grant lookup

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Google channels and Microsoft Graph subscriptions are kept on the connection
(``push_channel_id``, ``push_resource_id``, ``push_expires_at``); a push notification sets
``sync_requested_at`` until a sync has run. Nylas webhooks name a grant: connections are found
by ``(provider, provider_grant_id)``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calendar_connections") as batch:
        batch.add_column(sa.Column("sync_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("push_channel_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("push_resource_id", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("push_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(
            "ix_calendar_connections_grant", ["provider", "provider_grant_id"], unique=False
        )
        batch.create_index(
            "ix_calendar_connections_push_channel", ["push_channel_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("calendar_connections") as batch:
        batch.drop_index("ix_calendar_connections_push_channel")
        batch.drop_index("ix_calendar_connections_grant")
        batch.drop_column("push_expires_at")
        batch.drop_column("push_resource_id")
        batch.drop_column("push_channel_id")
        batch.drop_column("sync_requested_at")
