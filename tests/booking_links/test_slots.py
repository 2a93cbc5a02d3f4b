"""``GET /v1/booking-links/{id}/slots`` (SPEC §5): shape, order, local times, minimum notice,
buffers, busy time per host, DST, and the range checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.kit.time import utcnow
from tests.booking_links.helpers import (
    add_busy_block,
    create_link,
    day,
    error,
    get_slots,
    host,
    iso,
    ok,
    parse,
    patch_link,
    schedule,
    slots_response,
    spring_and_fall,
    starts,
)
from tests.factories import Org, create_lead, create_member

HALF_HOUR = timedelta(minutes=30)


def _grid(first: datetime, last: datetime, step: timedelta = HALF_HOUR) -> list[datetime]:
    out = []
    t = first
    while t <= last:
        out.append(t)
        t += step
    return out


async def _closer(session: AsyncSession, org: Org, **kw: Any) -> str:
    return (await create_member(session, org, **kw)).id


# --- shape and order -----------------------------------------------------------------------------
async def test_slots_shape_and_start_order(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = await _closer(session, org)
    link = await create_link(client, org, [host(a)])
    slots = await get_slots(client, org, link["id"], day(3), day(4))
    assert slots, "a host free 09:00–17:00 UTC every day has slots"
    for slot in slots:
        assert set(slot) == {"start", "end", "local_start"}
        assert slot["start"].endswith("Z")
        assert slot["end"].endswith("Z")
        assert parse(slot["end"]) - parse(slot["start"]) == HALF_HOUR
        assert parse(slot["local_start"]) == parse(slot["start"])
        assert slot["local_start"].endswith("+00:00")  # default time_zone UTC
    assert starts(slots) == _grid(day(3, 9), day(3, 16, 30))


async def test_slot_interval_defaults_to_duration_and_can_be_shorter(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = await _closer(session, org)
    hourly = await create_link(client, org, [host(a)], duration_minutes=60)
    assert starts(await get_slots(client, org, hourly["id"], day(3), day(4))) == _grid(
        day(3, 9), day(3, 16), timedelta(hours=1)
    )
    quarter = await create_link(
        client, org, [host(a)], duration_minutes=60, slot_interval_minutes=15
    )
    slots = await get_slots(client, org, quarter["id"], day(3), day(4))
    assert starts(slots) == _grid(day(3, 9), day(3, 16), timedelta(minutes=15))
    assert all(parse(s["end"]) - parse(s["start"]) == timedelta(hours=1) for s in slots)


async def test_range_cuts_the_grid(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """``[start, end)``: a slot starting at ``end`` is out, one starting at ``start`` is in."""
    a = await _closer(session, org)
    link = await create_link(client, org, [host(a)])
    slots = await get_slots(client, org, link["id"], day(3, 10), day(3, 12))
    assert starts(slots) == _grid(day(3, 10), day(3, 11, 30))
    # A start between grid points does not move the grid.
    slots = await get_slots(client, org, link["id"], day(3, 10, 10), day(3, 12))
    assert starts(slots) == _grid(day(3, 10, 30), day(3, 11, 30))


@pytest.mark.parametrize(
    "zone", ["America/New_York", "Asia/Kolkata", "Europe/Berlin", "Pacific/Chatham", "UTC"]
)
async def test_local_start_is_in_the_requested_zone(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, zone: str
) -> None:
    a = await _closer(session, org)
    link = await create_link(client, org, [host(a)])
    slots = await get_slots(client, org, link["id"], day(3), day(5), time_zone=zone)
    utc_only = await get_slots(client, org, link["id"], day(3), day(5))
    assert [s["start"] for s in slots] == [s["start"] for s in utc_only]
    for slot in slots:
        start = parse(slot["start"])
        local = datetime.fromisoformat(slot["local_start"])
        assert local == start
        assert local.utcoffset() == start.astimezone(ZoneInfo(zone)).utcoffset()
        assert slot["local_start"] == start.astimezone(ZoneInfo(zone)).isoformat()


async def test_local_start_offset_follows_dst_of_the_requested_zone(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """A UTC host around New York's next fall-back: the same 14:00Z slot reads 10:00-04:00
    before and 09:00-05:00 after."""
    _, fall = spring_and_fall("America/New_York")
    a = await _closer(session, org)
    link = await create_link(
        client, org, [host(a, sched=schedule("UTC", "14:00", "15:00"))], duration_minutes=60
    )
    begin = datetime.combine(fall - timedelta(days=2), time(0), UTC)
    slots = await get_slots(
        client, org, link["id"], begin, begin + timedelta(days=4), "America/New_York"
    )
    assert [s["local_start"][-6:] for s in slots] == ["-04:00", "-04:00", "-05:00", "-05:00"]
    assert [s["local_start"][11:19] for s in slots] == [
        "10:00:00",
        "10:00:00",
        "09:00:00",
        "09:00:00",
    ]


async def test_bad_time_zone_is_400(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = await _closer(session, org)
    link = await create_link(client, org, [host(a)])
    r = await slots_response(client, org, link["id"], day(3), day(4), "Mars/Olympus_Mons")
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "time_zone"


# --- schedules -----------------------------------------------------------------------------------
async def test_hosts_in_different_zones_contribute_their_own_starts(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """09:00–10:00 in Kolkata (03:30Z) and 09:00–10:00 in UTC: both grids, union."""
    kolkata, london = await _closer(session, org), await _closer(session, org)
    link = await create_link(
        client,
        org,
        [
            host(kolkata, sched=schedule("Asia/Kolkata", "09:00", "10:00")),
            host(london, sched=schedule("UTC", "09:00", "10:00")),
        ],
    )
    slots = await get_slots(client, org, link["id"], day(3), day(4), time_zone="Asia/Kolkata")
    assert starts(slots) == [day(3, 3, 30), day(3, 4), day(3, 9), day(3, 9, 30)]
    assert [s["local_start"][11:] for s in slots] == [
        "09:00:00+05:30",
        "09:30:00+05:30",
        "14:30:00+05:30",
        "15:00:00+05:30",
    ]


async def test_weekdays_and_overrides(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = await _closer(session, org)
    d3, d4, d5 = (day(n).date() for n in (3, 4, 5))
    weekday = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    sched = schedule(
        "UTC",
        "09:00",
        "11:00",
        weekdays=[weekday[d3.weekday()], weekday[d4.weekday()]],
        overrides=[
            {"date": d3.isoformat(), "intervals": []},  # day off
            {"date": d5.isoformat(), "intervals": [{"start": "13:00", "end": "14:00"}]},
        ],
    )
    link = await create_link(client, org, [host(a, sched=sched)])
    slots = await get_slots(client, org, link["id"], day(3), day(6))
    assert starts(slots) == [
        day(4, 9),
        day(4, 9, 30),
        day(4, 10),
        day(4, 10, 30),
        day(5, 13),
        day(5, 13, 30),
    ]


async def test_hosts_who_cannot_take_calls_offer_no_slots(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Any
) -> None:
    """Slots come only from active closers with a valid calendar."""
    from sqlalchemy import update

    from closerdesk.models import CalendarConnection, TeamMember

    a, b = await _closer(session, org), await _closer(session, org)
    link = await create_link(
        client, org, [host(a), host(b, sched=schedule("UTC", "12:00", "13:00"))]
    )
    async with database.writer() as s:
        await s.execute(update(TeamMember).where(TeamMember.id == a).values(is_active=False))
        await s.commit()
    assert starts(await get_slots(client, org, link["id"], day(3), day(4))) == [
        day(3, 12),
        day(3, 12, 30),
    ]
    async with database.writer() as s:
        await s.execute(
            update(CalendarConnection)
            .where(CalendarConnection.member_id == b)
            .values(status="invalid")
        )
        await s.commit()
    assert await get_slots(client, org, link["id"], day(3), day(4)) == []


# --- minimum notice ------------------------------------------------------------------------------
async def test_minimum_notice_is_honoured(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = await _closer(session, org)
    all_day = schedule("UTC", "00:00", "24:00")
    now_link = await create_link(client, org, [host(a, sched=all_day)])
    notice_link = await create_link(
        client, org, [host(a, sched=all_day)], minimum_notice_minutes=180
    )
    begin = utcnow() - timedelta(hours=1)
    end = begin + timedelta(days=1)

    before = utcnow()
    immediate = starts(await get_slots(client, org, now_link["id"], begin, end))
    noticed = starts(await get_slots(client, org, notice_link["id"], begin, end))
    after = utcnow()

    # Never a slot in the past; the first is the next half hour.
    assert immediate[0] >= before
    assert immediate[0] < after + HALF_HOUR
    # With 3 h notice: nothing before now + 3 h, and the first grid point after it is offered.
    assert noticed[0] >= before + timedelta(minutes=180)
    assert noticed[0] < after + timedelta(minutes=180) + HALF_HOUR
    assert noticed == [t for t in immediate if t >= noticed[0]]
    assert len(immediate) - len(noticed) in (6, 7)


# --- busy time -----------------------------------------------------------------------------------
async def test_a_hosts_busy_block_removes_only_that_host(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a, b = await _closer(session, org), await _closer(session, org)
    only_a = await create_link(client, org, [host(a)])
    both = await create_link(client, org, [host(a), host(b)])
    await add_busy_block(client, org, a, day(3, 10), day(3, 11))
    full_day = _grid(day(3, 9), day(3, 16, 30))
    without_block = [t for t in full_day if not day(3, 10) <= t < day(3, 11)]

    assert starts(await get_slots(client, org, only_a["id"], day(3), day(4))) == without_block
    # While one host is free, the slot stays.
    assert starts(await get_slots(client, org, both["id"], day(3), day(4))) == full_day
    # A busy block touching a slot's edge does not take it; one minute into it does.
    await add_busy_block(client, org, b, day(3, 10), day(3, 10, 31))
    assert starts(await get_slots(client, org, both["id"], day(3), day(4))) == [
        t for t in full_day if t not in (day(3, 10), day(3, 10, 30))
    ]
    # Everyone busy: the slot is gone.
    await add_busy_block(client, org, b, day(3, 9), day(3, 9, 30))
    await add_busy_block(client, org, a, day(3, 9), day(3, 9, 1))
    assert starts(await get_slots(client, org, both["id"], day(3), day(4)))[0] == day(3, 9, 30)


async def test_calls_block_their_closer_with_their_links_buffers(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """A 30-minute call at 10:00 with a 15-minute buffer after: the next slot is 11:00, and the
    new booking's own buffer keeps 09:30 out too (it would run into the call)."""
    a = await _closer(session, org)
    buffered = await create_link(client, org, [host(a)], buffer_after_minutes=15)
    plain = await create_link(client, org, [host(a)])
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead_id": lead.id,
            "booking_link_id": buffered["id"],
            "scheduled_at": iso(day(3, 10)),
        },
    )
    assert ok(r, 201)["closer_id"] == a

    around = (day(3, 9), day(3, 12))
    assert starts(await get_slots(client, org, buffered["id"], *around)) == [
        day(3, 9),
        day(3, 11),
        day(3, 11, 30),
    ]
    # Another link of the same host: the call still carries its own link's 15 minutes after.
    assert starts(await get_slots(client, org, plain["id"], *around)) == [
        day(3, 9),
        day(3, 9, 30),
        day(3, 11),
        day(3, 11, 30),
    ]


