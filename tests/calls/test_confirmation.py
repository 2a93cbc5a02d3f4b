"""Confirmation (Cal.com: confirm / decline a booking that requires a confirmation;
docs/sales-floor.md, "Confirmation").

A booking link with ``requires_confirmation`` books ``pending`` calls: they hold their slot but
have no calendar event and no conferencing link until ``POST /v1/calls/{id}/confirm``;
``POST /v1/calls/{id}/decline`` frees the slot. Every link here is 30-minute calls, hosts free
09:00–17:00 UTC every day; ``S`` is 10:00Z three days from now.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import icalendar
import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import Database
from closerdesk.kit.time import utcnow
from closerdesk.models import CalendarConnection, Call, TeamMember
from closerdesk.models.call import NO_DOUBLE_BOOKING
from closerdesk.webhooks.events import EventType
from closerdesk.webhooks.payloads import EVENT_MODELS
from tests.booking_links.helpers import (
    add_busy_block,
    book_through_link,
    create_link,
    day,
    get_slots,
    host,
    iso,
    patch_link,
    starts,
)
from tests.calendars.servers import DavServer, radicale  # noqa: F401 - fixture
from tests.calendars.test_calls_on_caldav import closer_on, event_of
from tests.calls.helpers import (
    assert_link_live,
    call_events,
    call_row,
    events_of_call,
    get_call,
    history,
    links_of_call,
    past,
    webhooks_for_call,
)
from tests.envelopes import error, ok
from tests.factories import Org, create_call, create_lead, create_member


def S(hour: int = 10, minute: int = 0) -> datetime:
    return day(3, hour, minute)


async def confirm_link(client: httpx.AsyncClient, org: Org, *closers: str) -> dict[str, Any]:
    return await create_link(client, org, [host(c) for c in closers], requires_confirmation=True)


async def pending_call(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, start: datetime | None = None
) -> tuple[dict[str, Any], TeamMember, dict[str, Any]]:
    """A pending call booked through a one-host link requiring confirmation."""
    closer = await create_member(session, org)
    link = await confirm_link(client, org, closer.id)
    call = ok(await book_through_link(client, org, session, link["id"], start or S()), 201)
    return call, closer, link


async def post(
    client: httpx.AsyncClient, org: Org, call_id: str, action: str, body: Any = None
) -> httpx.Response:
    return await client.post(f"/v1/calls/{call_id}/{action}", headers=org.headers, json=body)


async def arranged_pending(
    session: AsyncSession, org: Org, closer: TeamMember, start: datetime
) -> Call:
    """A pending call written directly (any time, past included), without event or link."""
    lead = await create_lead(session, org)
    return await create_call(
        session,
        org,
        lead=lead,
        closer=closer,
        scheduled_at=start,
        with_event=False,
        status="pending",
        override_conflict=False,
    )


def typed(payload: dict[str, Any]) -> dict[str, Any]:
    """The webhook body checked against its published model; returns its ``data``."""
    model = EVENT_MODELS[EventType(payload["event"])]
    assert model.model_validate(payload).model_dump(mode="json") == payload
    data: dict[str, Any] = payload["data"]
    return data


# --- the booking link ----------------------------------------------------------------------------
async def test_requires_confirmation_round_trips_on_the_link(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org)
    link = await confirm_link(client, org, closer.id)
    assert link["requires_confirmation"] is True
    fetched = ok(await client.get(f"/v1/booking-links/{link['id']}", headers=org.headers))
    assert fetched["requires_confirmation"] is True
    patched = ok(await patch_link(client, org, link["id"], {"requires_confirmation": False}))
    assert patched["requires_confirmation"] is False
    error(
        await patch_link(client, org, link["id"], {"requires_confirmation": None}),
        400,
        "VALIDATION_ERROR",
    )


# --- booking: pending, holding the slot, nothing on a calendar ------------------------------------
async def test_a_booking_through_the_link_is_pending_without_event_or_link(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    call, closer, link = await pending_call(client, org, session)
    assert call["status"] == "pending"
    assert call["closer_id"] == closer.id
    assert call["conferencing_link"] is None
    assert call["calendar_event_id"] is None
    assert call["confirmed_at"] is None
    assert await events_of_call(database, call["id"]) == []
    assert await links_of_call(database, call["id"]) == []
    assert [h["type"] for h in await history(client, org, call["id"])] == ["booked"]
    [booked] = await webhooks_for_call(database, org, "call.booked", call["id"])
    data = typed(booked.payload)
    assert data["call"]["status"] == "pending"
    assert data["call"]["conferencing_link"] is None
    # A manual booking through the link (closer named) is pending too.
    manual = ok(
        await book_through_link(client, org, session, link["id"], S(12), closer_id=closer.id), 201
    )
    assert manual["status"] == "pending"
    # A link without the setting books scheduled calls, with event and link.
    plain = await create_link(client, org, [host(closer.id)])
    scheduled = ok(await book_through_link(client, org, session, plain["id"], S(14)), 201)
    assert scheduled["status"] == "scheduled"
    assert scheduled["conferencing_link"] is not None


async def test_a_pending_call_holds_its_slot(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    call, closer, link = await pending_call(client, org, session)
    # Not offered any more ...
    assert S() not in starts(await get_slots(client, org, link["id"], S(9), S(12)))
    assert S(10, 30) in starts(await get_slots(client, org, link["id"], S(9), S(12)))
    # ... not bookable by round robin ...
    error(await book_through_link(client, org, session, link["id"], S()), 409, "SLOT_NOT_AVAILABLE")
    # ... nor by naming the closer, through any route.
    lead = await create_lead(session, org)
    body = {
        "lead_id": lead.id,
        "closer_id": closer.id,
        "scheduled_at": iso(S(10, 15)),
        "duration_minutes": 30,
    }
    refused = error(
        await client.post("/v1/calls", headers=org.headers, json=body), 409, "CLOSER_CONFLICT"
    )
    assert refused["details"]["conflicts"][0]["call_id"] == call["id"]
    # It is upcoming and listed by its status.
    listed = ok(
        await client.get(
            "/v1/calls", headers=org.headers, params={"status": "pending", "is_upcoming": "true"}
        )
    )
    assert [c["id"] for c in listed] == [call["id"]]


async def test_a_closer_with_a_pending_call_cannot_be_deactivated(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    _, closer, _ = await pending_call(client, org, session)
    r = await client.patch(f"/v1/team/{closer.id}", headers=org.headers, json={"is_active": False})
    error(r, 409, "MEMBER_HAS_UPCOMING_CALLS")


# --- confirm -------------------------------------------------------------------------------------
async def test_confirm_places_the_call_on_the_calendar(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    call, closer, _ = await pending_call(client, org, session)
    before = utcnow()
    confirmed = ok(await post(client, org, call["id"], "confirm"))
    assert confirmed["status"] == "scheduled"
    assert confirmed["confirmed_at"] is not None
    assert datetime.fromisoformat(confirmed["confirmed_at"]) >= before - timedelta(seconds=1)
    await assert_link_live(client, confirmed["conferencing_link"])
    [event] = await events_of_call(database, call["id"])
    assert event.id == confirmed["calendar_event_id"]
    assert (event.starts_at, event.ends_at) == (S(), S(10, 30))
    assert event.location == confirmed["conferencing_link"]
    assert closer.name in event.title
    assert confirmed == await get_call(client, org, call["id"])
    row = await call_row(database, call["id"])
    assert row.calendar_grant_id == event.connection_id

    entries = await history(client, org, call["id"])
    assert [h["type"] for h in entries] == ["booked", "confirmed"]
    assert entries[1]["before"]["status"] == "pending"
    assert entries[1]["after"]["status"] == "scheduled"
    assert entries[1]["after"]["conferencing_link"] == confirmed["conferencing_link"]
    [hook] = await webhooks_for_call(database, org, "call.confirmed", call["id"])
    data = typed(hook.payload)
    assert set(data) == {"call", "lead", "confirmed_by"}
    assert data["call"] == confirmed
    assert data["lead"]["id"] == call["lead_id"]
    assert data["confirmed_by"]["type"] == "api_key"
    # Once is enough.
    error(await post(client, org, call["id"], "confirm"), 409, "CALL_NOT_PENDING")
    error(await post(client, org, call["id"], "decline"), 409, "CALL_NOT_PENDING")


async def test_confirm_refuses_what_is_not_pending(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    scheduled = await create_call(session, org, lead=lead, closer=closer, scheduled_at=S())
    error(await post(client, org, scheduled.id, "confirm"), 409, "CALL_NOT_PENDING")
    error(await post(client, org, scheduled.id, "decline"), 409, "CALL_NOT_PENDING")
    cancelled = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=S(12), status="cancelled"
    )
    error(await post(client, org, cancelled.id, "confirm"), 409, "CALL_NOT_PENDING")
    error(await post(client, org, "call_doesnotexist", "confirm"), 404, "CALL_NOT_FOUND")
    error(await post(client, org, "call_doesnotexist", "decline"), 404, "CALL_NOT_FOUND")


async def test_a_pending_call_in_the_past_cannot_be_confirmed_but_can_be_declined(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    closer = await create_member(session, org)
    call = await arranged_pending(session, org, closer, past(hours=1))
    error(await post(client, org, call.id, "confirm"), 409, "CALL_IN_PAST")
    assert (await call_row(database, call.id)).status == "pending"
    # No outcome for a call never confirmed.
    r = await post(client, org, call.id, "outcome", {"status": "shown"})
    error(r, 409, "CALL_NOT_CONFIRMED")
    declined = ok(await post(client, org, call.id, "decline", {"reason": "Nobody answered"}))
    assert declined["status"] == "declined"


async def test_confirm_without_a_valid_calendar_is_409_and_stays_pending(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    call, closer, _ = await pending_call(client, org, session)
    await session.execute(
        update(CalendarConnection)
        .where(CalendarConnection.member_id == closer.id)
        .values(status="invalid")
    )
    await session.commit()
    error(await post(client, org, call["id"], "confirm"), 409, "CALENDAR_NOT_CONNECTED")
    assert (await call_row(database, call["id"])).status == "pending"
    assert await events_of_call(database, call["id"]) == []


async def test_foreign_busy_time_refuses_the_confirmation_unless_overridden(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    call, closer, _ = await pending_call(client, org, session)
    # Time off entered on the closer's calendar after the booking.
    await add_busy_block(client, org, closer.id, S(10, 15), S(11))
    r = error(await post(client, org, call["id"], "confirm"), 409, "CLOSER_CONFLICT")
    assert r["details"]["conflicts"][0]["source"] == "calendar"
    assert (await call_row(database, call["id"])).status == "pending"
    assert await events_of_call(database, call["id"]) == []
    assert await webhooks_for_call(database, org, "call.confirmed", call["id"]) == []
    confirmed = ok(await post(client, org, call["id"], "confirm", {"override_conflict": True}))
    assert confirmed["status"] == "scheduled"
    assert len(await events_of_call(database, call["id"])) == 1


async def test_confirm_and_decline_need_the_write_scope(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    call, _, _ = await pending_call(client, org, session)
    for action in ("confirm", "decline"):
        r = await client.post(f"/v1/calls/{call['id']}/{action}", headers=org.auth("read"))
        error(r, 403, "FORBIDDEN")


# --- decline -------------------------------------------------------------------------------------
async def test_decline_frees_the_slot(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    call, closer, link = await pending_call(client, org, session)
    body = {"reason": "Outside our market", "reason_code": "not_qualified"}
    declined = ok(await post(client, org, call["id"], "decline", body))
    assert declined["status"] == "declined"
    assert declined["declined_at"] is not None
    assert declined["decline_reason"] == "Outside our market"
    assert declined["conferencing_link"] is None
    assert (await call_row(database, call["id"])).reason_code == "not_qualified"
    assert await events_of_call(database, call["id"]) == []

    entries = await history(client, org, call["id"])
    assert [h["type"] for h in entries] == ["booked", "declined"]
    assert entries[1]["reason"] == "Outside our market"
    assert entries[1]["after"]["status"] == "declined"
    [row] = [e for e in await call_events(database, call["id"]) if e.type == "declined"]
    assert row.reason_code == "not_qualified"
    [hook] = await webhooks_for_call(database, org, "call.declined", call["id"])
    data = typed(hook.payload)
    assert set(data) == {"call", "lead", "reason", "reason_code", "declined_by"}
    assert data["call"] == declined
    assert (data["reason"], data["reason_code"]) == ("Outside our market", "not_qualified")

    # The slot is offered and bookable again; the declined call is no longer upcoming.
    assert S() in starts(await get_slots(client, org, link["id"], S(9), S(12)))
    again = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    assert again["closer_id"] == closer.id
    upcoming = ok(await client.get("/v1/calls", headers=org.headers, params={"is_upcoming": True}))
    assert [c["id"] for c in upcoming] == [again["id"]]
    listed = ok(await client.get("/v1/calls", headers=org.headers, params={"status": "declined"}))
    assert [c["id"] for c in listed] == [call["id"]]


async def test_decline_without_a_body(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    call, _, _ = await pending_call(client, org, session)
    r = await client.post(f"/v1/calls/{call['id']}/decline", headers=org.headers)
    declined = ok(r)
    assert (declined["status"], declined["decline_reason"]) == ("declined", None)
    bad = await post(client, org, call["id"], "decline", {"reason_code": "rebalance"})
    error(bad, 400, "VALIDATION_ERROR")


async def test_a_declined_call_is_closed_like_a_cancelled_one(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    call, _, _ = await pending_call(client, org, session)
    other = await create_member(session, org)
    ok(await post(client, org, call["id"], "decline"))
    cid = call["id"]
    error(
        await post(client, org, cid, "reassign-closer", {"new_closer_id": other.id}),
        409,
        "CALL_DECLINED",
    )
    error(await post(client, org, cid, "auto-reassign"), 409, "CALL_DECLINED")
    error(
        await post(client, org, cid, "reschedule", {"scheduled_at": iso(S(12))}),
        409,
        "CALL_DECLINED",
    )
    error(await post(client, org, cid, "cancel"), 409, "CALL_DECLINED")
    error(await post(client, org, cid, "outcome", {"status": "shown"}), 409, "CALL_DECLINED")
    error(
        await client.get(f"/v1/calls/{cid}/calendar-links", headers=org.headers),
        409,
        "CALL_DECLINED",
    )
    ics = icalendar.Calendar.from_ical(
        (await client.get(f"/v1/calls/{cid}/ics", headers=org.headers)).content
    )
    assert str(ics["METHOD"]) == "CANCEL"
    [vevent] = ics.walk("VEVENT")
    assert str(vevent["STATUS"]) == "CANCELLED"


# --- other operations on a pending call ----------------------------------------------------------
async def test_reassign_and_reschedule_keep_a_pending_call_pending(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    call, first, _ = await pending_call(client, org, session)
    second = await create_member(session, org)
    result = ok(
        await post(client, org, call["id"], "reassign-closer", {"new_closer_id": second.id})
    )
    assert result["new_event_id"] is None
    assert result["conferencing_link"] is None
    assert result["previous_closer_id"] == first.id
    moved = ok(await post(client, org, call["id"], "reschedule", {"scheduled_at": iso(S(13))}))
    assert moved["status"] == "pending"
    assert moved["closer_id"] == second.id
    assert moved["calendar_event_id"] is None
    assert moved["conferencing_link"] is None
    assert await events_of_call(database, call["id"]) == []
    assert await links_of_call(database, call["id"]) == []
    [hook] = await webhooks_for_call(database, org, "call.closer_reassigned", call["id"])
    assert typed(hook.payload)["new_event_id"] is None
    # The slot it holds moved with it: the first closer is free at 10:00, the second busy at 13:00.
    lead = await create_lead(session, org)
    body = {"lead_id": lead.id, "scheduled_at": iso(S(13)), "duration_minutes": 30}
    r = await client.post("/v1/calls", headers=org.headers, json={**body, "closer_id": second.id})
    error(r, 409, "CLOSER_CONFLICT")
    # Confirmed now, it goes on the second closer's calendar at the new time.
    confirmed = ok(await post(client, org, call["id"], "confirm"))
    [event] = await events_of_call(database, call["id"])
    assert event.id == confirmed["calendar_event_id"]
    assert event.starts_at == S(13)
    assert second.name in event.title


async def test_reschedule_to_another_closer_keeps_it_pending(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    call, _, _ = await pending_call(client, org, session)
    other = await create_member(session, org)
    body = {"scheduled_at": iso(S(15)), "new_closer_id": other.id}
    moved = ok(await post(client, org, call["id"], "reschedule", body))
    assert (moved["status"], moved["closer_id"]) == ("pending", other.id)
    assert moved["conferencing_link"] is None
    assert await events_of_call(database, call["id"]) == []


async def test_a_pending_call_can_be_cancelled(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    call, _, link = await pending_call(client, org, session)
    cancelled = ok(await post(client, org, call["id"], "cancel", {"reason": "Lead withdrew"}))
    assert cancelled["status"] == "cancelled"
    error(await post(client, org, call["id"], "confirm"), 409, "CALL_NOT_PENDING")
    assert S() in starts(await get_slots(client, org, link["id"], S(9), S(12)))


async def test_the_ics_of_a_pending_call_is_tentative_until_confirmed(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    call, _, _ = await pending_call(client, org, session)

    async def vevent() -> Any:
        r = await client.get(f"/v1/calls/{call['id']}/ics", headers=org.headers)
        assert r.status_code == 200, r.text
        cal = icalendar.Calendar.from_ical(r.content)
        assert str(cal["METHOD"]) == "PUBLISH"
        [event] = cal.walk("VEVENT")
        return event

    tentative = await vevent()
    assert str(tentative["STATUS"]) == "TENTATIVE"
    assert "LOCATION" not in tentative
    links = ok(await client.get(f"/v1/calls/{call['id']}/calendar-links", headers=org.headers))
    assert set(links) == {"google", "outlook", "office365", "yahoo", "ics"}
    confirmed = ok(await post(client, org, call["id"], "confirm"))
    after = await vevent()
    assert str(after["STATUS"]) == "CONFIRMED"
    assert str(after["LOCATION"]) == confirmed["conferencing_link"]
    assert int(after["SEQUENCE"]) > int(tentative["SEQUENCE"])


# --- a real CalDAV calendar ----------------------------------------------------------------------
async def test_confirm_writes_the_event_to_a_caldav_calendar(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    radicale: DavServer,  # noqa: F811 - the fixture
) -> None:
    closer, calendar = await closer_on(client, session, org, radicale)
    link = await confirm_link(client, org, closer.id)
    call = ok(await book_through_link(client, org, session, link["id"], S()), 201)
    assert call["status"] == "pending"
    assert calendar.hrefs() == []
    confirmed = ok(await post(client, org, call["id"], "confirm"))
    event = event_of(calendar, confirmed["calendar_event_id"])
    assert event is not None
    assert event["DTSTART"].dt == S()
    assert str(event["LOCATION"]) == confirmed["conferencing_link"]
    assert len(calendar.hrefs()) == 1


# --- PostgreSQL: the exclusion constraint counts pending calls, not declined ones ---------------
async def test_postgresql_keeps_a_pending_slot_and_frees_a_declined_one(
    session: AsyncSession, org: Org, database: Database
) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("the exclusion constraint exists on PostgreSQL only")
    closer = await create_member(session, org)
    pending_id = (await arranged_pending(session, org, closer, S())).id
    lead = await create_lead(session, org)
    placed: dict[str, Any] = {"lead": lead, "closer": closer, "override_conflict": False}
    await create_call(session, org, scheduled_at=S(), status="declined", **placed)
    with pytest.raises(IntegrityError, match=NO_DOUBLE_BOOKING):
        await create_call(session, org, scheduled_at=S(10, 15), **placed)
    await session.rollback()
    await session.execute(update(Call).where(Call.id == pending_id).values(status="declined"))
    await session.commit()
    await session.refresh(lead)
    await session.refresh(closer)
    await create_call(session, org, scheduled_at=S(10, 15), **placed)
