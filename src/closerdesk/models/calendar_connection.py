from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, TimestampMixin, UTCDateTime, org_fk


class CalendarConnection(TimestampMixin, Base):
    """A member's connected calendar, a "grant": one per member (``docs/calendars.md``).

    ``provider`` is ``builtin``, ``caldav``, ``google``, ``microsoft`` or ``nylas``; ``status``
    is ``valid``/``invalid`` (a provider refused the credentials: ``invalid_reason`` says why).
    A closer without a valid connection cannot receive calls.

    The busy mirror of an external calendar: ``sync_status`` (``pending``, ``ok``, ``failed``),
    ``last_synced_at``, ``sync_error``, the provider's opaque ``sync_state`` (sync token, or
    ctag and etags), ``mirror_until`` (the end of the window the mirror was expanded to) and
    ``sync_lease_until`` (a worker owns the sync until then), ``sync_requested_at`` (a push
    notification asked for a sync that has not run yet).

    Push notifications (Google channels, Microsoft Graph subscriptions): ``push_channel_id``
    names the channel in notifications, ``push_resource_id`` is Google's ``resourceId``,
    ``push_expires_at`` when it lapses (the worker renews it a day before).
    ``provider_grant_id`` is the provider's grant (Nylas ``grant_id``); closerdesk's own
    connection id for the others.

    ``credentials`` is the provider's credential map (CalDAV ``url``/``username``/``password``)
    as one Fernet token of its JSON, or NULL when there is none (the built-in calendar). Read
    and write it only through ``calendars.credentials`` (``seal_credentials``/
    ``open_credentials``).
    """

    __tablename__ = "calendar_connections"
    __table_args__ = (
        UniqueConstraint("organization_id", "member_id"),
        ForeignKeyConstraint(
            ["organization_id", "member_id"],
            ["team_members.organization_id", "team_members.id"],
            ondelete="CASCADE",
        ),
        Index("ix_calendar_connections_sync_due", "provider", "last_synced_at"),
        Index("ix_calendar_connections_grant", "provider", "provider_grant_id"),
        Index("ix_calendar_connections_push_channel", "push_channel_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    member_id: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(20))
    provider_grant_id: Mapped[str] = mapped_column(String(200))
    calendar_id: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(10), default="valid")
    credentials: Mapped[str | None] = mapped_column(Text, default=None)
    invalid_reason: Mapped[str | None] = mapped_column(String(500))
    sync_status: Mapped[str] = mapped_column(String(10), default="pending")
    sync_state: Mapped[str | None] = mapped_column(Text)
    sync_error: Mapped[str | None] = mapped_column(String(500))
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mirror_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sync_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sync_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    push_channel_id: Mapped[str | None] = mapped_column(String(200))
    push_resource_id: Mapped[str | None] = mapped_column(String(500))
    push_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
