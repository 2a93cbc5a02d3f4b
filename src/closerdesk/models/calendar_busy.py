from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, UTCDateTime, org_fk


class CalendarBusy(Base):
    """One mirrored busy interval of a foreign event on an external calendar.

    ``event_key`` is the provider's identity of the event (a CalDAV href); a recurring event
    has one row per occurrence inside the mirror window. Slots read these rows only
    (``docs/calendars.md``, the busy mirror); closerdesk's own events are never mirrored.
    """

    __tablename__ = "calendar_busy"
    __table_args__ = (
        Index("ix_calendar_busy_connection_span", "connection_id", "starts_at"),
        Index("ix_calendar_busy_connection_key", "connection_id", "event_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = org_fk()
    connection_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("calendar_connections.id", ondelete="CASCADE")
    )
    event_key: Mapped[str] = mapped_column(String(1000))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
