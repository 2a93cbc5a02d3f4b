"""Slot reservations (docs/sales-floor.md, "Slot reservations"): hold an offered slot, book it
with ``reservation_id``, release it; a live hold is busy time for its host.

Every link here is 30-minute calls, hosts free 09:00–17:00 UTC every day; ``S`` is 10:00Z three
days from now. Expiry is set by writing ``expires_at`` in the past.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.app import create_app
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.time import utcnow
from closerdesk.models import Call, SlotReservation
from closerdesk.providers import Providers
from closerdesk.retention import prune
from tests.booking_links.helpers import (
    book_through_link,
    create_link,
    day,
    error,
    get_slots,
    host,
    iso,
    ok,
    parse,
    patch_link,
    starts,
)
from tests.calls.helpers import fetch_all, fetch_one, webhooks_for_call
from tests.factories import Org, create_lead, create_member

N = 20
RACE_TIMEOUT = 120  # seconds: a deadlock fails the test instead of hanging it


def S(hour: int = 10, minute: int = 0) -> datetime:
    return day(3, hour, minute)


async def _closers(session: AsyncSession, org: Org, n: int) -> list[str]:
    return [(await create_member(session, org)).id for _ in range(n)]


def _reserve(
    client: httpx.AsyncClient, org: Org, link_id: str, start: datetime, **extra: Any
) -> Any:
    return client.post(
        f"/v1/booking-links/{link_id}/reservations",
        headers=org.headers,
        json={"start": iso(start), **extra},
    )


async def reserve(
    client: httpx.AsyncClient, org: Org, link_id: str, start: datetime
) -> dict[str, Any]:
    data: dict[str, Any] = ok(await _reserve(client, org, link_id, start), 201)
    return data


def _release(client: httpx.AsyncClient, org: Org, link_id: str, rid: str) -> Any:
    return client.delete(f"/v1/booking-links/{link_id}/reservations/{rid}", headers=org.headers)


async def _row(database: Database, rid: str) -> SlotReservation | None:
    found: SlotReservation | None = await fetch_one(
        database, select(SlotReservation).where(SlotReservation.id == rid)
    )
    return found


async def _expire(database: Database, rid: str) -> None:
    async with database.writer() as s:
        await s.execute(
            update(SlotReservation)
            .where(SlotReservation.id == rid)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await s.commit()


async def _offered(client: httpx.AsyncClient, org: Org, link_id: str) -> list[datetime]:
    return starts(await get_slots(client, org, link_id, S(9), S(12)))


# --- POST /v1/booking-links/{id}/reservations ----------------------------------------------------
async def test_a_reservation_holds_the_slot_for_five_minutes_without_naming_the_host(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    before = utcnow()
    held = await reserve(client, org, link["id"], S())
    assert set(held) == {"id", "booking_link_id", "start", "end", "expires_at"}
    assert held["id"].startswith("rsv_")
    assert (held["booking_link_id"], held["start"], held["end"]) == (
        link["id"],
        iso(S()),
        iso(S(10, 30)),
    )
    expires = parse(held["expires_at"])
    assert before + timedelta(minutes=5) <= expires <= utcnow() + timedelta(minutes=5)
    row = await _row(database, held["id"])
    assert row is not None
    assert (row.member_id, row.call_id) == (a, None)


async def test_the_hold_lasts_the_reservation_minutes_setting(
    settings: Settings, database: Database, providers: Providers, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    app = create_app(
        settings.model_copy(update={"reservation_minutes": 12}),
        database=database,
        providers=providers,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        link = await create_link(client, org, [host(a)])
        before = utcnow()
        held = await reserve(client, org, link["id"], S())
    expires = parse(held["expires_at"])
    assert before + timedelta(minutes=12) <= expires <= utcnow() + timedelta(minutes=12)


async def test_only_an_offered_future_slot_of_an_active_link_can_be_held(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    error(await _reserve(client, org, link["id"], S(10, 10)), 409, "SLOT_NOT_AVAILABLE")  # off grid
    error(await _reserve(client, org, link["id"], S(18)), 409, "SLOT_NOT_AVAILABLE")  # after hours
    error(await _reserve(client, org, link["id"], day(-1, 10)), 400, "SLOT_IN_PAST")
    error(await _reserve(client, org, "bl_missing", S()), 404, "BOOKING_LINK_NOT_FOUND")
    ok(await patch_link(client, org, link["id"], {"is_active": False}))
    error(await _reserve(client, org, link["id"], S()), 409, "BOOKING_LINK_INACTIVE")


async def test_reserving_needs_the_write_scope(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    r = await client.post(
        f"/v1/booking-links/{link['id']}/reservations",
        headers=org.auth("read"),
        json={"start": iso(S())},
    )
    error(r, 403, "FORBIDDEN")
    r = await client.post(
        f"/v1/booking-links/{link['id']}/reservations",
        headers=org.auth("write"),
        json={"start": iso(S())},
    )
    ok(r, 201)


# --- a live hold is busy time --------------------------------------------------------------------
async def test_a_held_slot_of_a_one_host_link_is_not_offered_nor_bookable_by_others(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)], buffer_after_minutes=15)
    assert S() in await _offered(client, org, link["id"])
    await reserve(client, org, link["id"], S())
    offered = await _offered(client, org, link["id"])
    # The hold keeps its link's buffer after it, like a call of the link.
    assert S() not in offered
    assert S(10, 30) not in offered
    assert S(11) in offered
    error(await book_through_link(client, org, session, link["id"], S()), 409, "SLOT_NOT_AVAILABLE")
    error(await _reserve(client, org, link["id"], S()), 409, "SLOT_NOT_AVAILABLE")


async def test_the_hosts_busy_time_shows_the_hold(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """``GET /v1/team/{id}/busy`` shows what the conflict check refuses: the live hold too."""
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S())
    busy = ok(
        await client.get(
            f"/v1/team/{a}/busy",
            headers=org.headers,
            params={"start": iso(S(9)), "end": iso(S(12))},
        )
    )
    assert busy == [{"start": held["start"], "end": held["end"]}]


async def test_with_another_free_host_the_slot_stays_offered_until_both_are_taken(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a, b = await _closers(session, org, 2)
    link = await create_link(client, org, [host(a), host(b)])
    held = await reserve(client, org, link["id"], S())
    assert S() in await _offered(client, org, link["id"])
    # Round robin without the reservation can only give the call to the other host ...
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    # ... and the reservation still books its own host.
    mine = ok(
        await book_through_link(client, org, session, link["id"], S(), reservation_id=held["id"]),
        201,
    )
    assert {call["closer_id"], mine["closer_id"]} == {a, b}
    assert S() not in await _offered(client, org, link["id"])


async def test_booking_the_held_host_directly_is_a_conflict_naming_the_reservation(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    await reserve(client, org, link["id"], S())
    lead = await create_lead(session, org)
    body = {"lead_id": lead.id, "closer_id": a, "scheduled_at": iso(S(10, 15))}
    body["duration_minutes"] = 30
    failed = error(
        await client.post("/v1/calls", headers=org.headers, json=body), 409, "CLOSER_CONFLICT"
    )
    assert failed["details"]["conflicts"] == [
        {"start": iso(S()), "end": iso(S(10, 30)), "source": "reservation"}
    ]
    # override_conflict goes ahead, as for any conflict.
    body["override_conflict"] = True
    ok(await client.post("/v1/calls", headers=org.headers, json=body), 201)


async def test_conflicts_with_holds_and_calls_are_listed_in_start_order(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """A booking over a hold and a later call names both, the earlier first, whatever their
    kinds or ids (docs/api.md, "Conflicts")."""
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    await reserve(client, org, link["id"], S())
    lead = await create_lead(session, org)
    body = {"lead_id": lead.id, "closer_id": a, "duration_minutes": 30}
    booked = ok(
        await client.post(
            "/v1/calls", headers=org.headers, json=body | {"scheduled_at": iso(S(10, 30))}
        ),
        201,
    )
    failed = error(
        await client.post(
            "/v1/calls",
            headers=org.headers,
            json=body | {"scheduled_at": iso(S(10, 15)), "duration_minutes": 60},
        ),
        409,
        "CLOSER_CONFLICT",
    )
    assert failed["details"]["conflicts"] == [
        {"start": iso(S()), "end": iso(S(10, 30)), "source": "reservation"},
        {"start": iso(S(10, 30)), "end": iso(S(11)), "source": "call", "call_id": booked["id"]},
    ]


async def test_a_call_touching_a_hold_is_no_conflict(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """Touching ends do not conflict, for holds as for calls: a call ending as the hold starts
    and one starting as it ends both go through without an override."""
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    await reserve(client, org, link["id"], S())
    lead = await create_lead(session, org)
    for start in (S(9, 30), S(10, 30)):
        body = {"lead_id": lead.id, "closer_id": a, "scheduled_at": iso(start)}
        ok(
            await client.post(
                "/v1/calls", headers=org.headers, json=body | {"duration_minutes": 30}
            ),
            201,
        )


async def test_a_hold_keeps_its_links_buffers_as_its_call_would(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """A hold at 10:00 of a link with 15 minutes' buffer before: as the booked call would,
    it keeps 09:30 (which ends at 10:00, inside that buffer) from being offered."""
    [a] = await _closers(session, org, 1)
    link = await create_link(
        client, org, [host(a)], buffer_before_minutes=15, slot_interval_minutes=15
    )
    await reserve(client, org, link["id"], S())
    got = starts(await get_slots(client, org, link["id"], S(9), S(11, 30)))
    assert got == [S(9), S(9, 15), S(10, 45), S(11), S(11, 15)]


async def test_reassigning_a_call_onto_the_held_host_is_a_conflict(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a, other = await _closers(session, org, 2)
    link = await create_link(client, org, [host(a)])
    await reserve(client, org, link["id"], S())
    lead = await create_lead(session, org)
    body = {"lead_id": lead.id, "closer_id": other, "scheduled_at": iso(S())}
    call = ok(
        await client.post("/v1/calls", headers=org.headers, json=body | {"duration_minutes": 30}),
        201,
    )
    r = await client.post(
        f"/v1/calls/{call['id']}/reassign-closer", headers=org.headers, json={"new_closer_id": a}
    )
    conflicts = error(r, 409, "CLOSER_CONFLICT")["details"]["conflicts"]
    assert [c["source"] for c in conflicts] == ["reservation"]


async def test_an_expired_hold_stops_counting_at_expires_at(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S())
    await _expire(database, held["id"])
    assert S() in await _offered(client, org, link["id"])
    error(
        await book_through_link(client, org, session, link["id"], S(), reservation_id=held["id"]),
        409,
        "RESERVATION_EXPIRED",
    )
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    assert call["closer_id"] == a


# --- POST /v1/calls with reservation_id ----------------------------------------------------------
async def test_booking_a_hold_over_a_conflict_with_override_records_the_override(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """The call placed with ``override_conflict`` remembers it, as any placement does (the
    no-double-booking constraint leaves such calls out; docs/calendars.md)."""
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S())
    lead = await create_lead(session, org)
    direct = {"lead_id": lead.id, "closer_id": a, "scheduled_at": iso(S(10, 15))}
    ok(
        await client.post(
            "/v1/calls",
            headers=org.headers,
            json=direct | {"duration_minutes": 30, "override_conflict": True},
        ),
        201,
    )
    extra = {"reservation_id": held["id"]}
    error(
        await book_through_link(client, org, session, link["id"], S(), **extra),
        409,
        "CLOSER_CONFLICT",
    )
    call = ok(
        await book_through_link(
            client, org, session, link["id"], S(), **extra, override_conflict=True
        ),
        201,
    )
    assert (await fetch_one(database, select(Call).where(Call.id == call["id"]))).override_conflict


async def test_booking_with_the_reservation_consumes_it(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S())
    call = ok(
        await book_through_link(client, org, session, link["id"], S(), reservation_id=held["id"]),
        201,
    )
    assert (call["closer_id"], call["scheduled_at"], call["duration_minutes"]) == (a, iso(S()), 30)
    assert call["booking_link_id"] == link["id"]
    row = await _row(database, held["id"])
    assert row is not None
    assert row.call_id == call["id"]
    [booked] = await webhooks_for_call(database, org, "call.booked", call["id"])
    assert booked.payload["data"]["assignment"] == "round_robin"
    # The call holds the slot now; the consumed reservation holds nothing and is spent.
    assert S() not in await _offered(client, org, link["id"])
    error(
        await book_through_link(client, org, session, link["id"], S(), reservation_id=held["id"]),
        409,
        "RESERVATION_CONSUMED",
    )
    error(await _release(client, org, link["id"], held["id"]), 409, "RESERVATION_CONSUMED")
    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))
    assert S() in await _offered(client, org, link["id"])


async def test_booking_with_a_reservation_excuses_that_hold_only(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """The hold being booked is not a conflict; any other live hold of the host still is. The
    API never lets two holds of one host overlap, so the second is written as a writer that
    skipped the host's lock would."""
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S())
    async with database.writer() as s:
        s.add(
            SlotReservation(
                id="rsv_other",
                organization_id=org.id,
                booking_link_id=link["id"],
                member_id=a,
                starts_at=S(10, 15),
                ends_at=S(10, 45),
                expires_at=utcnow() + timedelta(minutes=5),
            )
        )
        await s.commit()
    extra = {"reservation_id": held["id"]}
    failed = error(
        await book_through_link(client, org, session, link["id"], S(), **extra),
        409,
        "CLOSER_CONFLICT",
    )
    assert failed["details"]["conflicts"] == [
        {"start": iso(S(10, 15)), "end": iso(S(10, 45)), "source": "reservation"}
    ]


