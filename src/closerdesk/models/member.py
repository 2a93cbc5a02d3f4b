from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, TimestampMixin, UTCDateTime


class TeamMember(TimestampMixin, Base):
    """A closer, setter or admin (docs/api.md). id ``user_…``, possibly the partner's own IdP id.

    The primary key is (organization_id, id): two organizations may hold the same external id
    without either learning of the other, and every reference to a member carries its
    organization, so the database itself refuses a cross-organization link.
    """

    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("organization_id", "email"),)

    organization_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(10))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    is_active: Mapped[bool] = mapped_column(default=True)
    last_booked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    max_bookings_per_day: Mapped[int | None]
    """Round robin's daily cap: at most this many live calls on one day of the member's
    ``time_zone``; ``None`` = no cap (docs/sales-floor.md, "Round-robin controls")."""
    max_bookings_per_week: Mapped[int | None]
    """The weekly cap, weeks starting Monday in the member's ``time_zone``; ``None`` = no cap."""
