from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.kit.time import utcnow
from closerdesk.models.base import Base, JSONType, UTCDateTime, org_fk


class CallEvent(Base):
    """Append-only history of a call (docs/api.md): one row per change. id ``cev_…`` (time-ordered).

    ``type``: booked, rescheduled, closer_reassigned, cancelled, outcome_set, updated,
    absence_marked, confirmed, declined. ``reason_code``: the code the change gave
    (docs/sales-floor.md).
    ``actor_type``/``actor_id``: who did it (``api_key``/``key_…`` or ``member``/``user_…``).
    ``before``/``after``: the changed fields only.
    """

    __tablename__ = "call_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    call_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(30))
    actor_type: Mapped[str] = mapped_column(String(10))
    actor_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    reason_code: Mapped[str | None] = mapped_column(String(32))
    before: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
