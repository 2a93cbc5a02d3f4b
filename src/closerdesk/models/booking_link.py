from __future__ import annotations

from sqlalchemy import String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, TimestampMixin, org_fk


class BookingLink(TimestampMixin, Base):
    """An event type leads and setters book through (docs/api.md, "Booking links"). id ``bl_…``.

    Minutes everywhere. ``slot_interval_minutes`` null means "the duration".
    ``assignment``: ``round_robin`` (the host is chosen per booking) or ``fixed``.
    ``description`` is public text: it is written into the lead's calendar events and
    add-to-calendar links (``docs/architecture.md``, "What is written to a calendar").
    """

    __tablename__ = "booking_links"
    __table_args__ = (UniqueConstraint("organization_id", "slug"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    slug: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    duration_minutes: Mapped[int]
    assignment: Mapped[str] = mapped_column(String(12), default="round_robin")
    minimum_notice_minutes: Mapped[int] = mapped_column(default=0)
    slot_interval_minutes: Mapped[int | None]
    buffer_before_minutes: Mapped[int] = mapped_column(default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(default=0)
    is_active: Mapped[bool] = mapped_column(default=True)
    fairness_period: Mapped[str] = mapped_column(
        String(16), default="month", server_default="month"
    )
    """The period round robin counts each host's share over: ``month``, ``week`` or
    ``rolling_30_days`` (docs/sales-floor.md, "Round-robin controls")."""
    requires_confirmation: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Calls booked through the link start ``pending`` and hold their slot until confirmed or
    declined (docs/sales-floor.md, "Confirmation")."""
