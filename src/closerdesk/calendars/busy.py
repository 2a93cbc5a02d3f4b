"""Busy time as closerdesk keeps it, without asking any provider (``docs/calendars.md``, the
busy mirror): the built-in calendar's own tables, and the mirror of each external calendar.

Slot queries, round-robin candidates and ``GET /v1/team/{id}/busy`` read this; a booking,
reassign or reschedule also asks the chosen closer's provider live before it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.builtin import BuiltinCalendar
from closerdesk.calendars.provider import CalendarAccount
from closerdesk.models import CalendarBusy, CalendarConnection
from closerdesk.scheduling.intervals import Interval


async def stored_busy(
    session: AsyncSession,
    connections: Sequence[CalendarConnection],
    start: datetime,
    end: datetime,
) -> dict[str, list[Interval]]:
    """Busy intervals meeting ``[start, end)`` (UTC) of each connection's calendar, keyed by
    connection id: built-in calendars from their busy blocks and events, external ones from
    the mirror (one query for all of them). Needs no credential."""
    busy: dict[str, list[Interval]] = {c.id: [] for c in connections}
    builtin = BuiltinCalendar(session)
    external = [c.id for c in connections if c.provider != builtin.name]
    for connection in connections:
        if connection.provider == builtin.name:
            account = CalendarAccount(
                connection_id=connection.id,
                organization_id=connection.organization_id,
                member_id=connection.member_id,
                provider=connection.provider,
                calendar_id=connection.calendar_id,
            )
            busy[connection.id] = await builtin.busy(account, start, end)
    if external:
        rows = await session.execute(
            select(CalendarBusy.connection_id, CalendarBusy.starts_at, CalendarBusy.ends_at).where(
                CalendarBusy.connection_id.in_(external),
                CalendarBusy.starts_at < end,
                CalendarBusy.ends_at > start,
            )
        )
        for connection_id, starts_at, ends_at in rows.all():
            busy[connection_id].append(Interval(starts_at, ends_at))
    return busy
