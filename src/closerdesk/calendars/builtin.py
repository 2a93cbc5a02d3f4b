"""The built-in calendar: events and busy blocks live in closerdesk's own database.

It writes through the request's session (``in_transaction``), so its changes commit or roll
back with the call; its busy time is already in the database, so it has nothing to mirror.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    and_,
    bindparam,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarError,
    CreatedEvent,
    EventDraft,
    SyncBatch,
)
from closerdesk.kit.ids import new_id
from closerdesk.kit.statements import Value, built_once
from closerdesk.kit.time import utcnow
from closerdesk.models import BusyBlock, CalendarEvent
from closerdesk.models.base import epoch_us_list
from closerdesk.scheduling._spans import SpanColumns
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
        # One UPDATE, no read first: an event already cancelled or gone matches nothing. Built
        # per call, not once (closerdesk.kit.statements): the session brings an event it holds
        # up to date from the statement's own values, which a bindparam would hide.
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
        """Busy time of ``account`` meeting ``[start, end)`` (UTC): its member's busy blocks and
        its events closerdesk did not make for calls, in one statement of two indexed reads."""
        values = {
            "organization_id": account.organization_id,
            "member_id": account.member_id,
            "connection_id": account.connection_id,
            "start": start,
            "end": end,
        }
        rows = await self.session.execute(_busy(), values)
        return [Interval(s, e) for s, e in rows.all()]

    async def busy_spans(
        self, accounts: Sequence[CalendarAccount], start: datetime, end: datetime
    ) -> dict[str, SpanColumns]:
        """Busy time meeting ``[start, end)`` of many built-in calendars in two queries (busy
        blocks, events): connection id → spans (integer microseconds since the epoch, UTC, any
        order; ``closerdesk.scheduling._spans.SpanColumns``). The database computes the integers and
        sends them as lists, one row per member or calendar: no timestamp is parsed and no row made
        per interval (docs/performance.md, "Slots through the API"). A row that does not end after
        it starts is no busy time and is skipped."""
        out = {a.connection_id: SpanColumns() for a in accounts}
        if not accounts:
            return out
        by_member: dict[tuple[str, str], list[str]] = {}
        members_of: dict[str, list[str]] = {}
        for account in accounts:
            key = (account.organization_id, account.member_id)
            if key not in by_member:
                members_of.setdefault(account.organization_id, []).append(account.member_id)
            by_member.setdefault(key, []).append(account.connection_id)
        # One row per member and one per calendar, each with its busy time as two lists.
        blocks = await self.session.execute(
            select(
                BusyBlock.organization_id,
                BusyBlock.member_id,
                epoch_us_list(BusyBlock.starts_at),
                epoch_us_list(BusyBlock.ends_at),
            )
            .where(
                or_(
                    *(
                        and_(BusyBlock.organization_id == org, BusyBlock.member_id.in_(members))
                        for org, members in members_of.items()
                    )
                ),
                *_blocks_meeting(start, end),
            )
            .group_by(BusyBlock.organization_id, BusyBlock.member_id)
        )
        for org, member, starts, ends in blocks.all():
            for connection_id in by_member[(org, member)]:
                out[connection_id].extend(starts, ends)
        # Events closerdesk made for calls are checked as calls, not twice as calendar time.
        events = await self.session.execute(
            select(
                CalendarEvent.connection_id,
                epoch_us_list(CalendarEvent.starts_at),
                epoch_us_list(CalendarEvent.ends_at),
            )
            .where(
                CalendarEvent.connection_id.in_(list(out)),
                *_foreign_events_meeting(start, end),
            )
            .group_by(CalendarEvent.connection_id)
        )
        for connection_id, starts, ends in events.all():
            out[connection_id].extend(starts, ends)
        return out

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


def _build_busy() -> CompoundSelect[datetime, datetime]:
    """``busy``'s statement, built once (``closerdesk.kit.statements``)."""
    start: BindParameter[datetime] = bindparam("start")
    end: BindParameter[datetime] = bindparam("end")
    blocks = select(BusyBlock.starts_at, BusyBlock.ends_at).where(
        BusyBlock.organization_id == bindparam("organization_id"),
        BusyBlock.member_id == bindparam("member_id"),
        *_blocks_meeting(start, end),
    )
    events = select(CalendarEvent.starts_at, CalendarEvent.ends_at).where(
        CalendarEvent.connection_id == bindparam("connection_id"),
        *_foreign_events_meeting(start, end),
    )
    return union_all(blocks, events)


_busy = built_once(_build_busy)


def _blocks_meeting(
    start: Value[datetime], end: Value[datetime]
) -> tuple[ColumnElement[bool], ...]:
    """Busy blocks sharing time with ``[start, end)``; a block that does not end after it
    starts is no busy time."""
    return (
        BusyBlock.starts_at < end,
        BusyBlock.ends_at > start,
        BusyBlock.ends_at > BusyBlock.starts_at,
    )


def _foreign_events_meeting(
    start: Value[datetime], end: Value[datetime]
) -> tuple[ColumnElement[bool], ...]:
    """Confirmed calendar events sharing time with ``[start, end)`` that closerdesk did not
    make for a call (a call's own event is checked as the call, not twice)."""
    return (
        CalendarEvent.call_id.is_(None),
        CalendarEvent.status == "confirmed",
        CalendarEvent.starts_at < end,
        CalendarEvent.ends_at > start,
        CalendarEvent.ends_at > CalendarEvent.starts_at,
    )
