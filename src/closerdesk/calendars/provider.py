"""The calendar provider Protocol: the calls service never knows which calendar it talks to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.models import CalendarConnection
from closerdesk.scheduling.intervals import Interval


class CalendarError(Exception):
    """The provider could not do what was asked (network, auth, provider outage)."""


@dataclass(frozen=True)
class EventDraft:
    """What closerdesk puts on a calendar for a call. Times are aware UTC."""

    call_id: str
    title: str
    starts_at: datetime
    ends_at: datetime
    description: str = ""
    location: str = ""
    attendees: tuple[str, ...] = field(default=())


class CalendarProvider(Protocol):
    """One calendar backend (``builtin``, ``caldav``, ``nylas``).

    Every method raises ``CalendarError`` when the provider fails.
    """

    name: str

    async def create_event(self, connection: CalendarConnection, draft: EventDraft) -> str:
        """Create the event; return the provider's event id."""
        ...

    async def move_event(
        self, connection: CalendarConnection, event_id: str, draft: EventDraft
    ) -> None:
        """Change the event's time, title or location in place."""
        ...

    async def cancel_event(self, connection: CalendarConnection, event_id: str) -> None:
        """Cancel/remove the event. Cancelling one already gone is not an error."""
        ...

    async def busy(
        self, connection: CalendarConnection, start: datetime, end: datetime
    ) -> list[Interval]:
        """Busy time in ``[start, end)`` other than closerdesk's own call events."""
        ...


CalendarFactory = Callable[[AsyncSession, str], CalendarProvider]
"""``factory(session, provider_name)`` → a provider bound to the session's transaction."""
