"""The built-in calendar: events and busy blocks live in closerdesk's own database.

It writes through the request's session (``in_transaction``), so its changes commit or roll
back with the call; its busy time is already in the database, so it has nothing to mirror.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarError,
    CreatedEvent,
    EventDraft,
    SyncBatch,
)
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import BusyBlock, CalendarEvent
from closerdesk.scheduling.intervals import Interval


class BuiltinCalendar:
    name = "builtin"
    in_transaction = True

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def connect(self, account: CalendarAccount) -> CalendarAccount:
        """Nothing to check: the calendar is closerdesk's own, ``builtin:<member id>``."""
        return account

    async def create_event(self, account: CalendarAccount, draft: EventDraft) -> CreatedEvent:
        event = CalendarEvent(
            id=new_id("evt"),
            organization_id=account.organization_id,
            connection_id=account.connection_id,
            call_id=draft.call_id,
            title=draft.title,
            description=draft.description,
            location=draft.location,
            starts_at=draft.starts_at,
            ends_at=draft.ends_at,
        )
        self.session.add(event)
        await self.session.flush()
        return CreatedEvent(event.id)

    async def move_event(self, account: CalendarAccount, event_id: str, draft: EventDraft) -> None:
        event = await self._event(account, event_id)
        if event is None or event.status == "cancelled":
            raise CalendarError(f"event {event_id} is not on calendar {account.connection_id}")
        event.starts_at, event.ends_at = draft.starts_at, draft.ends_at
        event.title, event.location = draft.title, draft.location
        event.description = draft.description
        await self.session.flush()

    async def cancel_event(self, account: CalendarAccount, event_id: str) -> None:
        # One UPDATE, no read first: an event already cancelled or gone matches nothing.
        await self.session.execute(
            update(CalendarEvent)
            .where(
                CalendarEvent.id == event_id,
                CalendarEvent.connection_id == account.connection_id,
                CalendarEvent.status != "cancelled",
            )
            .values(status="cancelled", updated_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )

    async def busy(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[Interval]:
        # One statement, two indexed reads: busy blocks, and events closerdesk did not make
        # for calls (those are checked as calls, not twice as calendar time).
        blocks = select(BusyBlock.starts_at, BusyBlock.ends_at).where(
            BusyBlock.organization_id == account.organization_id,
            BusyBlock.member_id == account.member_id,
            BusyBlock.starts_at < end,
            BusyBlock.ends_at > start,
        )
        events = select(CalendarEvent.starts_at, CalendarEvent.ends_at).where(
            CalendarEvent.connection_id == account.connection_id,
            CalendarEvent.call_id.is_(None),
            CalendarEvent.status == "confirmed",
            CalendarEvent.starts_at < end,
            CalendarEvent.ends_at > start,
        )
        rows = await self.session.execute(union_all(blocks, events))
        return [Interval(s, e) for s, e in rows.all()]

    async def sync(
        self, account: CalendarAccount, state: str | None, window: Interval
    ) -> SyncBatch:
        """Nothing to mirror: ``busy`` reads the busy blocks where they are."""
        return SyncBatch(state=state, full=False)

    async def _event(self, account: CalendarAccount, event_id: str) -> CalendarEvent | None:
        event = await self.session.get(CalendarEvent, event_id)
        if event is None or event.connection_id != account.connection_id:
            return None
        return event
