from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, TimestampMixin, UTCDateTime, org_fk


class CalendarEvent(TimestampMixin, Base):
    """An event on a built-in calendar (the built-in provider's storage). id ``evt_…``."""

    __tablename__ = "calendar_events"
    __table_args__ = (Index("ix_calendar_events_connection_span", "connection_id", "starts_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    connection_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("calendar_connections.id", ondelete="CASCADE")
    )
    call_id: Mapped[str | None] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str] = mapped_column(String(1000), default="")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(12), default="confirmed")
