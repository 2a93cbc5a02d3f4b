"""POST /v1/calls: booking, inline leads, intents, validation, closer/product/setter rules."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from closerdesk.db import Database
from closerdesk.models import CalendarEvent, Lead
from tests.calls.helpers import (
    MEET_PREFIX,
    SEED_004_FIELDS,
    SPEC_EXTRA_FIELDS,
    add_busy_block,
    assert_link_live,
    book,
    call_events,
    call_row,
    connection_of,
    create_booking_link,
    create_product,
    error,
    event_row,
    fetch_all,
    fetch_one,
    future,
    get_call,
    iso,
    meet_path,
    ok,
    webhooks,
    webhooks_for_call,
)
from tests.factories import Org, create_call, create_lead, create_member


async def test_book_with_closer_creates_call_event_and_link(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    setter = await create_member(session, org, role="setter", calendar=False)
    lead = await create_lead(session, org)
    start = future(days=3)
    data = await book(
        client,
        org,
        lead=lead,
        closer=closer,
        start=start,
        minutes=30,
        setter_id=setter.id,
        expected_deal_value=250000,
        notes="Warm lead",
        form_data=[{"field_id": "budget", "label": "Budget?", "value": 5000}],
        utm_source="google",
        utm_medium="cpc",
        utm_campaign="spring",
        utm_term="closer",
        utm_content="v2",
        referral="friend",
    )
    assert set(data) == SEED_004_FIELDS | SPEC_EXTRA_FIELDS
    assert data["id"].startswith("call_")
    assert data["call_kind"] == "booking"
    assert data["status"] == "scheduled"
    assert data["lead_id"] == lead.id
    assert data["closer_id"] == closer.id
    assert data["closer_name"] == closer.name
    assert data["closer_email"] == closer.email
    assert data["setter_id"] == setter.id
    assert data["scheduled_at"] == iso(start)
    assert data["duration_minutes"] == 30
    assert data["time_zone"] == lead.time_zone  # default: the lead's
    assert data["expected_deal_value"] == 250000
    assert data["notes"] == "Warm lead"
    assert data["form_data"] == [{"field_id": "budget", "label": "Budget?", "value": 5000}]
    assert (data["utm_source"], data["utm_medium"], data["utm_campaign"]) == (
        "google",
        "cpc",
        "spring",
    )
    assert (data["utm_term"], data["utm_content"], data["referral"]) == ("closer", "v2", "friend")
    assert data["reschedule_count"] == 0

    # the conferencing link is ours and redirects to a room
    link = data["conferencing_link"]
    assert link.startswith(MEET_PREFIX)
    room = await assert_link_live(client, link)
    assert room.startswith("https://meet.example.test/")
    # the closer's calendar has the event
    event = await event_row(database, data["calendar_event_id"])
    assert event.call_id == data["id"]
    assert event.status == "confirmed"
    assert event.starts_at == start
    assert event.ends_at == start + timedelta(minutes=30)
    assert event.connection_id == (await connection_of(database, closer.id)).id
    # the row, the history and the outbox
    row = await call_row(database, data["id"])
    assert row.ends_at == start + timedelta(minutes=30)
    assert row.calendar_grant_id == event.connection_id
    kinds = [e.type for e in await call_events(database, data["id"])]
    assert kinds == ["booked"]
    booked = await webhooks_for_call(database, org, "call.booked", data["id"])
    assert len(booked) == 1
    payload = booked[0].payload
    assert payload["event"] == "call.booked"
    assert payload["id"] == booked[0].id
    assert payload["organization_id"] == org.id
    assert payload["data"]["call"]["id"] == data["id"]
    assert payload["data"]["lead"]["email"] == lead.email
    # GET answers the same object
    assert await get_call(client, org, data["id"]) == data
    # the lead is now booked
    lead_row = await fetch_one(database, select(Lead).where(Lead.id == lead.id))
    assert lead_row.status == "booked"


async def test_book_offset_timestamp_is_normalised_to_utc(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=4)
    local = start.astimezone(ZoneInfo("Asia/Kolkata")).isoformat()
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead_id": lead.id,
            "scheduled_at": local,
            "duration_minutes": 45,
            "closer_id": closer.id,
            "time_zone": "Asia/Kolkata",
        },
    )
    data = ok(r, 201)
    assert data["scheduled_at"] == iso(start)
    assert data["time_zone"] == "Asia/Kolkata"


async def test_book_naive_timestamp_is_400(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    naive = future(days=2).replace(tzinfo=None).isoformat()
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead_id": lead.id,
            "scheduled_at": naive,
            "duration_minutes": 45,
            "closer_id": closer.id,
        },
    )
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "scheduled_at"


async def test_book_in_the_past_is_slot_in_past(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead_id": lead.id,
            "scheduled_at": iso(future(minutes=-5)),
            "duration_minutes": 45,
            "closer_id": closer.id,
        },
    )
    error(r, 400, "SLOT_IN_PAST")
    assert await webhooks(database, org, "call.booked") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scheduled_at": "TIME", "closer_id": "CLOSER"}, "body"),  # no duration
        ({"duration_minutes": 45, "closer_id": "CLOSER"}, "body"),  # no time
        ({"scheduled_at": "TIME", "duration_minutes": 45}, "body"),  # no closer
        ({"scheduled_at": "TIME", "duration_minutes": 2, "closer_id": "CLOSER"}, "duration"),
        ({"scheduled_at": "TIME", "duration_minutes": 45, "closer_id": "bob"}, "closer_id"),
        (
            {"scheduled_at": "TIME", "duration_minutes": 45, "closer_id": "CLOSER", "x": 1},
            "x",
        ),
        (
            {
                "scheduled_at": "TIME",
                "duration_minutes": 45,
                "closer_id": "CLOSER",
                "time_zone": "Mars/Olympus",
            },
            "time_zone",
        ),
        (
            {
                "scheduled_at": "TIME",
                "duration_minutes": 45,
                "closer_id": "CLOSER",
                "expected_deal_value": -1,
            },
            "expected_deal_value",
        ),
    ],
)
async def test_book_invalid_body_is_400(
    client: httpx.AsyncClient, org: Org, session, body: dict, field: str
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    filled = {
        k: (iso(future(days=2)) if v == "TIME" else closer.id if v == "CLOSER" else v)
        for k, v in body.items()
    }
    r = await client.post("/v1/calls", headers=org.headers, json={"lead_id": lead.id, **filled})
    details = error(r, 400, "VALIDATION_ERROR")["details"]
    assert details
    if field == "duration":
        assert details[0]["field"] == "duration_minutes"
    elif field != "body":
        assert details[0]["field"] == field


async def test_book_needs_exactly_one_of_lead_id_and_lead(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    base = {"scheduled_at": iso(future(days=2)), "duration_minutes": 45, "closer_id": closer.id}
    error(await client.post("/v1/calls", headers=org.headers, json=base), 400, "VALIDATION_ERROR")
    both = {**base, "lead_id": lead.id, "lead": {"email": "x@example.com"}}
    error(await client.post("/v1/calls", headers=org.headers, json=both), 400, "VALIDATION_ERROR")


async def test_book_unknown_lead_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, org)
    foreign = await create_lead(session, other_org)
    for lead_id in ("lead_missing", foreign.id):
        r = await client.post(
            "/v1/calls",
            headers=org.headers,
            json={
                "lead_id": lead_id,
                "scheduled_at": iso(future(days=2)),
                "duration_minutes": 45,
                "closer_id": closer.id,
            },
        )
        error(r, 404, "LEAD_NOT_FOUND")


# --- inline lead ---------------------------------------------------------------------------------
async def test_book_inline_lead_finds_existing_by_email_case_insensitively(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    created = ok(
        await client.post(
            "/v1/leads",
            headers=org.headers,
            json={"email": "Jane.Doe@Example.com", "full_name": "Jane Doe"},
        ),
        201,
    )
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead": {"email": "JANE.DOE@EXAMPLE.COM", "full_name": "Someone Else"},
            "scheduled_at": iso(future(days=2)),
            "duration_minutes": 45,
            "closer_id": closer.id,
        },
    )
    data = ok(r, 201)
    assert data["lead_id"] == created["id"]
    count = await fetch_one(
        database, select(func.count()).select_from(Lead).where(Lead.organization_id == org.id)
    )
    assert count == 1
    lead = ok(await client.get(f"/v1/leads/{created['id']}", headers=org.headers))
    assert lead["full_name"] == "Jane Doe"  # an existing lead keeps its fields


async def test_book_inline_lead_creates_a_new_lead(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead": {
                "email": "New.Person@Example.com",
                "full_name": "New Person",
                "phone": "+442071838750",
                "time_zone": "Europe/London",
            },
            "scheduled_at": iso(future(days=2)),
            "duration_minutes": 45,
            "closer_id": closer.id,
        },
    )
    data = ok(r, 201)
    lead = ok(await client.get(f"/v1/leads/{data['lead_id']}", headers=org.headers))
    assert lead["email"] == "new.person@example.com"
    assert lead["full_name"] == "New Person"
    assert lead["phone"] == "+442071838750"
    assert lead["time_zone"] == "Europe/London"
    assert data["time_zone"] == "Europe/London"
    created = await webhooks(database, org, "lead.created")
    assert [w.payload["data"]["lead"]["id"] for w in created] == [data["lead_id"]]


async def test_book_inline_lead_of_other_org_is_not_reused(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, org)
    foreign = await create_lead(session, other_org, email="shared@example.com")
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead": {"email": "shared@example.com"},
            "scheduled_at": iso(future(days=2)),
            "duration_minutes": 45,
            "closer_id": closer.id,
        },
    )
    data = ok(r, 201)
    assert data["lead_id"] != foreign.id


async def test_book_inline_lead_invalid_email_is_400(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead": {"email": "not-an-email"},
            "scheduled_at": iso(future(days=2)),
            "duration_minutes": 45,
            "closer_id": closer.id,
        },
    )
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "lead.email"


# --- intent calls --------------------------------------------------------------------------------
async def test_book_intent_call_has_no_slot_event_or_link(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={"lead_id": lead.id, "call_kind": "intent", "notes": "Call me back"},
    )
    data = ok(r, 201)
    assert data["call_kind"] == "intent"
    assert data["status"] == "scheduled"
    assert data["scheduled_at"] is None
    assert data["duration_minutes"] is None
    assert data["conferencing_link"] is None
    assert data["calendar_event_id"] is None
    assert data["closer_id"] is None
    assert data["notes"] == "Call me back"
    assert await fetch_all(database, select(CalendarEvent)) == []
    assert len(await webhooks_for_call(database, org, "call.booked", data["id"])) == 1


async def test_book_intent_call_with_closer_without_calendar(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org, calendar=False)
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={"lead_id": lead.id, "call_kind": "intent", "closer_id": closer.id},
    )
    data = ok(r, 201)
    assert data["closer_id"] == closer.id
    assert data["closer_name"] == closer.name


async def test_book_intent_call_with_a_time_is_400(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={"lead_id": lead.id, "call_kind": "intent", "scheduled_at": iso(future(days=1))},
    )
    error(r, 400, "VALIDATION_ERROR")


# --- closer rules --------------------------------------------------------------------------------
async def _book_raw(
    client: httpx.AsyncClient, org: Org, lead_id: str, closer_id: str, **extra
) -> httpx.Response:
    return await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead_id": lead_id,
            "scheduled_at": iso(extra.pop("start", future(days=2))),
            "duration_minutes": extra.pop("minutes", 45),
            "closer_id": closer_id,
            **extra,
        },
    )


async def test_book_closer_not_found_missing_inactive_setter_other_org(
    client: httpx.AsyncClient, org: Org, other_org: Org, session, database: Database
) -> None:
    lead = await create_lead(session, org)
    inactive = await create_member(session, org, is_active=False)
    setter = await create_member(session, org, role="setter")
    foreign = await create_member(session, other_org)
    for closer_id in ("user_missing", inactive.id, setter.id, foreign.id):
        error(await _book_raw(client, org, lead.id, closer_id), 404, "CLOSER_NOT_FOUND")
    assert await webhooks(database, org, "call.booked") == []


async def test_book_admin_can_be_the_closer(client: httpx.AsyncClient, org: Org, session) -> None:
    lead = await create_lead(session, org)
    admin = await create_member(session, org, role="admin")
    ok(await _book_raw(client, org, lead.id, admin.id), 201)


async def test_book_closer_without_valid_calendar_is_409(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    lead = await create_lead(session, org)
    none = await create_member(session, org, calendar=False)
    invalid = await create_member(session, org, calendar_status="invalid")
    for closer in (none, invalid):
        error(await _book_raw(client, org, lead.id, closer.id), 409, "CALENDAR_NOT_CONNECTED")


async def test_book_conflict_with_a_call(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    first = await book(client, org, lead=lead, closer=closer, start=start, minutes=60)
    r = await _book_raw(client, org, lead.id, closer.id, start=start + timedelta(minutes=30))
    body = error(r, 409, "CLOSER_CONFLICT")
    assert body["details"]["conflicts"] == [
        {
            "start": iso(start),
            "end": iso(start + timedelta(minutes=60)),
            "source": "call",
            "call_id": first["id"],
        }
    ]
    assert len(await webhooks(database, org, "call.booked")) == 1
    # back to back is not a conflict
    ok(
        await _book_raw(client, org, lead.id, closer.id, start=start + timedelta(minutes=60)),
        201,
    )
    ok(
        await _book_raw(
            client, org, lead.id, closer.id, start=start - timedelta(minutes=45), minutes=45
        ),
        201,
    )


async def test_book_conflict_with_a_busy_block(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    await add_busy_block(
        client, org, closer.id, start - timedelta(hours=1), start + timedelta(minutes=15)
    )
    body = error(
        await _book_raw(client, org, lead.id, closer.id, start=start), 409, "CLOSER_CONFLICT"
    )
    conflicts = body["details"]["conflicts"]
    assert len(conflicts) == 1
    assert conflicts[0]["source"] == "calendar"
    assert conflicts[0]["start"] == iso(start - timedelta(hours=1))
    assert conflicts[0]["end"] == iso(start + timedelta(minutes=15))
    assert conflicts[0].get("call_id") is None


async def test_book_conflict_lists_call_and_calendar(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    existing = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=start, duration_minutes=30
    )
    await add_busy_block(
        client, org, closer.id, start + timedelta(minutes=30), start + timedelta(minutes=60)
    )
    r = await _book_raw(client, org, lead.id, closer.id, start=start + timedelta(minutes=15))
    conflicts = error(r, 409, "CLOSER_CONFLICT")["details"]["conflicts"]
    assert {c["source"] for c in conflicts} == {"call", "calendar"}
    by_source = {c["source"]: c for c in conflicts}
    assert by_source["call"]["call_id"] == existing.id
    for c in conflicts:
        assert set(c) <= {"start", "end", "source", "call_id"}
        assert c["start"].endswith("Z")
        assert c["end"].endswith("Z")


async def test_book_cancelled_call_does_not_conflict(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=start, status="cancelled"
    )
    ok(await _book_raw(client, org, lead.id, closer.id, start=start), 201)


async def test_book_override_conflict_succeeds(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    first = await book(client, org, lead=lead, closer=closer, start=start)
    await add_busy_block(client, org, closer.id, start, start + timedelta(hours=2))
    second = ok(
        await _book_raw(client, org, lead.id, closer.id, start=start, override_conflict=True),
        201,
    )
    assert second["id"] != first["id"]
    assert second["closer_id"] == closer.id
    assert second["calendar_event_id"] != first["calendar_event_id"]
    await event_row(database, second["calendar_event_id"])
    assert second["conferencing_link"] != first["conferencing_link"]


# --- product and setter --------------------------------------------------------------------------
async def test_book_product_rules(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    active = await create_product(client, org)
    inactive = await create_product(client, org, active=False)
    foreign = await create_product(client, other_org)
    error(
        await _book_raw(client, org, lead.id, closer.id, product_id="prod_missing"),
        404,
        "PRODUCT_NOT_FOUND",
    )
    error(
        await _book_raw(client, org, lead.id, closer.id, product_id=foreign["id"]),
        404,
        "PRODUCT_NOT_FOUND",
    )
    error(
        await _book_raw(client, org, lead.id, closer.id, product_id=inactive["id"]),
        409,
        "PRODUCT_INACTIVE",
    )
    data = ok(await _book_raw(client, org, lead.id, closer.id, product_id=active["id"]), 201)
    assert data["product_id"] == active["id"]


async def test_book_setter_rules(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    inactive = await create_member(session, org, role="setter", is_active=False)
    foreign = await create_member(session, other_org, role="setter")
    for setter_id in ("user_nosetter", inactive.id, foreign.id):
        error(
            await _book_raw(client, org, lead.id, closer.id, setter_id=setter_id),
            404,
            "SETTER_NOT_FOUND",
        )
    error(
        await _book_raw(client, org, lead.id, closer.id, setter_id="not-a-user-id"),
        400,
        "VALIDATION_ERROR",
    )


async def test_booked_link_redirects_with_302(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    data = await book(client, org, lead=lead, closer=closer, start=future(days=2))
    r = await client.get(meet_path(data["conferencing_link"]))
    assert r.status_code == 302
    assert r.headers["location"].startswith("https://meet.example.test/")
    # a token we never issued
    error(await client.get("/meet/unknown-token"), 404, "LINK_NOT_FOUND")


@pytest.mark.parametrize(
    "when", ["9999-12-31T23:30:00Z", "0001-01-01T00:00:00+05:00", "1000-01-01T00:00:00Z"]
)
async def test_book_timestamp_out_of_range_is_400_not_500(
    client: httpx.AsyncClient, org: Org, session, when: str
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead_id": lead.id,
            "scheduled_at": when,
            "duration_minutes": 45,
            "closer_id": closer.id,
        },
    )
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "scheduled_at"


async def test_book_unknown_booking_link_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    r = await _book_raw(client, org, lead.id, closer.id, booking_link_id="bl_missing")
    error(r, 404, "BOOKING_LINK_NOT_FOUND")
    # and a booking link of another organization is just as unknown
    other = await create_booking_link(database, other_org, "bl_theirs")
    r = await _book_raw(client, org, lead.id, closer.id, booking_link_id=other)
    error(r, 404, "BOOKING_LINK_NOT_FOUND")
