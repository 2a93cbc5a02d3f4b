"""Round robin (SPEC §5): ``POST /v1/calls`` with a booking link and no closer, and
``POST /v1/calls/{id}/auto-reassign``.

Every link here is 30-minute calls, hosts free 09:00–17:00 UTC every day unless said otherwise;
``S`` is 10:00Z three days from now.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import Database
from closerdesk.kit.time import utcnow
from closerdesk.models import CalendarConnection, Call, TeamMember
from tests.booking_links.helpers import (
    add_busy_block,
    book_through_link,
    create_link,
    day,
    error,
    host,
    iso,
    ok,
    patch_link,
    schedule,
)
from tests.calls.helpers import (
    REASSIGN_RESULT_FIELDS,
    assert_link_live,
    assert_link_revoked,
    call_row,
    events_of_call,
    fetch_all,
    fetch_one,
    get_call,
    history,
    webhooks,
    webhooks_for_call,
)
from tests.factories import Org, create_call, create_lead, create_member

RACE_TIMEOUT = 120  # seconds: a deadlock fails the test instead of hanging it


def S(hour: int = 10, minute: int = 0) -> datetime:
    return day(3, hour, minute)


async def _closers(session: AsyncSession, org: Org, n: int, **kw: Any) -> list[str]:
    return [(await create_member(session, org, **kw)).id for _ in range(n)]


async def rr_closer(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, link_id: str, start: datetime
) -> str:
    call = ok(await book_through_link(client, org, session, link_id, start), 201)
    closer_id: str = call["closer_id"]
    return closer_id


async def _calls_of_link(database: Database, link_id: str) -> list[Call]:
    return list(
        await fetch_all(
            database, select(Call).where(Call.booking_link_id == link_id).order_by(Call.id)
        )
    )


# --- POST /v1/calls: who gets the call ------------------------------------------------------------
async def test_highest_priority_free_host_gets_the_call(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    low, high, medium = await _closers(session, org, 3)
    link = await create_link(
        client,
        org,
        [host(low, priority="low"), host(high, priority="high"), host(medium, priority="medium")],
    )
    got = [await rr_closer(client, org, session, link["id"], S()) for _ in range(3)]
    assert got == [high, medium, low]
    error(await book_through_link(client, org, session, link["id"], S()), 409, "SLOT_NOT_AVAILABLE")
    assert len(await _calls_of_link(database, link["id"])) == 3


async def test_a_round_robin_booking_is_a_full_booking(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)], duration_minutes=45, slot_interval_minutes=15)
    call = ok(await book_through_link(client, org, session, link["id"], S(10, 15)), 201)
    # The duration defaults to the link's.
    assert call["duration_minutes"] == 45
    assert call["scheduled_at"] == iso(S(10, 15))
    assert call["booking_link_id"] == link["id"]
    assert call["closer_id"] == a
    assert call["status"] == "scheduled"
    assert call["call_kind"] == "booking"
    await assert_link_live(client, call["conferencing_link"])
    [event] = await events_of_call(database, call["id"])
    assert event.id == call["calendar_event_id"]
    assert (event.starts_at, event.ends_at) == (S(10, 15), S(11))
    row = await fetch_one(database, select(TeamMember).where(TeamMember.id == a))
    assert row.last_booked_at is not None
    assert row.last_booked_at > utcnow() - timedelta(minutes=5)


async def test_a_busy_high_priority_host_is_skipped(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    high, medium = await _closers(session, org, 2)
    link = await create_link(
        client, org, [host(high, priority="high"), host(medium, priority="medium")]
    )
    await add_busy_block(client, org, high, S(10), S(10, 30))
    assert await rr_closer(client, org, session, link["id"], S(10)) == medium
    assert await rr_closer(client, org, session, link["id"], S(11)) == high


async def test_a_high_priority_host_outside_its_hours_is_skipped(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    high, low = await _closers(session, org, 2)
    link = await create_link(
        client,
        org,
        [
            host(high, priority="high", sched=schedule("UTC", "13:00", "17:00")),
            host(low, priority="low"),
        ],
    )
    assert await rr_closer(client, org, session, link["id"], S(10)) == low
    assert await rr_closer(client, org, session, link["id"], S(13)) == high


async def test_the_weighted_share_decides_by_the_quota_method(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """Weights 300 : 100 and bookings 2 : 1 this month. With the next call counted (4) the light
    host's share is 1, which it holds: only the heavy host may take it, although it has more
    bookings. Then (3 : 1, shares of 5 are 3.75 and 1.25) both may, and the heavy host's
    300 / (3 + 1) beats the light host's 100 / (1 + 1) (docs/api.md "Round robin")."""
    heavy, light = await _closers(session, org, 2)
    link = await create_link(
        client,
        org,
        [host(light, priority="high", weight=100), host(heavy, priority="high", weight=300)],
    )
    lead = await create_lead(session, org)
    members = {m.id: m for m in await fetch_all(database, select(TeamMember))}
    for i, closer in enumerate([heavy, heavy, light]):
        await create_call(
            session, org, lead=lead, closer=members[closer], scheduled_at=day(10 + i, 9),
            booking_link_id=link["id"],
        )  # fmt: skip
    assert await rr_closer(client, org, session, link["id"], S(10)) == heavy
    assert await rr_closer(client, org, session, link["id"], S(11)) == heavy
    # 4 : 1, shares of 6 are 4.5 and 1.5: 300 / 5 = 60 against 100 / 2 = 50: heavy again;
    # 5 : 1, shares of 7 are 5.25 and 1.75: heavy 5 < 5.25 may, 300 / 6 = 50 against 50, a tie
    # the least recently booked (light) wins.
    assert await rr_closer(client, org, session, link["id"], S(12)) == heavy
    assert await rr_closer(client, org, session, link["id"], S(13)) == light


