"""The built-in calendar (``closerdesk.calendars.builtin``): events kept in closerdesk's own
tables (docs/calendars.md)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.builtin import BuiltinCalendar
from closerdesk.calendars.provider import CalendarAccount
from closerdesk.models import CalendarConnection, CalendarEvent
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
    account = CalendarAccount(
        connection_id=connection.id,
        organization_id=org.id,
        member_id=connection.member_id,
        provider="builtin",
        calendar_id=connection.calendar_id,
    )
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
