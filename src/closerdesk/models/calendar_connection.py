from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKeyConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, JSONType, TimestampMixin, org_fk


class CalendarConnection(TimestampMixin, Base):
    """A member's connected calendar, a "grant" (SPEC §1): one per member.

    ``provider`` is ``builtin``, ``caldav`` or ``nylas``; ``status`` is ``valid``/``invalid``.
    A closer without a valid connection cannot receive calls.
    """

    __tablename__ = "calendar_connections"
    __table_args__ = (
        UniqueConstraint("organization_id", "member_id"),
        ForeignKeyConstraint(
            ["organization_id", "member_id"],
            ["team_members.organization_id", "team_members.id"],
            ondelete="CASCADE",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    member_id: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(20))
    provider_grant_id: Mapped[str] = mapped_column(String(200))
    calendar_id: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(10), default="valid")
    credentials: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
