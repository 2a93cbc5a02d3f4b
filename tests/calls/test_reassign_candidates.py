"""``GET /v1/calls/{id}/reassign-candidates`` (docs/sales-floor.md "Reassign candidates"): every
reason code, the order and rank, the call-level checks, and a bounded number of queries.

Links are 30-minute calls, hosts free 09:00–17:00 UTC every day; ``S`` is 10:00Z three days on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import Database
from tests.booking_links.helpers import (
    add_busy_block,
    book_through_link,
    create_link,
    day,
    host,
    iso,
    schedule,
)
from tests.envelopes import error, ok
from tests.factories import Org, create_call, create_lead, create_member


def S(hour: int = 10, minute: int = 0) -> datetime:
    return day(3, hour, minute)


async def candidates(client: httpx.AsyncClient, org: Org, call_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/calls/{call_id}/reassign-candidates", headers=org.auth("read"))
    data: list[dict[str, Any]] = ok(r)
    return data


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["member_id"]: r for r in rows}


async def test_every_reason_code_and_the_round_robin_order(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    mk = create_member
    current = (await mk(session, org, id="user_c0", name="Current")).id
    first = (await mk(session, org, id="user_c1", name="Zed")).id  # never booked
    second = (await mk(session, org, id="user_c2", name="Yan")).id
    busy = (await mk(session, org, id="user_c3", name="Busy")).id
    cal_busy = (await mk(session, org, id="user_c4", name="Cal")).id
    nocal = (await mk(session, org, id="user_c5", name="Nocal", calendar=False)).id
    off = (await mk(session, org, id="user_c6", name="Off")).id
    capped = (await mk(session, org, id="user_c7", name="Capped", max_bookings_per_day=1)).id
    outsider = (await mk(session, org, id="user_c8", name="Aaron")).id
    await mk(session, org, id="user_c9", name="Setter", role="setter")
    await mk(session, org, id="user_ca", name="Gone", is_active=False)
    hosts = [current, first, second, busy, cal_busy, nocal, capped]
    link = await create_link(
        client,
        org,
        [host(h) for h in hosts] + [host(off, sched=schedule(start="12:00", end="17:00"))],
    )
    call = ok(
        await book_through_link(client, org, session, link["id"], S(10), closer_id=current), 201
    )
    # second has an earlier call on another day: same share... counted, so first ranks ahead.
    ok(
        await book_through_link(
            client, org, session, link["id"], S(15) + timedelta(days=1), closer_id=second
        ),
        201,
    )
    lead = await create_lead(session, org)
    clash = await create_call(
        session,
        org,
        lead=lead,
        closer=await _member(session, org, busy),
        scheduled_at=S(10, 15),
        duration_minutes=30,
    )
    await add_busy_block(client, org, cal_busy, S(9, 45), S(10, 5))
    ok(await book_through_link(client, org, session, link["id"], S(14), closer_id=capped), 201)

    rows = await candidates(client, org, call["id"])
    got = by_id(rows)
    assert set(got) == {current, first, second, busy, cal_busy, nocal, off, capped, outsider}
    assert got[current]["reasons"] == ["SAME_CLOSER"]
    assert got[busy]["reasons"] == ["CLOSER_CONFLICT"]
    assert got[busy]["conflicts"] == [
        {"start": iso(S(10, 15)), "end": iso(S(10, 45)), "source": "call", "call_id": clash.id}
    ]
    assert got[cal_busy]["reasons"] == ["CLOSER_CONFLICT"]
    assert got[cal_busy]["conflicts"] == [
        {"start": iso(S(9, 45)), "end": iso(S(10, 5)), "source": "calendar", "call_id": None}
    ]
    assert got[nocal]["reasons"] == ["CALENDAR_NOT_CONNECTED"]
    assert got[off]["reasons"] == ["OUTSIDE_AVAILABILITY"]
    assert got[capped]["reasons"] == ["CAP_REACHED"]
    assert got[outsider]["reasons"] == ["NOT_A_HOST"]
    for member_id in (first, second):
        assert got[member_id]["reasons"] == []
        assert got[member_id]["available"] is True
    assert all(not r["available"] for r in rows if r["reasons"])
    # Ranked hosts first (round robin: first has no booking, second one), then the other hosts
    # in the link's order, then the non-hosts.
    assert [r["member_id"] for r in rows] == [
        first,
        second,
        current,
        busy,
        cal_busy,
        nocal,
        capped,
        off,
        outsider,
    ]
    assert [r["rank"] for r in rows] == [1, 2] + [None] * 7
    assert got[second]["period_bookings"] == 1
    assert got[current]["period_bookings"] == 1
    assert got[capped]["period_bookings"] == 1
    assert got[first]["period_bookings"] == 0
    assert got[first]["name"] == "Zed"


async def _member(session: AsyncSession, org: Org, member_id: str) -> Any:
    from closerdesk.calls import repository

    return await repository.get_member(session, org.id, member_id)


async def test_a_call_without_link_ranks_every_closer(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a = await create_member(session, org, id="user_na", name="B-name")
    b = await create_member(session, org, id="user_nb", name="A-name")
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=a, scheduled_at=S(10))
    rows = await candidates(client, org, call.id)
    assert [(r["member_id"], r["rank"], r["reasons"]) for r in rows] == [
        (b.id, 1, []),
        (a.id, None, ["SAME_CLOSER"]),
    ]


async def test_call_level_checks_and_other_organizations(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    a = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=a, scheduled_at=S(10))
    r = await client.get(f"/v1/calls/{call.id}/reassign-candidates", headers=other_org.headers)
    error(r, 404, "CALL_NOT_FOUND")
    intent = await create_call(
        session, org, lead=lead, closer=a, call_kind="intent", scheduled_at=None, with_event=False
    )
    r = await client.get(f"/v1/calls/{intent.id}/reassign-candidates", headers=org.headers)
    error(r, 409, "CALL_NOT_REASSIGNABLE")
    past = await create_call(session, org, lead=lead, closer=a, scheduled_at=day(-1, 10))
    r = await client.get(f"/v1/calls/{past.id}/reassign-candidates", headers=org.headers)
    error(r, 409, "CALL_IN_PAST")
    ok(await client.post(f"/v1/calls/{call.id}/cancel", headers=org.headers, json={}))
    r = await client.get(f"/v1/calls/{call.id}/reassign-candidates", headers=org.headers)
    error(r, 409, "CALL_CANCELLED")


@pytest.mark.parametrize("closers", [10, 50])
async def test_a_bounded_number_of_queries(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database, closers: int
) -> None:
    members = [await create_member(session, org) for _ in range(closers)]
    link = await create_link(client, org, [host(m.id) for m in members[: closers // 2]])
    call = ok(await book_through_link(client, org, session, link["id"], S(10)), 201)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        await candidates(client, org, call["id"])
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    print(f"reassign-candidates, {closers} closers: {len(statements)} statements")  # noqa: T201
    assert len(statements) <= 16


async def test_a_closer_holding_a_reservation_at_that_time_has_a_conflict(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """The same holds as reassign's conflict check: a live slot reservation is one, even for a
    closer outside the call's link (sales-floor.md, "Slot reservations")."""
    current = await create_member(session, org)
    holder = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=current, scheduled_at=S(10))
    other_link = await create_link(client, org, [host(holder.id)])
    held = ok(
        await client.post(
            f"/v1/booking-links/{other_link['id']}/reservations",
            headers=org.headers,
            json={"start": iso(S(10))},
        ),
        201,
    )
    got = by_id(await candidates(client, org, call.id))
    assert got[holder.id]["reasons"] == ["CLOSER_CONFLICT"]
    assert got[holder.id]["conflicts"] == [
        {"start": held["start"], "end": held["end"], "source": "reservation", "call_id": None}
    ]
    reassign = await client.post(
        f"/v1/calls/{call.id}/reassign-closer",
        headers=org.headers,
        json={"new_closer_id": holder.id},
    )
    error(reassign, 409, "CLOSER_CONFLICT")


async def test_a_live_hold_fills_a_cap_and_counts_in_the_share(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """A reservation counts like the call it may become (sales-floor.md, "Round-robin
    controls"): against the host's cap on its day, and in its share of the link."""
    current = await create_member(session, org)
    capped = await create_member(session, org, max_bookings_per_day=1)
    link = await create_link(client, org, [host(current.id), host(capped.id)])
    call = ok(
        await book_through_link(client, org, session, link["id"], S(10), closer_id=current.id), 201
    )
    ok(
        await client.post(
            f"/v1/booking-links/{link['id']}/reservations",
            headers=org.headers,
            json={"start": iso(S(14))},
        ),
        201,
    )  # ``capped`` has no booking yet: round robin holds it
    got = by_id(await candidates(client, org, call["id"]))
    assert got[capped.id]["reasons"] == ["CAP_REACHED"]
    assert got[capped.id]["period_bookings"] == 1
