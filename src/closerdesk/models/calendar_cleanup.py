from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.kit.time import utcnow
from closerdesk.models.base import Base, UTCDateTime, org_fk


class CalendarCleanup(Base):
    """An orphaned calendar event still to remove (docs/api.md "Reassign": ``old_event_orphaned``).

    Written when cancelling an old event failed; retried until ``resolved_at`` is set.
    """

    __tablename__ = "calendar_cleanups"
    __table_args__ = (Index("ix_calendar_cleanups_due", "resolved_at", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    connection_id: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(500))
    call_id: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(default=1)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
