"""Overlap and busy queries read a bounded window and still find every interval sharing time.

``overlapping_calls`` and ``busy_by_host`` look back only ``CALL_LOOKBACK`` (the longest call);
busy blocks and foreign calendar events are read by end time. Checked against a brute-force
filter over the same rows, with the edges spelled out: a call that started before the window
and runs into it, the longest allowed call, touching intervals (no overlap).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.booking_links.service import Host, busy_by_host
from closerdesk.calls.repository import overlapping_calls
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import isoformat_z
from closerdesk.models import BusyBlock, CalendarConnection, CalendarEvent, Call, TeamMember
from closerdesk.models.call import MAX_CALL_MINUTES
from closerdesk.scheduling.intervals import Interval, merge
from tests.factories import Org, create_call, create_lead, create_member

DAY = datetime(2031, 3, 3, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
LONGEST = timedelta(minutes=MAX_CALL_MINUTES)


async def _call(
    session: AsyncSession, org: Org, closer: TeamMember, start: datetime, minutes: int, **kw: Any
) -> Call:
    lead = await create_lead(session, org)
    return await create_call(
        session,
        org,
        lead=lead,
        closer=closer,
        scheduled_at=start,
        duration_minutes=minutes,
        with_event=False,
        **kw,
    )


async def _ids(
    session: AsyncSession, org: Org, closer: TeamMember, start: datetime, end: datetime
) -> set[str]:
    return {c.id for c in await overlapping_calls(session, org.id, closer.id, start, end)}


async def test_overlap_edges(org: Org, session: AsyncSession) -> None:
    closer = await create_member(session, org)
    start, end = DAY + timedelta(hours=12), DAY + timedelta(hours=13)
    runs_in = await _call(session, org, closer, start - timedelta(minutes=30), 45)
    longest_in = await _call(session, org, closer, start - LONGEST + MINUTE, MAX_CALL_MINUTES)
    longest_touching = await _call(session, org, closer, start - LONGEST, MAX_CALL_MINUTES)
    touching_before = await _call(session, org, closer, start - timedelta(minutes=45), 45)
    touching_after = await _call(session, org, closer, end, 45)
    inside = await _call(session, org, closer, start + timedelta(minutes=15), 15)
    covering = await _call(session, org, closer, start - MINUTE, 62)
    ends_inside = await _call(session, org, closer, end - MINUTE, 30)
    await _call(session, org, closer, start - timedelta(minutes=10), 45, status="cancelled")
    for days in range(2, 30):  # the past that must not be read, nor found
        await _call(session, org, closer, start - timedelta(days=days), MAX_CALL_MINUTES)

    found = await _ids(session, org, closer, start, end)
    assert found == {runs_in.id, longest_in.id, inside.id, covering.id, ends_inside.id}
    assert not found & {longest_touching.id, touching_before.id, touching_after.id}
    # A one-minute window at the very end of the longest call still finds it.
    assert longest_in.id in await _ids(session, org, closer, start, start + MINUTE)


async def test_the_longest_call_is_accepted(org: Org, session: AsyncSession) -> None:
    closer = await create_member(session, org)
    call = await _call(session, org, closer, DAY, MAX_CALL_MINUTES)
    assert call.ends_at == DAY + LONGEST


async def test_a_longer_call_is_refused_by_the_database(org: Org, session: AsyncSession) -> None:
    closer = await create_member(session, org)
    with pytest.raises(IntegrityError):
        await _call(session, org, closer, DAY, MAX_CALL_MINUTES + 1)
    await session.rollback()


async def test_the_check_reads_the_times_not_the_minutes(org: Org, session: AsyncSession) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    with pytest.raises(IntegrityError):
        await create_call(
            session,
            org,
            lead=lead,
            closer=closer,
            scheduled_at=DAY,
            duration_minutes=45,
            with_event=False,
            ends_at=DAY + LONGEST + timedelta(seconds=1),
        )
    await session.rollback()


# --- every overlap, against brute force ----------------------------------------------------------
def _grid(rnd: random.Random, days: int = 4) -> datetime:
    """A time on a 15-minute grid, so that touching intervals are common."""
    return DAY + timedelta(minutes=15 * rnd.randrange(days * 96))


def _windows(rnd: random.Random, count: int = 40) -> list[tuple[datetime, datetime]]:
    out = []
    for _ in range(count):
        start = _grid(rnd)
        out.append((start, start + timedelta(minutes=rnd.choice((15, 30, 45, 60, 180, 1440)))))
    return out


async def _random_calls(
    session: AsyncSession, org: Org, closer: TeamMember, rnd: random.Random
) -> list[tuple[str, Interval]]:
    """Live booking calls as ``(id, span)``; cancelled and intent ones are written too."""
    live = []
    for i in range(60):
        minutes = MAX_CALL_MINUTES if i % 7 == 0 else rnd.choice((15, 30, 45, 60, 90))
        start = _grid(rnd)
        status = "cancelled" if i % 11 == 5 else "scheduled"
        call = await _call(session, org, closer, start, minutes, status=status)
        if status == "scheduled":
            live.append((call.id, Interval(start, start + timedelta(minutes=minutes))))
    await _call(session, org, closer, DAY, 45, call_kind="intent")
    return live


def _sharing(spans: list[Interval], start: datetime, end: datetime) -> list[Interval]:
    return [s for s in spans if s.start < end and s.end > start]


def _expected_busy(spans: list[Interval], start: datetime, end: datetime) -> list[Interval]:
    return merge(
        Interval(max(s.start, start), min(s.end, end)) for s in _sharing(spans, start, end)
    )


async def test_overlapping_calls_find_every_overlap(org: Org, session: AsyncSession) -> None:
    rnd = random.Random(6)
    closer = await create_member(session, org)
    other = await create_member(session, org)
    live = await _random_calls(session, org, closer, rnd)
    await _call(session, org, other, DAY + timedelta(hours=20), MAX_CALL_MINUTES)
    for start, end in _windows(rnd):
        expected = {cid for cid, span in live if span.start < end and span.end > start}
        assert await _ids(session, org, closer, start, end) == expected, (start, end)


async def test_busy_by_host_finds_every_call(org: Org, session: AsyncSession) -> None:
    rnd = random.Random(7)
    closer = await create_member(session, org)
    live = await _random_calls(session, org, closer, rnd)
    connection = await session.scalar(
        select(CalendarConnection).where(CalendarConnection.member_id == closer.id)
    )
    assert connection is not None
    host = Host(member=closer, connection=connection, priority="high", weight=100, schedule=None)
    spans = [span for _, span in live]
    for start, end in _windows(rnd):
        busy = await busy_by_host(session, org.id, [host], start, end)
        assert sorted(busy[closer.id]) == sorted(_sharing(spans, start, end)), (start, end)


async def _random_calendar(
    session: AsyncSession, org: Org, member: TeamMember, rnd: random.Random
) -> list[Interval]:
    """Busy blocks up to the longest the API takes (366 days) and foreign events of any length;
    cancelled events and events of calls are written too and are not busy time."""
    connection_id = await session.scalar(
        select(CalendarConnection.id).where(CalendarConnection.member_id == member.id)
    )
    busy = []
    for i in range(40):
        start = _grid(rnd) - (timedelta(days=300) if i % 10 == 0 else timedelta())
        length = (
            timedelta(days=366) if i % 10 == 0 else timedelta(minutes=15 * rnd.randrange(1, 400))
        )
        session.add(
            BusyBlock(
                id=new_id("busy"),
                organization_id=org.id,
                member_id=member.id,
                starts_at=start,
                ends_at=start + length,
            )
        )
        busy.append(Interval(start, start + length))
    for i in range(40 if connection_id is not None else 0):
        start = _grid(rnd) - (timedelta(days=40) if i % 10 == 0 else timedelta())
        length = (
            timedelta(days=45) if i % 10 == 0 else timedelta(minutes=15 * rnd.randrange(1, 200))
        )
        kind = ("foreign", "cancelled", "call")[i % 3] if i % 10 else "foreign"
        session.add(
            CalendarEvent(
                id=new_id("evt"),
                organization_id=org.id,
                connection_id=connection_id,
                call_id=new_id("call") if kind == "call" else None,
                title="Elsewhere",
                starts_at=start,
                ends_at=start + length,
                status="cancelled" if kind == "cancelled" else "confirmed",
            )
        )
        if kind == "foreign":
            busy.append(Interval(start, start + length))
    await session.commit()
    return busy


@pytest.mark.parametrize("calendar", [True, False], ids=["builtin-calendar", "no-calendar"])
async def test_busy_intervals_find_every_call_block_and_event(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, calendar: bool
) -> None:
    rnd = random.Random(8)
    member = await create_member(session, org, calendar=calendar)
    spans = [span for _, span in await _random_calls(session, org, member, rnd)]
    spans += await _random_calendar(session, org, member, rnd)
    for start, end in _windows(rnd, 30):
        r = await client.get(
            f"/v1/team/{member.id}/busy",
            headers=org.auth("read"),
            params={"start": isoformat_z(start), "end": isoformat_z(end)},
        )
        assert r.status_code == 200, r.text
        expected = [
            {"start": isoformat_z(s.start), "end": isoformat_z(s.end)}
            for s in _expected_busy(spans, start, end)
        ]
        assert r.json()["data"] == expected, (start, end)
