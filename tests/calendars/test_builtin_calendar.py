"""The built-in calendar (``closerdesk.calendars.builtin``): events kept in closerdesk's own
tables (docs/calendars.md)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.builtin import BuiltinCalendar
from closerdesk.calendars.provider import CalendarAccount
from closerdesk.kit.ids import new_id
from closerdesk.models import BusyBlock, CalendarConnection, CalendarEvent
from closerdesk.scheduling.intervals import Interval
from tests.calls.helpers import future
from tests.factories import Org, create_call, create_lead, create_member


async def test_cancelling_an_event_the_session_holds_brings_it_up_to_date(
    session: AsyncSession, org: Org
) -> None:
    """The copy of the event the session already holds is cancelled with its row, and its
    ``updated_at`` is the cancel's; a second cancel matches nothing and changes nothing."""
    call = await create_call(
        session,
        org,
        lead=await create_lead(session, org),
        closer=await create_member(session, org),
        scheduled_at=future(days=2),
    )
    await session.commit()
    event = await session.scalar(select(CalendarEvent).where(CalendarEvent.call_id == call.id))
    assert event is not None
    connection = await session.get(CalendarConnection, event.connection_id)
    assert connection is not None
    account = _account(connection)
    event_id, booked_at = event.id, event.updated_at
    await BuiltinCalendar(session).cancel_event(account, event_id)
    assert event.status == "cancelled"
    assert event.updated_at is not None
    assert event.updated_at >= booked_at
    cancelled_at = event.updated_at
    await session.commit()
    await BuiltinCalendar(session).cancel_event(account, event_id)
    await session.commit()
    again = await session.scalar(
        select(CalendarEvent.updated_at).where(CalendarEvent.id == event_id)
    )
    assert again is not None
    assert abs(again - cancelled_at) < timedelta(milliseconds=1)


def _account(connection: CalendarConnection) -> CalendarAccount:
    return CalendarAccount(
        connection_id=connection.id,
        organization_id=connection.organization_id,
        member_id=connection.member_id,
        provider="builtin",
        calendar_id=connection.calendar_id,
    )


async def test_busy_is_the_members_blocks_and_its_calendars_foreign_events_in_range(
    session: AsyncSession, org: Org
) -> None:
    """What the conflict check asks of a built-in calendar: the member's busy blocks and the
    confirmed events of its calendar that closerdesk did not make for a call, meeting the
    range (touching its start does not); never another member's blocks or another calendar's
    events, nor an interval that does not end after it starts (docs/calendars.md)."""
    t0 = future(days=5).replace(minute=0, second=0, microsecond=0)
    mine, other = await create_member(session, org), await create_member(session, org)
    await session.commit()
    connections = {
        c.member_id: c
        for c in await session.scalars(
            select(CalendarConnection).where(CalendarConnection.member_id.in_([mine.id, other.id]))
        )
    }

    def block(member_id: str, start: datetime, minutes: int) -> BusyBlock:
        return BusyBlock(
            id=new_id("busy"),
            organization_id=org.id,
            member_id=member_id,
            starts_at=start,
            ends_at=start + timedelta(minutes=minutes),
        )

    def event(
        member_id: str, start: datetime, call_id: str | None, status: str, minutes: int = 30
    ) -> CalendarEvent:
        return CalendarEvent(
            id=new_id("evt"),
            organization_id=org.id,
            connection_id=connections[member_id].id,
            call_id=call_id,
            title="x",
            starts_at=start,
            ends_at=start + timedelta(minutes=minutes),
            status=status,
        )

    session.add_all(
        [
            block(mine.id, t0, 30),  # counts
            block(mine.id, t0 + timedelta(hours=5), -10),  # inverted: no busy time
            block(mine.id, t0 + timedelta(hours=6), 0),  # empty: no busy time
            block(mine.id, t0 - timedelta(hours=2), 60),  # ends as the range starts
            block(mine.id, t0 + timedelta(days=2), 30),  # outside the range
            block(other.id, t0 + timedelta(hours=1), 30),  # another member's
            event(mine.id, t0 + timedelta(hours=2), None, "confirmed"),  # counts
            event(mine.id, t0 + timedelta(hours=3), "call_x", "confirmed"),  # a call's own
            event(mine.id, t0 + timedelta(hours=4), None, "cancelled"),
            event(mine.id, t0 - timedelta(hours=1, minutes=30), None, "confirmed"),  # ends at start
            event(other.id, t0 + timedelta(hours=2, minutes=30), None, "confirmed"),
            event(mine.id, t0 + timedelta(hours=7), None, "confirmed", minutes=0),  # empty
        ]
    )
    await session.commit()
    busy = await BuiltinCalendar(session).busy(
        _account(connections[mine.id]), t0 - timedelta(hours=1), t0 + timedelta(days=1)
    )
    half_hour = timedelta(minutes=30)
    assert sorted(busy) == [
        Interval(t0, t0 + half_hour),
        Interval(t0 + timedelta(hours=2), t0 + timedelta(hours=2) + half_hour),
    ]