async def test_only_this_months_active_calls_of_this_link_count(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    a, b = await _closers(session, org, 2)
    link = await create_link(client, org, [host(a), host(b)])
    other_link = await create_link(client, org, [host(a), host(b)])
    lead = await create_lead(session, org)
    members = {m.id: m for m in await fetch_all(database, select(TeamMember))}
    now = utcnow()
    last_month = datetime(now.year, now.month, 1, tzinfo=UTC) - timedelta(days=1)
    # a: one call of this link this month.
    await create_call(
        session,
        org,
        lead=lead,
        closer=members[a],
        scheduled_at=day(20, 9),
        booking_link_id=link["id"],
    )
    # b: more calls, none of which count.
    for i in range(3):
        await create_call(
            session, org, lead=lead, closer=members[b], scheduled_at=day(21 + i, 9),
            booking_link_id=link["id"], created_at=last_month,
        )  # fmt: skip
        await create_call(
            session, org, lead=lead, closer=members[b], scheduled_at=day(21 + i, 10),
            booking_link_id=link["id"], status="cancelled",
        )  # fmt: skip
        await create_call(
            session, org, lead=lead, closer=members[b], scheduled_at=day(21 + i, 11),
            booking_link_id=other_link["id"],
        )  # fmt: skip
    assert await rr_closer(client, org, session, link["id"], S()) == b


async def test_ties_go_to_the_least_recently_booked(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    now = utcnow()
    yesterday = (await create_member(session, org, last_booked_at=now - timedelta(days=1))).id
    two_days = (await create_member(session, org, last_booked_at=now - timedelta(days=2))).id
    [never] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(yesterday), host(two_days), host(never)])
    got = [await rr_closer(client, org, session, link["id"], S(h)) for h in (9, 10, 11, 12, 13, 14)]
    # never booked first; then equal shares rotate by who waited longest.
    assert got == [never, two_days, yesterday, never, two_days, yesterday]


async def test_a_fixed_link_books_its_host(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)], assignment="fixed")
    assert await rr_closer(client, org, session, link["id"], S()) == a
    error(await book_through_link(client, org, session, link["id"], S()), 409, "SLOT_NOT_AVAILABLE")


