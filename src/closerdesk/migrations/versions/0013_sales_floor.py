"""the sales floor: round-robin caps and fairness period, reason codes, absence, confirmation,
slot reservations

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

``docs/sales-floor.md``:
- ``team_members.max_bookings_per_day`` / ``max_bookings_per_week`` (null: no cap);
- ``booking_links.fairness_period`` (``month``) and ``requires_confirmation`` (false);
- ``calls.host_no_show``, ``reason_code``, ``loss_reason``, ``confirmed_at``, ``declined_at``,
  ``decline_reason``; ``call_events.reason_code``;
- ``slot_reservations``.
A ``declined`` call frees its slot like a cancelled one, so on PostgreSQL the exclusion
constraint of 0011 is rebuilt to leave both out.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "ex_calls_no_double_booking"
# The constraint's predicate before and after this migration, frozen as written.
LIVE_0011 = (
    "call_kind = 'booking' AND status <> 'cancelled' AND NOT override_conflict"
    " AND closer_id IS NOT NULL AND scheduled_at IS NOT NULL AND ends_at IS NOT NULL"
)
LIVE_0013 = (
    "call_kind = 'booking' AND status <> 'cancelled' AND status <> 'declined'"
    " AND NOT override_conflict"
    " AND closer_id IS NOT NULL AND scheduled_at IS NOT NULL AND ends_at IS NOT NULL"
)
# Two comparisons rather than NOT IN: PostgreSQL prints NOT IN back as an array expression that
# does not read back to the same text, and bench/dataset.py rebuilds constraints from that text.


def _exclusion(predicate: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE calls DROP CONSTRAINT IF EXISTS {CONSTRAINT}")
    op.execute(
        f"ALTER TABLE calls ADD CONSTRAINT {CONSTRAINT} EXCLUDE USING gist "
        "(organization_id WITH =, closer_id WITH =, tstzrange(scheduled_at, ends_at) WITH &&) "
        f"WHERE ({predicate})"
    )


def upgrade() -> None:
    with op.batch_alter_table("team_members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_bookings_per_day", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_bookings_per_week", sa.Integer(), nullable=True))
    with op.batch_alter_table("booking_links", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "fairness_period", sa.String(length=16), server_default="month", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "requires_confirmation", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("host_no_show", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("reason_code", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("loss_reason", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("declined_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("decline_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason_code", sa.String(length=32), nullable=True))
    op.create_table(
        "slot_reservations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("booking_link_id", sa.String(length=40), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_link_id"],
            ["booking_links.id"],
            name=op.f("fk_slot_reservations_booking_link_id_booking_links"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_slot_reservations_call_id_calls"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "member_id"],
            ["team_members.organization_id", "team_members.id"],
            name=op.f("fk_slot_reservations_organization_id_member_id_team_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_slot_reservations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slot_reservations")),
    )
    with op.batch_alter_table("slot_reservations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_slot_reservations_member_span",
            ["organization_id", "member_id", "starts_at"],
            unique=False,
        )
        batch_op.create_index("ix_slot_reservations_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_slot_reservations_booking_link_id"), ["booking_link_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_slot_reservations_organization_id"), ["organization_id"], unique=False
        )
    _exclusion(LIVE_0013)


def downgrade() -> None:
    # Before 0013 no call could be pending or declined. A declined call becomes a cancelled one
    # (its slot may have been booked again since, which the 0011 constraint would refuse while
    # it counted); a pending call becomes scheduled (it keeps its slot; it has no event).
    op.execute(
        "UPDATE calls SET status = 'cancelled', cancelled_at = declined_at,"
        " cancel_reason = decline_reason WHERE status = 'declined'"
    )
    op.execute("UPDATE calls SET status = 'scheduled' WHERE status = 'pending'")
    # History and webhooks of the kinds 0012 does not know: history rows become the nearest
    # kind it knows; the new event types leave every subscription, and their events go with
    # their deliveries and attempts (nothing of 0012 could show or send them).
    op.execute("UPDATE call_events SET type = 'cancelled' WHERE type = 'declined'")
    op.execute(
        "UPDATE call_events SET type = 'updated' WHERE type IN ('confirmed', 'absence_marked')"
    )
    new_types = ("call.confirmed", "call.declined", "call.absence_marked")
    listed = ", ".join(f"'{t}'" for t in new_types)
    events = f"SELECT id FROM webhook_events WHERE type IN ({listed})"  # noqa: S608 - constants
    deliveries = f"SELECT id FROM webhook_deliveries WHERE event_id IN ({events})"  # noqa: S608
    op.execute(f"DELETE FROM webhook_attempts WHERE delivery_id IN ({deliveries})")  # noqa: S608
    op.execute(f"DELETE FROM webhook_deliveries WHERE id IN ({deliveries})")  # noqa: S608
    op.execute(f"DELETE FROM webhook_events WHERE id IN ({events})")  # noqa: S608
    bind = op.get_bind()
    subscriptions = sa.table(
        "webhook_subscriptions",
        sa.column("id", sa.String),
        sa.column("event_types", sa.JSON),
        sa.column("is_active", sa.Boolean),
        sa.column("disabled_reason", sa.Text),
    )
    for row in bind.execute(sa.select(subscriptions.c.id, subscriptions.c.event_types)).all():
        types = json.loads(row.event_types) if isinstance(row.event_types, str) else row.event_types
        kept = [t for t in types if t not in new_types]
        if kept == types:
            continue
        values: dict[str, object] = {"event_types": kept}
        if not kept:  # it asked for nothing else: it stops rather than receiving nothing
            values |= {"is_active": False, "disabled_reason": "downgraded below 0013"}
        bind.execute(subscriptions.update().where(subscriptions.c.id == row.id).values(**values))
    _exclusion(LIVE_0011)
    op.drop_table("slot_reservations")
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.drop_column("reason_code")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        for column in (
            "decline_reason",
            "declined_at",
            "confirmed_at",
            "loss_reason",
            "reason_code",
            "host_no_show",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("booking_links", schema=None) as batch_op:
        batch_op.drop_column("requires_confirmation")
        batch_op.drop_column("fairness_period")
    with op.batch_alter_table("team_members", schema=None) as batch_op:
        batch_op.drop_column("max_bookings_per_week")
        batch_op.drop_column("max_bookings_per_day")
