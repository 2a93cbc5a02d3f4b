from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, ForeignKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, JSONType


class BookingLinkHost(Base):
    """A closer who takes calls of a booking link, with round-robin priority and weight and a
    weekly schedule in the host's IANA zone (``schedule``: ``{"time_zone", "weekly": [...],
    "overrides": [...]}``, docs/api.md "Availability")."""

    __tablename__ = "booking_link_hosts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "member_id"],
            ["team_members.organization_id", "team_members.id"],
            ondelete="CASCADE",
        ),
    )

    booking_link_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("booking_links.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(40), index=True)
    priority: Mapped[str] = mapped_column(String(6), default="medium")
    weight: Mapped[int] = mapped_column(default=100)
    position: Mapped[int] = mapped_column(default=0)
    schedule: Mapped[dict[str, Any]] = mapped_column(JSONType)