async def test_buffer_before_keeps_a_gap_before_a_call(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = await _closer(session, org)
    link = await create_link(
        client, org, [host(a)], buffer_before_minutes=15, slot_interval_minutes=15
    )
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={"lead_id": lead.id, "booking_link_id": link["id"], "scheduled_at": iso(day(3, 10))},
    )
    ok(r, 201)
    got = starts(await get_slots(client, org, link["id"], day(3, 9), day(3, 11, 30)))
    # A slot needs 15 min free before it, the call 15 min free before it:
    # 09:15 ends 09:45 = the call's buffer start → fine; 09:30 ends 10:00 but the call's buffer
    # starts 09:45 → out; after the call (10:30) the new slot's own buffer must clear 10:30.
    assert got == [day(3, 9), day(3, 9, 15), day(3, 10, 45), day(3, 11), day(3, 11, 15)]


async def test_cancelled_calls_and_other_closers_calls_do_not_block(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a, other = await _closer(session, org), await _closer(session, org)
    link = await create_link(client, org, [host(a)])
    lead = await create_lead(session, org)
    booked = ok(
        await client.post(
            "/v1/calls",
            headers=org.headers,
            json={
                "lead_id": lead.id,
                "booking_link_id": link["id"],
                "scheduled_at": iso(day(3, 10)),
            },
        ),
        201,
    )
    ok(
        await client.post(
            "/v1/calls",
            headers=org.headers,
            json={
                "lead_id": lead.id,
                "closer_id": other,
                "scheduled_at": iso(day(3, 11)),
                "duration_minutes": 60,
            },
        ),
        201,
    )
    assert day(3, 10) not in starts(await get_slots(client, org, link["id"], day(3), day(4)))
    ok(await client.post(f"/v1/calls/{booked['id']}/cancel", headers=org.headers, json={}))
    assert starts(await get_slots(client, org, link["id"], day(3), day(4))) == _grid(
        day(3, 9), day(3, 16, 30)
    )


# --- DST -----------------------------------------------------------------------------------------
def _first_slot_per_date(slots: list[dict[str, Any]], zone: str) -> dict[date, datetime]:
    out: dict[date, datetime] = {}
    for t in starts(slots):
        out.setdefault(t.astimezone(ZoneInfo(zone)).date(), t)
    return out


DST_CASES = [
    # zone, which transition, UTC of 09:00 local before, after
    ("America/New_York", "fall", 13, 14),
    ("America/New_York", "spring", 14, 13),
    ("Europe/Berlin", "fall", 7, 8),
    ("Europe/Berlin", "spring", 8, 7),
]


@pytest.mark.parametrize(("zone", "which", "before_hour", "after_hour"), DST_CASES)
async def test_dst_keeps_local_hours(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    zone: str,
    which: str,
    before_hour: int,
    after_hour: int,
) -> None:
    """A host working 09:00–17:00 local: the first slot moves by an hour in UTC on the day the
    clocks change (the next transition after today), and every day keeps its 8 hourly slots."""
    spring, fall = spring_and_fall(zone)
    transition = fall if which == "fall" else spring
    a = await _closer(session, org, time_zone=zone)
    link = await create_link(client, org, [host(a, sched=schedule(zone))], duration_minutes=60)
    begin = datetime.combine(transition - timedelta(days=3), time(0), UTC)
    end = datetime.combine(transition + timedelta(days=3), time(0), UTC)
    slots = await get_slots(client, org, link["id"], begin, end, time_zone=zone)

    firsts = _first_slot_per_date(slots, zone)
    for local_date, first in firsts.items():
        hour = before_hour if local_date < transition else after_hour
        assert first == datetime.combine(local_date, time(hour), UTC), (local_date, first)
    assert transition in firsts
    assert transition - timedelta(days=1) in firsts
    per_date: dict[date, int] = {}
    for slot in slots:
        local = datetime.fromisoformat(slot["local_start"])
        assert local.strftime("%M:%S") == "00:00"
        assert 9 <= local.hour < 17
        assert local.utcoffset() == parse(slot["start"]).astimezone(ZoneInfo(zone)).utcoffset()
        per_date[local.date()] = per_date.get(local.date(), 0) + 1
    assert all(count == 8 for count in per_date.values()), per_date


async def test_dst_nonexistent_and_repeated_hours(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """New York 01:00–04:00 on the spring-forward date lasts 2 real hours (06:00Z–08:00Z); on
    the fall-back date 01:00–03:00 lasts 3 (05:00Z–08:00Z)."""
    spring, fall = spring_and_fall("America/New_York")
    a = await _closer(session, org)
    sched = schedule(
        "America/New_York",
        weekdays=[],
        overrides=[
            {"date": spring.isoformat(), "intervals": [{"start": "01:00", "end": "04:00"}]},
            {"date": fall.isoformat(), "intervals": [{"start": "01:00", "end": "03:00"}]},
        ],
    )
    link = await create_link(client, org, [host(a, sched=sched)], duration_minutes=60)

    def utc(d: date, hour: int) -> datetime:
        return datetime.combine(d, time(hour), UTC)

    got = starts(await get_slots(client, org, link["id"], utc(spring, 0), utc(spring, 12)))
    assert got == [utc(spring, 6), utc(spring, 7)]
    got = starts(await get_slots(client, org, link["id"], utc(fall, 0), utc(fall, 12)))
    assert got == [utc(fall, 5), utc(fall, 6), utc(fall, 7)]


# --- range checks --------------------------------------------------------------------------------
async def test_range_limits(client: httpx.AsyncClient, org: Org, session: AsyncSession) -> None:
    a = await _closer(session, org)
    link = await create_link(client, org, [host(a)])
    begin = day(3)
    ok(await slots_response(client, org, link["id"], begin, begin + timedelta(days=62)))
    for end in (begin + timedelta(days=62, minutes=1), begin + timedelta(days=200)):
        body = error(
            await slots_response(client, org, link["id"], begin, end), 400, "VALIDATION_ERROR"
        )
        assert body["details"][0]["field"] == "end"
    for end in (begin, begin - timedelta(hours=1)):
        body = error(
            await slots_response(client, org, link["id"], begin, end), 400, "VALIDATION_ERROR"
        )
        assert body["details"][0]["field"] == "end"


@pytest.mark.parametrize(
    "params",
    [
        {"end": "2027-01-02T00:00:00Z"},
        {"start": "2027-01-01T00:00:00Z"},
        {"start": "2027-01-01T00:00:00", "end": "2027-01-02T00:00:00Z"},
        {"start": "tomorrow", "end": "2027-01-02T00:00:00Z"},
    ],
)
async def test_bad_range_parameters_are_400(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, params: dict[str, str]
) -> None:
    a = await _closer(session, org)
    link = await create_link(client, org, [host(a)])
    r = await client.get(
        f"/v1/booking-links/{link['id']}/slots", headers=org.headers, params=params
    )
    error(r, 400, "VALIDATION_ERROR")


async def test_offsets_in_the_range_are_normalised(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = await _closer(session, org)
    link = await create_link(client, org, [host(a)])
    start = day(3).astimezone(ZoneInfo("Asia/Tokyo")).isoformat()
    end = day(4).astimezone(ZoneInfo("America/Los_Angeles")).isoformat()
    r = await client.get(
        f"/v1/booking-links/{link['id']}/slots",
        headers=org.headers,
        params={"start": start, "end": end},
    )
    assert starts(ok(r)) == _grid(day(3, 9), day(3, 16, 30))


async def test_slots_of_unknown_or_foreign_links_are_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    foreign = await _closer(session, other_org)
    theirs = await create_link(client, other_org, [host(foreign)])
    for link_id in ("bl_doesnotexist", theirs["id"]):
        r = await slots_response(client, org, link_id, day(3), day(4))
        error(r, 404, "BOOKING_LINK_NOT_FOUND")
    assert await get_slots(client, other_org, theirs["id"], day(3), day(4))


async def test_an_inactive_link_offers_no_slots(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """Booking through an inactive link is refused, so its slots are too."""
    link = await create_link(client, org, [host(await _closer(session, org))])
    assert await get_slots(client, org, link["id"], day(3), day(4))
    ok(await patch_link(client, org, link["id"], {"is_active": False}))
    r = await slots_response(client, org, link["id"], day(3), day(4))
    error(r, 409, "BOOKING_LINK_INACTIVE")
    ok(await patch_link(client, org, link["id"], {"is_active": True}))
    assert await get_slots(client, org, link["id"], day(3), day(4))


async def test_slots_follow_the_hosts_set_by_patch(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """Slots follow the link as it is now (hosts replaced by PATCH)."""
    a, b = await _closer(session, org), await _closer(session, org)
    link = await create_link(client, org, [host(a)])
    ok(
        await patch_link(
            client, org, link["id"], {"hosts": [host(b, sched=schedule("UTC", "13:00", "14:00"))]}
        )
    )
    assert starts(await get_slots(client, org, link["id"], day(3), day(4))) == [
        day(3, 13),
        day(3, 13, 30),
    ]


async def test_spec_example_link_answers_the_spec_example_slots(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """SPEC §5's link (Mondays 09:00–17:00 New York, 45 minutes every 30) on the Monday after
    the next spring-forward (2027-03-15 as of writing): first slot 13:00Z = 09:00-04:00."""
    spring, _ = spring_and_fall("America/New_York")
    monday = spring + timedelta(days=1)
    assert monday.weekday() == 0
    a = await _closer(session, org)
    link = await create_link(
        client,
        org,
        [
            host(
                a,
                priority="high",
                sched=schedule("America/New_York", weekdays=["monday"]),
            )
        ],
        duration_minutes=45,
        minimum_notice_minutes=120,
        slot_interval_minutes=30,
        buffer_after_minutes=15,
    )
    begin = datetime.combine(monday - timedelta(days=1), time(0), UTC)
    slots = await get_slots(
        client, org, link["id"], begin, begin + timedelta(days=3), time_zone="America/New_York"
    )
    assert slots[0] == {
        "start": f"{monday}T13:00:00Z",
        "end": f"{monday}T13:45:00Z",
        "local_start": f"{monday}T09:00:00-04:00",
    }
    assert starts(slots) == _grid(
        datetime.combine(monday, time(13), UTC), datetime.combine(monday, time(20), UTC)
    )


async def test_overlapping_windows_give_each_slot_once(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = await _closer(session, org)
    windows = [("09:00", "12:00"), ("11:00", "13:00"), ("13:00", "14:00")]
    sched = {
        "time_zone": "UTC",
        "weekly": [
            {"weekday": d, "start": s, "end": e}
            for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
            for s, e in windows
        ],
    }
    link = await create_link(client, org, [host(a, sched=sched)])
    slots = await get_slots(client, org, link["id"], day(3), day(4))
    assert starts(slots) == _grid(day(3, 9), day(3, 13, 30))
