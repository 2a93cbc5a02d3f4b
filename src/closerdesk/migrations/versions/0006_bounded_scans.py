"""bounded scans: the longest call as a check, end-time indexes for busy time; booking link
description

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The models' MAX_CALL_MINUTES, frozen as it was when this migration was written.
MAX_CALL_MINUTES = 24 * 60


def _span_check() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"ends_at <= scheduled_at + interval '{MAX_CALL_MINUTES} minutes'"
    return f"(julianday(ends_at) - julianday(scheduled_at)) * 1440 <= {MAX_CALL_MINUTES}.0001"


def upgrade() -> None:
    with op.batch_alter_table("booking_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_calls_span_within_limit"), _span_check())

    with op.batch_alter_table("busy_blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_busy_blocks_member_span"))
        batch_op.create_index(
            "ix_busy_blocks_member_end", ["organization_id", "member_id", "ends_at"], unique=False
        )

    with op.batch_alter_table("calendar_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_calendar_events_connection_open",
            ["connection_id", "ends_at"],
            unique=False,
            sqlite_where=sa.text("call_id IS NULL"),
            postgresql_where=sa.text("call_id IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("calendar_events", schema=None) as batch_op:
        batch_op.drop_index("ix_calendar_events_connection_open")

    with op.batch_alter_table("busy_blocks", schema=None) as batch_op:
        batch_op.drop_index("ix_busy_blocks_member_end")
        batch_op.create_index(
            batch_op.f("ix_busy_blocks_member_span"),
            ["organization_id", "member_id", "starts_at"],
            unique=False,
        )

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_calls_span_within_limit"), type_="check")

    with op.batch_alter_table("booking_links", schema=None) as batch_op:
        batch_op.drop_column("description")
