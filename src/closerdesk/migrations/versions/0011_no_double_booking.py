"""no double booking enforced by PostgreSQL: calls remember an override; an exclusion
constraint refuses two live booking calls of one closer sharing time

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

``calls.override_conflict`` says the call's current placement (book, reschedule, reassign) was
made with ``override_conflict``; such calls are outside the constraint. On PostgreSQL,
``ex_calls_no_double_booking`` (``btree_gist``) is the second line behind the closer's row lock
(``docs/calendars.md``, "No double booking"). Calls that already overlap are grandfathered: the
later of each overlapping pair is marked as overridden before the constraint is added. SQLite
gets the column only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "ex_calls_no_double_booking"
# The constraint's predicate, frozen as it was when this migration was written.
LIVE = (
    "{t}.call_kind = 'booking' AND {t}.status <> 'cancelled' AND NOT {t}.override_conflict"
    " AND {t}.closer_id IS NOT NULL AND {t}.scheduled_at IS NOT NULL AND {t}.ends_at IS NOT NULL"
)


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("override_conflict", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(
        f"""
        UPDATE calls AS c SET override_conflict = true
        WHERE {LIVE.format(t="c")} AND EXISTS (
            SELECT 1 FROM calls AS o
            WHERE {LIVE.format(t="o")}
              AND o.organization_id = c.organization_id AND o.closer_id = c.closer_id
              AND o.id < c.id
              AND tstzrange(o.scheduled_at, o.ends_at) && tstzrange(c.scheduled_at, c.ends_at)
        )
        """  # noqa: S608 - constant SQL, no input
    )
    op.execute(
        f"ALTER TABLE calls ADD CONSTRAINT {CONSTRAINT} EXCLUDE USING gist "
        "(organization_id WITH =, closer_id WITH =, tstzrange(scheduled_at, ends_at) WITH &&) "
        f"WHERE ({LIVE.format(t='calls')})"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE calls DROP CONSTRAINT IF EXISTS {CONSTRAINT}")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("override_conflict")