async def test_the_call_must_match_the_reservation(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    other = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S())
    rid = held["id"]
    for link_id, start, extra in [
        (link["id"], S(11), {}),  # another start
        (other["id"], S(), {}),  # another link
        (link["id"], S(), {"duration_minutes": 45}),  # another duration
    ]:
        r = await book_through_link(
            client, org, session, link_id, start, reservation_id=rid, **extra
        )
        error(r, 409, "RESERVATION_MISMATCH")
    error(
        await book_through_link(
            client, org, session, link["id"], S(), reservation_id="rsv_missing"
        ),
        404,
        "RESERVATION_NOT_FOUND",
    )
    row = await _row(database, rid)
    assert row is not None
    assert row.call_id is None
    ok(await book_through_link(client, org, session, link["id"], S(), reservation_id=rid), 201)


async def test_reservation_id_goes_with_a_booking_through_a_link_only(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S())
    r = await book_through_link(
        client, org, session, link["id"], S(), reservation_id=held["id"], closer_id=a
    )
    error(r, 400, "VALIDATION_ERROR")
    lead = await create_lead(session, org)
    body = {"lead_id": lead.id, "call_kind": "intent", "reservation_id": held["id"]}
    error(await client.post("/v1/calls", headers=org.headers, json=body), 400, "VALIDATION_ERROR")


