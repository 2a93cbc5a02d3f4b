from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, JSONType, TimestampMixin, UTCDateTime, org_fk

MAX_CALL_MINUTES = 24 * 60
"""The longest a call may last. The API refuses longer durations (calls and booking links), and
the ``span_within_limit`` check refuses a longer ``scheduled_at``..``ends_at`` in the database, so
overlap queries may rely on it as a lower bound (``closerdesk.calls.repository.overlaps``)."""


FREED_STATUSES = ("cancelled", "declined")
"""Statuses whose call no longer holds its slot: it is neither busy time for its closer nor
counted by round robin. Every other status holds the slot (``pending`` included)."""


OPEN_STATUSES = ("pending", "scheduled")
"""Statuses of a call still to take place: booked (``pending`` awaiting confirmation) and
without an outcome, cancellation or decline."""


NO_DOUBLE_BOOKING = "ex_calls_no_double_booking"
"""The PostgreSQL exclusion constraint refusing a closer two live booking calls at once."""


class Call(TimestampMixin, Base):
    """A call with a lead (docs/api.md, "The call object"). id ``call_…``.

    ``call_kind`` is ``booking`` (a slot on a closer's calendar) or ``intent`` (no slot yet).
    ``ends_at`` = ``scheduled_at`` + ``duration_minutes``, kept so that overlap queries use an
    index. ``closer_name``/``closer_email`` are Aura's denormalised copies, changed in the
    same transaction as ``closer_id`` (Aura: reassign closer).
    """

    __tablename__ = "calls"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "closer_id"],
            ["team_members.organization_id", "team_members.id"],
        ),
        ForeignKeyConstraint(
            ["organization_id", "setter_id"],
            ["team_members.organization_id", "team_members.id"],
        ),
        Index("ix_calls_closer_span", "organization_id", "closer_id", "scheduled_at"),
        # Round robin's count of this period's calls per host (migration 0012).
        Index("ix_calls_closer_created", "organization_id", "closer_id", "created_at"),
        Index("ix_calls_org_scheduled", "organization_id", "scheduled_at", "id"),
        # One rule, written per dialect (migration 0006). SQLite's julianday() keeps whole
        # milliseconds, hence its small tolerance; overlap queries look back a minute further.
        CheckConstraint(
            f"ends_at <= scheduled_at + interval '{MAX_CALL_MINUTES} minutes'",
            name="span_within_limit",
        ).ddl_if(dialect="postgresql"),
        CheckConstraint(
            f"(julianday(ends_at) - julianday(scheduled_at)) * 1440 <= {MAX_CALL_MINUTES}.0001",
            name="span_within_limit",
        ).ddl_if(dialect="sqlite"),
        # No double booking, the second line behind the closer's row lock (migration 0011,
        # docs/calendars.md "No double booking"): two live booking calls of one closer placed
        # without override_conflict never share time. PostgreSQL only.
        ExcludeConstraint(
            (text("organization_id"), "="),
            (text("closer_id"), "="),
            (text("tstzrange(scheduled_at, ends_at)"), "&&"),
            name=NO_DOUBLE_BOOKING,
            using="gist",
            where=text(
                "call_kind = 'booking' AND status <> 'cancelled' AND status <> 'declined'"
                " AND NOT override_conflict"
                " AND closer_id IS NOT NULL AND scheduled_at IS NOT NULL AND ends_at IS NOT NULL"
            ),
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    call_kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12), default="scheduled")
    lead_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    closer_id: Mapped[str | None] = mapped_column(String(64))
    closer_name: Mapped[str | None] = mapped_column(String(200))
    closer_email: Mapped[str | None] = mapped_column(String(320))
    setter_id: Mapped[str | None] = mapped_column(String(64))
    booking_link_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("booking_links.id", ondelete="SET NULL"), index=True
    )
    product_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("products.id", ondelete="SET NULL")
    )
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_minutes: Mapped[int | None]
    time_zone: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    conferencing_link: Mapped[str | None] = mapped_column(String(1000))
    calendar_event_id: Mapped[str | None] = mapped_column(String(500))
    calendar_grant_id: Mapped[str | None] = mapped_column(String(200))
    expected_deal_value: Mapped[int | None] = mapped_column(BigInteger)
    linked_payment_id: Mapped[str | None] = mapped_column(String(40))
    ai_summary: Mapped[str | None] = mapped_column(Text)
    action_items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    form_data: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    notes: Mapped[str | None] = mapped_column(Text)
    recording_url: Mapped[str | None] = mapped_column(String(2000))
    transcript_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    guest_rsvp_status: Mapped[str | None] = mapped_column(String(12))
    guest_rsvp_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    utm_source: Mapped[str | None] = mapped_column(String(255))
    utm_medium: Mapped[str | None] = mapped_column(String(255))
    utm_campaign: Mapped[str | None] = mapped_column(String(255))
    utm_term: Mapped[str | None] = mapped_column(String(255))
    utm_content: Mapped[str | None] = mapped_column(String(255))
    referral: Mapped[str | None] = mapped_column(String(255))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    reschedule_count: Mapped[int] = mapped_column(default=0)
    sequence: Mapped[int] = mapped_column(default=0)
    override_conflict: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The call's current time and closer were set with ``override_conflict``: it may share
    time with the closer's other calls, and ``NO_DOUBLE_BOOKING`` leaves it out."""
    host_no_show: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The closer missed the call (``POST /v1/calls/{id}/absence``); round robin does not
    count it toward the closer's share."""
    reason_code: Mapped[str | None] = mapped_column(String(32))
    """The code of the latest cancel, decline, reschedule or reassign of the call
    (docs/sales-floor.md, "Reason codes")."""
    loss_reason: Mapped[str | None] = mapped_column(String(16))
    """Why a ``lost`` call was lost: ``price``, ``timing``, ``authority``, ``need``,
    ``competitor`` or ``other``."""
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    declined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decline_reason: Mapped[str | None] = mapped_column(Text)
