from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, TimestampMixin, UTCDateTime, org_fk


class CalendarEvent(TimestampMixin, Base):
    """An event on a built-in calendar (the built-in provider's storage). id ``evt_…``.

    ``ix_calendar_events_connection_open`` holds only events that are not calls'
    (``call_id IS NULL``, the only ones counted as busy time), by ``ends_at``: a busy query reads
    the connection's foreign events that have not ended by its start, never the calls' events
    nor the past. Its predicate has no bound parameter, so PostgreSQL's generic plans and SQLite
    can both prove a query implies it.
    """

    __tablename__ = "calendar_events"
    __table_args__ = (
        Index("ix_calendar_events_connection_span", "connection_id", "starts_at"),
        Index(
            "ix_calendar_events_connection_open",
            "connection_id",
            "ends_at",
            sqlite_where=text("call_id IS NULL"),
            postgresql_where=text("call_id IS NULL"),
        ),
    )

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
