"""Busy time as closerdesk keeps it, read in the core's span form (``stored_busy_spans``): the
database computes epoch microseconds (``epoch_us``/``epoch_us_list``), exactly, on SQLite and
PostgreSQL alike, for several calendars in one go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.busy import stored_busy, stored_busy_spans
from closerdesk.kit.ids import new_id
from closerdesk.models import BusyBlock, CalendarBusy, CalendarConnection, CalendarEvent
from closerdesk.models.base import epoch_us
from closerdesk.scheduling._spans import to_us
from closerdesk.scheduling.intervals import Interval
from tests.factories import Org, create_member

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
# Fractions that a millisecond rounding or a float would get wrong.
AWKWARD = (
    timedelta(microseconds=1),
    timedelta(seconds=59, microseconds=999_999),
    timedelta(microseconds=999_500),
    timedelta(minutes=30, microseconds=123_456),
)


async def _connection(session: AsyncSession, member_id: str) -> CalendarConnection:
    found = await session.scalar(
        select(CalendarConnection).where(CalendarConnection.member_id == member_id)
    )
    assert found is not None
    return found


async def test_epoch_us_is_exact(org: Org, session: AsyncSession) -> None:
    member = await create_member(session, org)
    stamps = [T0 + d for d in AWKWARD] + [datetime(1970, 1, 1, tzinfo=UTC), T0]
    for at in stamps:
        session.add(
            BusyBlock(
                id=new_id("busy"),
                organization_id=org.id,
                member_id=member.id,
                starts_at=at,
                ends_at=at + timedelta(minutes=5),
            )
        )
    await session.commit()
    rows = (await session.execute(select(BusyBlock.starts_at, epoch_us(BusyBlock.starts_at)))).all()
    assert sorted(us for _, us in rows) == sorted(to_us(at) for at in stamps)
    assert all(us == to_us(at) for at, us in rows)


async def test_stored_busy_spans_of_several_calendars(org: Org, session: AsyncSession) -> None:
    a = await create_member(session, org)
    b = await create_member(session, org)
    c = await create_member(session, org)
    ca, cb, cc = [await _connection(session, m.id) for m in (a, b, c)]
    cc.provider = "caldav"  # an external calendar: its busy time is the mirror's
    blocks = {a.id: [(T0 + AWKWARD[0], T0 + AWKWARD[1])], b.id: [(T0, T0 + AWKWARD[3])]}
    for member_id, spans in blocks.items():
        for s, e in spans:
            session.add(
                BusyBlock(
                    id=new_id("busy"),
                    organization_id=org.id,
                    member_id=member_id,
                    starts_at=s,
                    ends_at=e,
                )
            )
    # An event of a's calendar (foreign time) counts; one made for a call, a cancelled one,
    # one outside the range and an inverted block do not.
    for call_id, status, start in (
        (None, "confirmed", T0 + timedelta(hours=1, microseconds=7)),
        ("call_x", "confirmed", T0 + timedelta(hours=2)),
        (None, "cancelled", T0 + timedelta(hours=3)),
        (None, "confirmed", T0 + timedelta(days=3)),
    ):
        session.add(
            CalendarEvent(
                id=new_id("evt"),
                organization_id=org.id,
                connection_id=ca.id,
                call_id=call_id,
                title="x",
                starts_at=start,
                ends_at=start + timedelta(minutes=30),
                status=status,
            )
        )
    session.add(
        BusyBlock(
            id=new_id("busy"),
            organization_id=org.id,
            member_id=b.id,
            starts_at=T0 + timedelta(hours=5),
            ends_at=T0 + timedelta(hours=4),
        )
    )
    session.add(
        CalendarBusy(
            organization_id=org.id,
            connection_id=cc.id,
            event_key="/cal/1.ics",
            starts_at=T0 + AWKWARD[2],
            ends_at=T0 + timedelta(hours=1),
        )
    )
    await session.commit()
    connections = [ca, cb, cc]
    start, end = T0 - timedelta(hours=1), T0 + timedelta(days=1)
    spans = await stored_busy_spans(session, connections, start, end)
    assert sorted(spans[ca.id].spans()) == [
        (to_us(T0 + AWKWARD[0]), to_us(T0 + AWKWARD[1])),
        (
            to_us(T0 + timedelta(hours=1, microseconds=7)),
            to_us(T0 + timedelta(hours=1, minutes=30, microseconds=7)),
        ),
    ]
    assert list(spans[cb.id].spans()) == [(to_us(T0), to_us(T0 + AWKWARD[3]))]
    assert list(spans[cc.id].spans()) == [(to_us(T0 + AWKWARD[2]), to_us(T0 + timedelta(hours=1)))]
    intervals = await stored_busy(session, connections, start, end)
    assert intervals[cb.id] == [Interval(T0, T0 + AWKWARD[3])]
    assert all(i.start.tzinfo is UTC for i in intervals[ca.id])
    assert await stored_busy_spans(session, [], start, end) == {}
