"""round robin counts: calls by closer and creation time

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

Round robin counts each host's calls created in the current period (``docs/api.md``, "Round
robin"). With only ``ix_calls_closer_span`` (by start time) that count read every call the host
ever had; ``ix_calls_closer_created`` bounds it to the period's calls.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_calls_closer_created", ["organization_id", "closer_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_closer_created")
