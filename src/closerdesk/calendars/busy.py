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
from closerdesk.models.base import epoch_us_list
from closerdesk.scheduling._spans import SpanColumns, intervals_of
from closerdesk.scheduling.intervals import Interval


async def stored_busy(
    session: AsyncSession,
    connections: Sequence[CalendarConnection],
    start: datetime,
    end: datetime,
) -> dict[str, list[Interval]]:
    """Busy intervals meeting ``[start, end)`` (UTC) of each connection's calendar, keyed by
    connection id: built-in calendars from their busy blocks and events, external ones from
    the mirror. Needs no credential. :func:`stored_busy_spans` as ``Interval``s."""
    spans = await stored_busy_spans(session, connections, start, end)
    return {connection_id: intervals_of(s.spans()) for connection_id, s in spans.items()}


async def stored_busy_spans(
    session: AsyncSession,
    connections: Sequence[CalendarConnection],
    start: datetime,
    end: datetime,
) -> dict[str, SpanColumns]:
    """:func:`stored_busy` in the core's span form (integer microseconds since the epoch, UTC, any
    order, as two parallel lists: ``closerdesk.scheduling._spans.SpanColumns``), computed by the
    database: at most three queries for any number of connections (busy blocks and events of the
    built-in ones, the mirror of the external ones), one row per calendar, no timestamp parsed in
    Python (docs/performance.md, "Slots through the API")."""
    busy = {c.id: SpanColumns() for c in connections}
    builtin = BuiltinCalendar(session)
    accounts = [
        CalendarAccount(
            connection_id=c.id,
            organization_id=c.organization_id,
            member_id=c.member_id,
            provider=c.provider,
            calendar_id=c.calendar_id,
        )
        for c in connections
        if c.provider == builtin.name
    ]
    busy.update(await builtin.busy_spans(accounts, start, end))
    external = [c.id for c in connections if c.provider != builtin.name]
    if external:
        rows = await session.execute(
            select(
                CalendarBusy.connection_id,
                epoch_us_list(CalendarBusy.starts_at),
                epoch_us_list(CalendarBusy.ends_at),
            )
            .where(
                CalendarBusy.connection_id.in_(external),
                CalendarBusy.starts_at < end,
                CalendarBusy.ends_at > start,
                CalendarBusy.ends_at > CalendarBusy.starts_at,
            )
            .group_by(CalendarBusy.connection_id)
        )
        for connection_id, starts, ends in rows.all():
            busy[connection_id].extend(starts, ends)
    return busy