async def test_an_explicit_longer_duration_does_not_double_book(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """A 60-minute booking through a 30-minute link must not overlap the host's 10:30 call."""
    high, low = await _closers(session, org, 2)
    link = await create_link(client, org, [host(high, priority="high"), host(low, priority="low")])
    assert await rr_closer(client, org, session, link["id"], S(10, 30)) == high
    call = ok(
        await book_through_link(client, org, session, link["id"], S(10), duration_minutes=60), 201
    )
    assert call["closer_id"] == low
    assert call["duration_minutes"] == 60
    assert call["scheduled_at"] == iso(S(10))
    # Nobody is left for a third 60-minute call at 10:00.
    error(
        await book_through_link(client, org, session, link["id"], S(10), duration_minutes=60),
        409,
        "SLOT_NOT_AVAILABLE",
    )


# --- POST /v1/calls: refusals ---------------------------------------------------------------------
@pytest.mark.parametrize("case", ["off_grid", "outside_hours", "everyone_busy", "minimum_notice"])
async def test_a_slot_not_offered_is_409(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database, case: str
) -> None:
    a, b = await _closers(session, org, 2)
    notice = 5 * 24 * 60 if case == "minimum_notice" else 0
    link = await create_link(client, org, [host(a), host(b)], minimum_notice_minutes=notice)
    start = S()
    if case == "off_grid":
        start = S(10, 10)
    elif case == "outside_hours":
        start = S(20)
    elif case == "everyone_busy":
        await add_busy_block(client, org, a, S(9, 45), S(10, 15))
        await add_busy_block(client, org, b, S(10, 29), S(11))
    error(
        await book_through_link(client, org, session, link["id"], start), 409, "SLOT_NOT_AVAILABLE"
    )
    assert await _calls_of_link(database, link["id"]) == []
    assert await webhooks(database, org, "call.booked") == []


async def test_a_slot_in_the_past_is_400(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    error(
        await book_through_link(client, org, session, link["id"], day(-1, 10)), 400, "SLOT_IN_PAST"
    )


async def test_an_inactive_link_is_409(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    ok(await patch_link(client, org, link["id"], {"is_active": False}))
    error(
        await book_through_link(client, org, session, link["id"], S()), 409, "BOOKING_LINK_INACTIVE"
    )
    r = await book_through_link(
        client, org, session, link["id"], S(), closer_id=a, duration_minutes=30
    )
    error(r, 409, "BOOKING_LINK_INACTIVE")
    assert await _calls_of_link(database, link["id"]) == []
    ok(await patch_link(client, org, link["id"], {"is_active": True}))
    assert await rr_closer(client, org, session, link["id"], S()) == a


async def test_an_unknown_or_foreign_link_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    [theirs] = await _closers(session, other_org, 1)
    foreign = await create_link(client, other_org, [host(theirs)])
    for link_id in ("bl_doesnotexist", foreign["id"]):
        error(
            await book_through_link(client, org, session, link_id, S()),
            404,
            "BOOKING_LINK_NOT_FOUND",
        )


# --- the call.booked webhook says how the closer was chosen ---------------------------------------
async def test_call_booked_webhook_carries_the_assignment(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    a, b = await _closers(session, org, 2)
    link = await create_link(client, org, [host(a), host(b)])
    by_rr = ok(await book_through_link(client, org, session, link["id"], S(10)), 201)
    manual_with_link = ok(
        await book_through_link(
            client, org, session, link["id"], S(11), closer_id=b, duration_minutes=30
        ),
        201,
    )
    lead = await create_lead(session, org)
    manual = ok(
        await client.post(
            "/v1/calls",
            headers=org.headers,
            json={
                "lead_id": lead.id,
                "closer_id": a,
                "scheduled_at": iso(S(12)),
                "duration_minutes": 30,
            },
        ),
        201,
    )
    assert manual_with_link["closer_id"] == b
    assert manual_with_link["booking_link_id"] == link["id"]
    for call, expected in (
        (by_rr, "round_robin"),
        (manual_with_link, "manual"),
        (manual, "manual"),
    ):
        [row] = await webhooks_for_call(database, org, "call.booked", call["id"])
        assert row.payload["event"] == "call.booked"
        assert row.payload["data"]["assignment"] == expected
        assert row.payload["data"]["call"]["closer_id"] == call["closer_id"]


# --- concurrency ----------------------------------------------------------------------------------
async def test_ten_simultaneous_bookings_of_one_slot_fill_three_hosts(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """Exactly one booking per host; the rest 409. On PostgreSQL the free hosts are row-locked
    in id order, so overlapping lock sets cannot deadlock (a deadlock would be a 500 or hang)."""
    hosts = await _closers(session, org, 3)
    link = await create_link(
        client,
        org,
        [host(hosts[0], priority="high"), host(hosts[1]), host(hosts[2], priority="low")],
    )
    leads = [await create_lead(session, org) for _ in range(10)]
    bodies = [
        {"lead_id": lead.id, "booking_link_id": link["id"], "scheduled_at": iso(S())}
        for lead in leads
    ]
    responses = await asyncio.wait_for(
        asyncio.gather(*(client.post("/v1/calls", headers=org.headers, json=b) for b in bodies)),
        RACE_TIMEOUT,
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 3, 409: 7}, [r.text for r in responses]
    for r in responses:
        if r.status_code == 409:
            error(r, 409, "SLOT_NOT_AVAILABLE")
    winners = [r.json()["data"]["closer_id"] for r in responses if r.status_code == 201]
    assert sorted(winners) == sorted(hosts)
    rows = await _calls_of_link(database, link["id"])
    assert sorted(c.closer_id for c in rows if c.status != "cancelled") == sorted(hosts)
    assert len(await webhooks(database, org, "call.booked")) == 3
    # And every winner has exactly one live calendar event.
    for row in rows:
        events = await events_of_call(database, row.id)
        assert [e.status for e in events] == ["confirmed"]


# --- POST /v1/calls/{id}/auto-reassign ------------------------------------------------------------
async def auto_reassign(
    client: httpx.AsyncClient, org: Org, call_id: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    url = f"/v1/calls/{call_id}/auto-reassign"
    if body is None:
        return await client.post(url, headers=org.headers)
    return await client.post(url, headers=org.headers, json=body)


async def _three_host_link(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, **extra: Any
) -> tuple[dict[str, Any], list[str]]:
    """A link with hosts high, medium, low (in that order in the list returned)."""
    hosts = await _closers(session, org, 3)
    link = await create_link(
        client,
        org,
        [
            host(hosts[0], priority="high"),
            host(hosts[1], priority="medium"),
            host(hosts[2], priority="low"),
        ],
        **extra,
    )
    return link, hosts


async def test_auto_reassign_moves_the_call_to_the_next_host(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    link, (high, medium, _low) = await _three_host_link(client, org, session)
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    assert call["closer_id"] == high
    old_link, old_event = call["conferencing_link"], call["calendar_event_id"]

    result = ok(await auto_reassign(client, org, call["id"], {"reason": "Closer out sick"}))
    assert set(result) == REASSIGN_RESULT_FIELDS
    assert result["call_id"] == call["id"]
    assert result["previous_closer_id"] == high
    assert result["new_closer_id"] == medium
    assert result["old_event_orphaned"] is False
    assert result["new_event_id"] != old_event
    assert result["conferencing_link"] != old_link

    after = await get_call(client, org, call["id"])
    assert after["closer_id"] == medium
    assert after["calendar_event_id"] == result["new_event_id"]
    assert after["conferencing_link"] == result["conferencing_link"]
    assert (after["scheduled_at"], after["duration_minutes"]) == (call["scheduled_at"], 30)
    await assert_link_revoked(client, old_link)
    await assert_link_live(client, result["conferencing_link"])
    events = {e.id: e for e in await events_of_call(database, call["id"])}
    assert events[old_event].status == "cancelled"
    assert events[result["new_event_id"]].status == "confirmed"

    [hook] = await webhooks_for_call(database, org, "call.closer_reassigned", call["id"])
    data = hook.payload["data"]
    assert data["assignment"] == "round_robin"
    assert data["reason"] == "Closer out sick"
    assert data["previous_closer_id"] == high
    assert data["new_closer_id"] == medium
    entries = [
        e for e in await history(client, org, call["id"]) if e["type"] == "closer_reassigned"
    ]
    assert len(entries) == 1
    assert entries[0]["reason"] == "Closer out sick"


async def test_auto_reassign_without_a_body(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    link, (high, medium, _low) = await _three_host_link(client, org, session)
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    result = ok(await auto_reassign(client, org, call["id"]))
    assert result["new_closer_id"] == medium
    [hook] = await webhooks_for_call(database, org, "call.closer_reassigned", call["id"])
    assert hook.payload["data"]["reason"] is None
    # Again: the first closer is a candidate once more, and has the higher priority.
    assert ok(await auto_reassign(client, org, call["id"], {}))["new_closer_id"] == high


async def test_auto_reassign_skips_busy_hosts(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    link, (high, medium, low) = await _three_host_link(client, org, session)
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    await add_busy_block(client, org, medium, S(10, 29), S(10, 40))
    result = ok(await auto_reassign(client, org, call["id"]))
    assert (result["previous_closer_id"], result["new_closer_id"]) == (high, low)


async def test_auto_reassign_respects_availability(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    high, medium, low = await _closers(session, org, 3)
    link = await create_link(
        client,
        org,
        [
            host(high, priority="high"),
            host(medium, priority="medium", sched=schedule("UTC", "10:15", "17:00")),
            host(low, priority="low"),
        ],
    )
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    assert ok(await auto_reassign(client, org, call["id"]))["new_closer_id"] == low


async def test_auto_reassign_respects_other_calls_and_buffers(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """The medium host's 10:30 call leaves no room for the link's 15 minutes after 10:00–10:30."""
    link, (_high, medium, low) = await _three_host_link(
        client, org, session, buffer_after_minutes=15
    )
    call = ok(await book_through_link(client, org, session, link["id"], S(10)), 201)
    lead = await create_lead(session, org)
    ok(
        await client.post(
            "/v1/calls",
            headers=org.headers,
            json={
                "lead_id": lead.id,
                "closer_id": medium,
                "scheduled_at": iso(S(10, 30)),
                "duration_minutes": 30,
            },
        ),
        201,
    )
    assert ok(await auto_reassign(client, org, call["id"]))["new_closer_id"] == low


async def test_auto_reassign_ranks_by_bookings(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """Between two free hosts of one priority, the one with fewer bookings this month wins."""
    a, b, c = await _closers(session, org, 3)
    link = await create_link(client, org, [host(a, priority="high"), host(b), host(c)])
    # b gets one booking elsewhere in time, then a call at S goes to a.
    ok(
        await book_through_link(
            client, org, session, link["id"], S(15), closer_id=b, duration_minutes=30
        ),
        201,
    )
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    assert call["closer_id"] == a
    assert ok(await auto_reassign(client, org, call["id"]))["new_closer_id"] == c


async def test_auto_reassign_keeps_an_off_grid_time(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """A call booked by hand at 10:10 through the link is not on the slot grid; it can still be
    given to another host free for the whole call."""
    a, b = await _closers(session, org, 2)
    link = await create_link(client, org, [host(a), host(b)])
    call = ok(
        await book_through_link(
            client, org, session, link["id"], S(10, 10), closer_id=a, duration_minutes=30
        ),
        201,
    )
    result = ok(await auto_reassign(client, org, call["id"]))
    assert result["new_closer_id"] == b
    assert (await get_call(client, org, call["id"]))["scheduled_at"] == iso(S(10, 10))


async def test_no_host_available_is_409_and_changes_nothing(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    link, (_high, medium, low) = await _three_host_link(client, org, session)
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    await add_busy_block(client, org, medium, S(9), S(12))
    await add_busy_block(client, org, low, S(10), S(10, 1))
    before = await get_call(client, org, call["id"])
    error(await auto_reassign(client, org, call["id"], {"reason": "x"}), 409, "NO_HOST_AVAILABLE")
    assert await get_call(client, org, call["id"]) == before
    assert await webhooks(database, org, "call.closer_reassigned") == []
    await assert_link_live(client, call["conferencing_link"])
    assert [e.status for e in await events_of_call(database, call["id"])] == ["confirmed"]


async def test_a_single_host_link_has_no_one_to_reassign_to(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a, _other_closer = await _closers(session, org, 2)
    link = await create_link(client, org, [host(a)])
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    # Closers outside the link are not candidates for a call booked through it.
    error(await auto_reassign(client, org, call["id"]), 409, "NO_HOST_AVAILABLE")


async def test_hosts_who_cannot_take_calls_are_not_candidates(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    link, (high, medium, low) = await _three_host_link(client, org, session)
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    async with database.writer() as s:
        await s.execute(update(TeamMember).where(TeamMember.id == medium).values(is_active=False))
        await s.execute(
            update(CalendarConnection)
            .where(CalendarConnection.member_id == low)
            .values(status="invalid")
        )
        await s.commit()
    error(await auto_reassign(client, org, call["id"]), 409, "NO_HOST_AVAILABLE")
    assert (await call_row(database, call["id"])).closer_id == high


async def test_a_call_without_a_link_goes_to_any_ready_closer(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    current = await create_member(session, org)
    await create_member(session, org, calendar_status="invalid")
    await create_member(session, org, calendar=False)
    await create_member(session, org, is_active=False)
    await create_member(session, org, role="setter")
    ready = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=current, scheduled_at=S(20))
    result = ok(await auto_reassign(client, org, call.id, {"reason": "vacation"}))
    assert (result["previous_closer_id"], result["new_closer_id"]) == (current.id, ready.id)
    [hook] = await webhooks_for_call(database, org, "call.closer_reassigned", call.id)
    assert hook.payload["data"]["assignment"] == "round_robin"
    # The only other ready closer now has it; the first one is free again and takes it back.
    assert ok(await auto_reassign(client, org, call.id))["new_closer_id"] == current.id


async def test_a_call_without_a_link_skips_busy_closers(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    current = await create_member(session, org)
    busy = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=current, scheduled_at=S(20))
    await create_call(session, org, lead=lead, closer=busy, scheduled_at=S(20, 30))
    error(await auto_reassign(client, org, call.id), 409, "NO_HOST_AVAILABLE")


async def test_auto_reassign_spec_checks(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    closer, _spare = await create_member(session, org), await create_member(session, org)
    lead = await create_lead(session, org)
    error(await auto_reassign(client, org, "call_missing"), 404, "CALL_NOT_FOUND")
    their_closer = await create_member(session, other_org)
    await create_member(session, other_org)
    their_lead = await create_lead(session, other_org)
    theirs = await create_call(session, other_org, lead=their_lead, closer=their_closer)
    error(await auto_reassign(client, org, theirs.id), 404, "CALL_NOT_FOUND")
    intent = await create_call(session, org, lead=lead, closer=None, call_kind="intent")
    error(await auto_reassign(client, org, intent.id), 409, "CALL_NOT_REASSIGNABLE")
    cancelled = await create_call(session, org, lead=lead, closer=closer, status="cancelled")
    error(await auto_reassign(client, org, cancelled.id), 409, "CALL_CANCELLED")
    gone = await create_call(session, org, lead=lead, closer=closer, scheduled_at=day(-1, 10))
    error(await auto_reassign(client, org, gone.id), 409, "CALL_IN_PAST")
    r = await auto_reassign(client, org, gone.id, {"reason": "x" * 5000})
    error(r, 400, "VALIDATION_ERROR")
    r = await client.post(f"/v1/calls/{gone.id}/auto-reassign", headers=org.auth("read"), json={})
    assert r.status_code == 403, r.text


async def test_concurrent_auto_reassigns_never_double_book(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """Two calls at S (hosts a and c) both ask for another host; b is the only one free at
    first. Whatever the interleaving, no closer ends up with two calls at S."""
    a, b, c = await _closers(session, org, 3)
    link = await create_link(
        client, org, [host(a, priority="high"), host(b), host(c, priority="low")]
    )
    first = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    second = ok(
        await book_through_link(
            client, org, session, link["id"], S(), closer_id=c, duration_minutes=30
        ),
        201,
    )
    await add_busy_block(client, org, b, S(15), S(16))  # b is free at S
    responses = await asyncio.wait_for(
        asyncio.gather(
            auto_reassign(client, org, first["id"]), auto_reassign(client, org, second["id"])
        ),
        RACE_TIMEOUT,
    )
    assert all(r.status_code in (200, 409) for r in responses), [r.text for r in responses]
    assert any(r.status_code == 200 for r in responses), [r.text for r in responses]
    for r in responses:
        if r.status_code == 409:
            error(r, 409, "NO_HOST_AVAILABLE")
    rows = await _calls_of_link(database, link["id"])
    closers = [row.closer_id for row in rows if row.status != "cancelled"]
    assert len(closers) == len(set(closers)) == 2, closers
