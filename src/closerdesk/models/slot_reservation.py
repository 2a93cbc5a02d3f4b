from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.kit.time import utcnow
from closerdesk.models.base import Base, UTCDateTime, org_fk


class SlotReservation(Base):
    """A slot of a booking link held for one lead while a form is filled in
    (docs/sales-floor.md, "Slot reservations"). id ``rsv_…``.

    ``member_id`` is the host whose time is held over ``starts_at``..``ends_at`` (UTC, the
    call's span without buffers). The hold counts as busy time until ``expires_at``; booking
    with ``reservation_id`` consumes it (``call_id`` set), ``DELETE`` releases it (row removed).
    """

    __tablename__ = "slot_reservations"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "member_id"],
            ["team_members.organization_id", "team_members.id"],
            ondelete="CASCADE",
        ),
        Index("ix_slot_reservations_member_span", "organization_id", "member_id", "starts_at"),
        Index("ix_slot_reservations_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    booking_link_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("booking_links.id", ondelete="CASCADE"), index=True
    )
    member_id: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    call_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("calls.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
