"""The calendar provider Protocol: the calls service never knows which calendar it talks to.

A provider works on plain values (``CalendarAccount``, ``EventDraft``), never on ORM rows: a
real provider's I/O may run in a worker thread, after the request's transaction has ended or
been rolled back (see ``docs/calendars.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.scheduling.intervals import Interval

OWN_UID_SUFFIX = "@closerdesk"
"""Every event closerdesk writes has a UID ending in this: ours, never foreign busy time."""


class CalendarError(Exception):
    """The provider could not do what was asked (network, timeout, provider outage).

    ``maybe_created``: a create that failed without an answer (a timeout) may still have made
    the event; when the provider knows the id it would have (a client-chosen id), it is here,
    so the unit of work can remove it (``docs/calendars.md``, failures).
    """

    maybe_created: str | None = None


class ProviderNotConfigured(CalendarError):
    """closerdesk has no client for this provider (an OAuth client id, the Nylas API key):
    the operator must set the settings the message names."""


class CalendarAuthError(CalendarError):
    """The provider refused the credentials (HTTP 401/403, a revoked grant).

    A connection that answers this turns ``invalid`` (``docs/calendars.md``, failures).
    """


@dataclass(frozen=True)
class CalendarAccount:
    """A connection as a provider needs it: plain values, credentials decrypted.

    ``calendar_id`` is the provider's calendar (a CalDAV collection URL, ``builtin:<member>``);
    ``credentials`` are the provider's own (CalDAV: ``url``, ``username``, ``password``).
    """

    connection_id: str
    organization_id: str
    member_id: str
    provider: str
    calendar_id: str
    credentials: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventDraft:
    """What closerdesk puts on a calendar for a call. Times are aware UTC.

    Only what the lead may see: title, time, join link, the booking link's public
    description; never the call's ``notes``, ``ai_summary`` or deal value.
    """

    call_id: str
    title: str
    starts_at: datetime
    ends_at: datetime
    description: str = ""
    location: str = ""
    attendees: tuple[str, ...] = field(default=())
    sequence: int = 0


@dataclass(frozen=True)
class CreatedEvent:
    """What ``create_event`` made: the provider's event id (stable for the event's life) and,
    when the connection asked for the provider's own conferencing (Google Meet, Teams), the
    room's URL, which the call's revocable ``/meet/{token}`` link then redirects to."""

    event_id: str
    room_url: str | None = None


@dataclass(frozen=True)
class PushChannel:
    """A provider's push subscription for one calendar (a Google channel, a Microsoft Graph
    subscription): ``channel_id`` names it in notifications, ``resource_id`` is Google's
    ``resourceId`` (needed to stop it; empty for Graph), ``expires_at`` when it lapses (UTC)."""

    channel_id: str
    resource_id: str
    expires_at: datetime


@dataclass(frozen=True)
class MirrorChange:
    """One foreign event as the busy mirror keeps it.

    ``key`` is the provider's stable identity of the event (a CalDAV href); ``intervals`` its
    busy time inside the sync window (recurrences expanded). Empty ``intervals``: the event is
    gone, cancelled, transparent or outside the window, so nothing of it is busy.
    """

    key: str
    intervals: tuple[Interval, ...] = ()


@dataclass(frozen=True)
class SyncBatch:
    """What changed in a calendar since the ``state`` passed to ``sync``.

    ``full``: ``changes`` is every foreign event of the window, and mirrored events missing from
    it are gone. ``state`` is the opaque token (RFC 6578 sync token, or ctag + etags) to pass
    next time.
    """

    state: str | None
    full: bool
    changes: tuple[MirrorChange, ...] = ()


class CalendarProvider(Protocol):
    """One calendar backend (``builtin``, ``caldav``, …).

    Every method raises ``CalendarAuthError`` when the provider refuses the credentials and
    ``CalendarError`` for any other failure (including a timeout).
    """

    name: str

    async def connect(self, account: CalendarAccount) -> CalendarAccount:
        """Check the credentials and find the calendar; returns the account with
        ``calendar_id`` set to the calendar that will receive events."""
        ...

    async def create_event(self, account: CalendarAccount, draft: EventDraft) -> CreatedEvent:
        """Create the event; return its id (and the provider's conferencing room, if any)."""
        ...

    async def move_event(self, account: CalendarAccount, event_id: str, draft: EventDraft) -> None:
        """Change the event's time, title or location in place (same id)."""
        ...

    async def cancel_event(self, account: CalendarAccount, event_id: str) -> None:
        """Remove the event. Removing one already gone is not an error."""
        ...

    async def busy(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[Interval]:
        """Live foreign busy time in ``[start, end)``: never closerdesk's own events, never
        transparent or cancelled ones; recurring events expanded."""
        ...

    async def sync(
        self, account: CalendarAccount, state: str | None, window: Interval
    ) -> SyncBatch:
        """Foreign events changed since ``state`` (None: everything), with their busy time
        clipped to ``window``."""
        ...


@runtime_checkable
class PushProvider(Protocol):
    """A provider that can notify closerdesk of changes (Google ``events.watch``, Microsoft
    Graph subscriptions). ``token`` is the secret the provider echoes in every notification
    (Google's channel token, Graph's ``clientState``); ``address`` the HTTPS URL it posts to."""

    async def watch(self, account: CalendarAccount, address: str, token: str) -> PushChannel:
        """Start (or renew by replacing) push notifications for the account's calendar."""
        ...

    async def unwatch(self, account: CalendarAccount, channel: PushChannel) -> None:
        """Stop a channel. Stopping one already gone is not an error."""
        ...


CalendarFactory = Callable[[AsyncSession, str], CalendarProvider]
"""``factory(session, provider_name)`` → a provider; the built-in one writes through the
session's transaction. Raises ``CalendarError`` for an unknown provider."""
