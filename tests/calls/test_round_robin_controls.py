"""Round-robin controls (docs/sales-floor.md): per-host daily and weekly caps in the host's zone,
the link's fairness period, and credit-back of cancelled and missed calls, through the API.

Links are 30-minute calls, hosts free 09:00–17:00 UTC every day; ``S`` is 10:00Z three days on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import Database
from closerdesk.models import Call
from tests.booking_links.helpers import (
    book_through_link,
    create_link,
    day,
    get_slots,
    host,
    iso,
    patch_link,
)
from tests.calls.test_round_robin import rr_closer
from tests.envelopes import error, ok
from tests.factories import Org, create_lead, create_member


def S(hour: int = 10, minute: int = 0, days: int = 3) -> datetime:
    return day(days, hour, minute)


async def _cap(client: httpx.AsyncClient, org: Org, member_id: str, **caps: int | None) -> None:
    ok(await client.patch(f"/v1/team/{member_id}", headers=org.headers, json=caps))


# --- the team API ---------------------------------------------------------------------------------
async def test_caps_are_set_read_and_cleared_on_the_team_api(
    client: httpx.AsyncClient, org: Org
) -> None:
    body = {"name": "Capped", "email": "capped@example.com", "role": "closer"}
    created = ok(
        await client.post(
            "/v1/team", headers=org.headers, json={**body, "max_bookings_per_day": 3}
        ),
        201,
    )
    assert created["max_bookings_per_day"] == 3
    assert created["max_bookings_per_week"] is None
    member_id = created["id"]
    await _cap(client, org, member_id, max_bookings_per_week=10)
    got = ok(await client.get(f"/v1/team/{member_id}", headers=org.headers))
    assert (got["max_bookings_per_day"], got["max_bookings_per_week"]) == (3, 10)
    await _cap(client, org, member_id, max_bookings_per_day=None)  # null: no cap
    got = ok(await client.get(f"/v1/team/{member_id}", headers=org.headers))
    assert (got["max_bookings_per_day"], got["max_bookings_per_week"]) == (None, 10)
    for bad in (0, -1, 2.5, "x"):
        r = await client.patch(
            f"/v1/team/{member_id}", headers=org.headers, json={"max_bookings_per_day": bad}
        )
        error(r, 400, "VALIDATION_ERROR")


async def test_fairness_period_defaults_to_month_and_is_validated(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = (await create_member(session, org)).id
    link = await create_link(client, org, [host(a)])
    assert link["fairness_period"] == "month"
    changed = ok(await patch_link(client, org, link["id"], {"fairness_period": "week"}))
    assert changed["fairness_period"] == "week"
    error(
        await patch_link(client, org, link["id"], {"fairness_period": "year"}),
        400,
        "VALIDATION_ERROR",
    )
    error(
        await patch_link(client, org, link["id"], {"fairness_period": None}),
        400,
        "VALIDATION_ERROR",
    )
    other = await create_link(client, org, [host(a)], fairness_period="rolling_30_days")
    got = ok(await client.get(f"/v1/booking-links/{other['id']}", headers=org.headers))
    assert got["fairness_period"] == "rolling_30_days"


# --- caps -----------------------------------------------------------------------------------------
async def test_daily_cap_stops_offers_and_choices_and_a_cancel_frees_it(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = (await create_member(session, org, id="user_dailya")).id
    b = (await create_member(session, org, id="user_dailyb")).id
    await _cap(client, org, a, max_bookings_per_day=1)
    link = await create_link(client, org, [host(a, weight=10_000), host(b, weight=1)])
    first = ok(await book_through_link(client, org, session, link["id"], S(10)), 201)
    assert first["closer_id"] == a  # a tie (nobody booked): the smaller id
    # A is at its cap for that day: B gets every other call of the day, however unfair.
    assert await rr_closer(client, org, session, link["id"], S(11)) == b
    assert await rr_closer(client, org, session, link["id"], S(12)) == b
    # ...but not of the next day.
    assert await rr_closer(client, org, session, link["id"], S(10, days=4)) == a
    # With B busy too at 13:00 on a capped day... give B a cap and fill it: no slot offered.
    await _cap(client, org, b, max_bookings_per_day=2)
    day_slots = await get_slots(client, org, link["id"], S(0), S(0) + timedelta(days=1))
    assert day_slots == []
    error(
        await book_through_link(client, org, session, link["id"], S(14)), 409, "SLOT_NOT_AVAILABLE"
    )
    # Cancelling A's call frees A's capacity for the day.
    ok(await client.post(f"/v1/calls/{first['id']}/cancel", headers=org.headers, json={}))
    day_slots = await get_slots(client, org, link["id"], S(0), S(0) + timedelta(days=1))
    assert iso(S(14)) in {s["start"] for s in day_slots}
    assert await rr_closer(client, org, session, link["id"], S(14)) == a


async def test_caps_count_the_hosts_local_day_and_monday_week(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    # Tokyo is UTC+9: 20:00Z and next day's 10:00Z... 14:00Z and 16:00Z are 23:00 and 01:00
    # local: two different local dates.
    tokyo = (await create_member(session, org, time_zone="Asia/Tokyo")).id
    await _cap(client, org, tokyo, max_bookings_per_day=1)
    link = await create_link(client, org, [host(tokyo)], slot_interval_minutes=60)
    assert await rr_closer(client, org, session, link["id"], S(14)) == tokyo  # 23:00 local
    assert await rr_closer(client, org, session, link["id"], S(16)) == tokyo  # 01:00 next day
    error(
        await book_through_link(client, org, session, link["id"], S(15)), 409, "SLOT_NOT_AVAILABLE"
    )
    # Weekly cap: a Monday-start week in the host's zone.
    weekly = (await create_member(session, org)).id
    await _cap(client, org, weekly, max_bookings_per_week=2)
    wlink = await create_link(client, org, [host(weekly)])
    monday = S(10, days=7) - timedelta(days=S(10, days=7).weekday())
    sunday = monday + timedelta(days=6)
    assert await rr_closer(client, org, session, wlink["id"], monday) == weekly
    assert await rr_closer(client, org, session, wlink["id"], sunday) == weekly
    wed = monday + timedelta(days=2)
    error(
        await book_through_link(client, org, session, wlink["id"], wed), 409, "SLOT_NOT_AVAILABLE"
    )
    week_start = monday.replace(hour=0)
    assert (
        await get_slots(client, org, wlink["id"], week_start, week_start + timedelta(days=7)) == []
    )
    # The next Monday opens a new week.
    assert await rr_closer(client, org, session, wlink["id"], monday + timedelta(days=7)) == weekly
    # A call the host missed does not count (credit-back).
    async with database.writer() as w:
        await w.execute(
            update(Call)
            .where(Call.closer_id == weekly, Call.scheduled_at == monday)
            .values(host_no_show=True)
        )
        await w.commit()
    assert await rr_closer(client, org, session, wlink["id"], wed) == weekly


async def test_auto_reassign_skips_a_host_at_its_cap(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a, b, c = [(await create_member(session, org)).id for _ in range(3)]
    link = await create_link(client, org, [host(a), host(b), host(c, priority="low")])
    call = ok(await book_through_link(client, org, session, link["id"], S(10)), 201)
    other = b if call["closer_id"] == a else a
    # The other high host already has its one call of the day.
    await _cap(client, org, other, max_bookings_per_day=1)
    ok(await book_through_link(client, org, session, link["id"], S(15), closer_id=other), 201)
    moved = ok(
        await client.post(f"/v1/calls/{call['id']}/auto-reassign", headers=org.headers, json={})
    )
    assert moved["new_closer_id"] == c


# --- fairness period and credit-back ------------------------------------------------------------
@pytest.mark.parametrize(
    ("period", "age", "counts"),
    [
        ("month", timedelta(days=40), False),
        ("rolling_30_days", timedelta(days=31), False),
        ("rolling_30_days", timedelta(days=29), True),
        ("week", timedelta(days=8), False),
    ],
)
async def test_the_fairness_period_decides_which_bookings_count(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    database: Database,
    period: str,
    age: timedelta,
    counts: bool,
) -> None:
    a = (await create_member(session, org, id="user_aaaa" + period[:3])).id
    b = (await create_member(session, org, id="user_bbbb" + period[:3])).id
    link = await create_link(client, org, [host(a), host(b)], fairness_period=period)
    # A's two calls were booked ``age`` ago.
    for hour in (10, 11):
        ok(await book_through_link(client, org, session, link["id"], S(hour), closer_id=a), 201)
    async with database.writer() as w:
        await w.execute(
            update(Call)
            .where(Call.closer_id == a)
            .values(created_at=datetime.now().astimezone() - age)
        )
        await w.commit()
    # Counted: A is above its share, B wins; not counted: the tie goes to B (never booked).
    # Either way B first; the second call tells them apart.
    assert await rr_closer(client, org, session, link["id"], S(13)) == b
    expected = b if counts else a
    assert await rr_closer(client, org, session, link["id"], S(14)) == expected


async def test_cancelled_and_reassigned_away_calls_do_not_count(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = (await create_member(session, org, id="user_ccca")).id
    b = (await create_member(session, org, id="user_cccb")).id
    outsider = (await create_member(session, org)).id
    link = await create_link(client, org, [host(a), host(b)])
    calls = [
        ok(await book_through_link(client, org, session, link["id"], S(h), closer_id=a), 201)
        for h in (10, 11)
    ]
    # A has 2, B 0: B is owed the next call...
    ok(await client.post(f"/v1/calls/{calls[0]['id']}/cancel", headers=org.headers, json={}))
    r = await client.post(
        f"/v1/calls/{calls[1]['id']}/reassign-closer",
        headers=org.headers,
        json={"new_closer_id": outsider},
    )
    ok(r)
    # ...but both are gone from A's count: A (0) and B (0) tie; B was never booked, A was.
    assert await rr_closer(client, org, session, link["id"], S(13)) == b
    assert await rr_closer(client, org, session, link["id"], S(14)) == a


async def test_intent_calls_do_not_count_toward_the_share(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """Round robin never places an intent call (it has no time): only booking calls count."""
    a = (await create_member(session, org, id="user_intenta")).id
    b = (await create_member(session, org, id="user_intentb")).id
    link = await create_link(client, org, [host(a), host(b)])
    lead = await create_lead(session, org)
    body = {"lead_id": lead.id, "call_kind": "intent", "booking_link_id": link["id"]}
    for _ in range(2):
        ok(await client.post("/v1/calls", headers=org.headers, json=body | {"closer_id": a}), 201)
    # A (0 bookings) and B (0) tie, neither ever booked: the smaller id.
    assert await rr_closer(client, org, session, link["id"], S(10)) == a