# --- DELETE /v1/booking-links/{id}/reservations/{rid} --------------------------------------------
async def test_releasing_offers_the_slot_again(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    other = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S())
    error(await _release(client, org, other["id"], held["id"]), 404, "RESERVATION_NOT_FOUND")
    r = await _release(client, org, link["id"], held["id"])
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert await _row(database, held["id"]) is None
    assert S() in await _offered(client, org, link["id"])
    error(await _release(client, org, link["id"], held["id"]), 404, "RESERVATION_NOT_FOUND")
    error(
        await book_through_link(client, org, session, link["id"], S(), reservation_id=held["id"]),
        404,
        "RESERVATION_NOT_FOUND",
    )


async def test_another_organization_sees_no_reservation(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    [b] = await _closers(session, other_org, 1)
    link = await create_link(client, org, [host(a)])
    theirs = await create_link(client, other_org, [host(b)])
    held = await reserve(client, org, link["id"], S())
    error(await _reserve(client, other_org, link["id"], S(11)), 404, "BOOKING_LINK_NOT_FOUND")
    error(await _release(client, other_org, link["id"], held["id"]), 404, "BOOKING_LINK_NOT_FOUND")
    error(await _release(client, other_org, theirs["id"], held["id"]), 404, "RESERVATION_NOT_FOUND")
    r = await book_through_link(
        client, other_org, session, theirs["id"], S(), reservation_id=held["id"]
    )
    error(r, 404, "RESERVATION_NOT_FOUND")
    # Their own host is not held by it.
    assert S() in await _offered(client, other_org, theirs["id"])
    ok(
        await book_through_link(client, org, session, link["id"], S(), reservation_id=held["id"]),
        201,
    )


# --- a live hold counts like a booking in round robin ---------------------------------------------
async def test_a_live_hold_counts_against_its_hosts_daily_cap(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """The hold is the host's one call of the day: no other slot of that day goes to the host
    (not offered, not given by round robin, not reservable), and booking with it still works."""
    a = (await create_member(session, org, max_bookings_per_day=1)).id
    link = await create_link(client, org, [host(a)])
    whole_day = (S(0), S(0) + timedelta(days=1))
    held = await reserve(client, org, link["id"], S(10))
    assert await get_slots(client, org, link["id"], *whole_day) == []
    error(
        await book_through_link(client, org, session, link["id"], S(14)), 409, "SLOT_NOT_AVAILABLE"
    )
    error(await _reserve(client, org, link["id"], S(14)), 409, "SLOT_NOT_AVAILABLE")
    # Released, it stops counting at once.
    assert (await _release(client, org, link["id"], held["id"])).status_code == 204
    assert S(14) in starts(await get_slots(client, org, link["id"], *whole_day))
    # Booked with, the hold does not count against its own call; the call counts instead.
    held = await reserve(client, org, link["id"], S(10))
    call = ok(
        await book_through_link(client, org, session, link["id"], S(10), reservation_id=held["id"]),
        201,
    )
    assert call["closer_id"] == a
    assert await get_slots(client, org, link["id"], *whole_day) == []
    error(
        await book_through_link(client, org, session, link["id"], S(14)), 409, "SLOT_NOT_AVAILABLE"
    )


async def test_a_hold_and_the_call_booked_with_it_count_once(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """Under a daily cap of 2, a hold booked with is one call, not two: another slot of that
    day is still offered and given to the host, and its share counts one booking."""
    a = (await create_member(session, org, max_bookings_per_day=2)).id
    link = await create_link(client, org, [host(a)])
    whole_day = (S(0), S(0) + timedelta(days=1))
    held = await reserve(client, org, link["id"], S(10))
    call = ok(
        await book_through_link(client, org, session, link["id"], S(10), reservation_id=held["id"]),
        201,
    )
    assert S(14) in starts(await get_slots(client, org, link["id"], *whole_day))
    candidates = ok(
        await client.get(f"/v1/calls/{call['id']}/reassign-candidates", headers=org.headers)
    )
    assert [c["period_bookings"] for c in candidates if c["member_id"] == a] == [1]
    second = ok(await book_through_link(client, org, session, link["id"], S(14)), 201)
    assert second["closer_id"] == a
    assert await get_slots(client, org, link["id"], *whole_day) == []


async def test_booking_with_a_hold_rechecks_the_hosts_cap_without_the_hold(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """A call placed on the held host by name (caps do not limit a manager) fills the cap the
    hold was counting on: booking with the hold is refused, and the hold is left unspent."""
    a = (await create_member(session, org, max_bookings_per_day=1)).id
    link = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S(10))
    ok(await book_through_link(client, org, session, link["id"], S(14), closer_id=a), 201)
    r = await book_through_link(client, org, session, link["id"], S(10), reservation_id=held["id"])
    error(r, 409, "SLOT_NOT_AVAILABLE")
    row = await _row(database, held["id"])
    assert row is not None
    assert row.call_id is None


async def test_holds_made_close_together_are_spread_over_the_hosts(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """Nothing is booked yet, so without counting the holds every reservation would go to the
    same top-ranked host, and booking with them skips round robin."""
    a, b, c = sorted(await _closers(session, org, 3))
    link = await create_link(client, org, [host(a), host(b), host(c)])
    held = [await reserve(client, org, link["id"], S(h)) for h in (10, 11, 12)]
    rows = [await _row(database, h["id"]) for h in held]
    assert [row.member_id for row in rows if row is not None] == [a, b, c]
    for hour, h in zip((10, 11, 12), held, strict=True):
        ok(
            await book_through_link(
                client, org, session, link["id"], S(hour), reservation_id=h["id"]
            ),
            201,
        )
    # Each now has one booking: the next call by round robin goes by least recently booked.
    call = ok(await book_through_link(client, org, session, link["id"], S(14)), 201)
    assert call["closer_id"] == a


async def test_a_live_hold_is_its_hosts_latest_booking(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """A and B have one call each on the link, B's older: B is owed the next one, unless B has
    just been given a hold (on another link: not in this link's share, but B's latest)."""
    a, b = await _closers(session, org, 2)
    link = await create_link(client, org, [host(a), host(b)])
    other = await create_link(client, org, [host(b)])
    ok(await book_through_link(client, org, session, link["id"], S(10), closer_id=b), 201)
    ok(await book_through_link(client, org, session, link["id"], S(11), closer_id=a), 201)
    await reserve(client, org, other["id"], S(14))
    call = ok(await book_through_link(client, org, session, link["id"], S(15)), 201)
    assert call["closer_id"] == a


# --- concurrency and retention -------------------------------------------------------------------
async def test_concurrent_reservations_of_one_slot_exactly_one_wins(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    responses = await asyncio.wait_for(
        asyncio.gather(*(_reserve(client, org, link["id"], S()) for _ in range(N))),
        RACE_TIMEOUT,
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (N - 1), [r.text for r in responses]
    for r in responses:
        if r.status_code == 409:
            error(r, 409, "SLOT_NOT_AVAILABLE")
    [winner] = [r.json()["data"]["id"] for r in responses if r.status_code == 201]
    rows = await fetch_all(database, select(SlotReservation.id))
    assert list(rows) == [winner]


async def test_concurrent_bookings_of_a_held_slot_only_the_reservation_wins(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """Half the racers book the held slot with the reservation, half by round robin: one call."""
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    held = await reserve(client, org, link["id"], S())
    leads = [await create_lead(session, org) for _ in range(N)]
    bodies = [
        {"lead_id": lead.id, "booking_link_id": link["id"], "scheduled_at": iso(S())}
        | ({"reservation_id": held["id"]} if i % 2 else {})
        for i, lead in enumerate(leads)
    ]
    responses = await asyncio.wait_for(
        asyncio.gather(*(client.post("/v1/calls", headers=org.headers, json=b) for b in bodies)),
        RACE_TIMEOUT,
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * (N - 1)
    [winner] = [r.json()["data"] for r in responses if r.status_code == 201]
    assert winner["closer_id"] == a
    codes = {r.json()["code"] for r in responses if r.status_code == 409}
    assert codes <= {"SLOT_NOT_AVAILABLE", "RESERVATION_CONSUMED"}
    row = await _row(database, held["id"])
    assert row is not None
    assert row.call_id == winner["id"]


async def test_retention_prunes_expired_reservations_consumed_or_not(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    database: Database,
    settings: Settings,
) -> None:
    a, b = await _closers(session, org, 2)
    link = await create_link(client, org, [host(a), host(b)])
    live = await reserve(client, org, link["id"], S())
    expired = await reserve(client, org, link["id"], S())
    consumed = await reserve(client, org, link["id"], S(11))
    ok(
        await book_through_link(
            client, org, session, link["id"], S(11), reservation_id=consumed["id"]
        ),
        201,
    )
    await _expire(database, expired["id"])
    assert (await prune(database, settings)).reservations == 1
    # Consumed but not expired: kept, so booking with it again still says it was consumed.
    assert set(await fetch_all(database, select(SlotReservation.id))) == {
        live["id"],
        consumed["id"],
    }
    await _expire(database, consumed["id"])
    assert (await prune(database, settings)).reservations == 1
    assert list(await fetch_all(database, select(SlotReservation.id))) == [live["id"]]
