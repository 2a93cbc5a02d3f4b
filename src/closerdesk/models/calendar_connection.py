from __future__ import annotations

from sqlalchemy import ForeignKeyConstraint, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, TimestampMixin, org_fk


class CalendarConnection(TimestampMixin, Base):
    """A member's connected calendar, a "grant" (SPEC §1): one per member.

    ``provider`` is ``builtin``, ``caldav`` or ``nylas``; ``status`` is ``valid``/``invalid``.
    A closer without a valid connection cannot receive calls.

    ``credentials`` is the provider's credential map (CalDAV ``url``/``username``/``password``,
    OAuth refresh tokens…) as one Fernet token of its JSON, or NULL when there is none (the
    built-in calendar). Read and write it only through ``calendars.credentials``
    (``seal_credentials``/``open_credentials``).
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
    credentials: Mapped[str | None] = mapped_column(Text, default=None)
