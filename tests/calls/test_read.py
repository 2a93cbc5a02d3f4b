"""GET /v1/calls/{id} (seed 004 + SPEC §3 extras), GET /v1/calls (filters, order, cursor)."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from closerdesk.db import Database
from tests.calls.helpers import (
    SEED_004_FIELDS,
    SPEC_EXTRA_FIELDS,
    create_booking_link,
    create_product,
    error,
    future,
    iso,
    ok,
    past,
)
from tests.factories import Org, create_call, create_lead, create_member

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# --- GET /v1/calls/{id} --------------------------------------------------------------------------
async def test_get_call_has_every_seed_004_field_and_spec_extras(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    await create_booking_link(database, org, "bl_abc123")
    closer = await create_member(session, org, name="Dana Closer", email="dana@example.com")
    setter = await create_member(session, org, role="setter", calendar=False)
    lead = await create_lead(session, org, time_zone="Europe/Berlin")
    product = await create_product(client, org)
    start = past(days=1)
    call = await create_call(
        session,
        org,
        lead=lead,
        closer=closer,
        scheduled_at=start,
        status="closed",
        setter_id=setter.id,
        booking_link_id="bl_abc123",
        product_id=product["id"],
        started_at=start + timedelta(minutes=2),
        ended_at=start + timedelta(minutes=40),
        expected_deal_value=500000,
        linked_payment_id="pay_abc123",
        ai_summary="Lead is ready to buy.",
        action_items=[
            {"title": "Send contract", "owner": "closer", "due_at": "2026-01-21", "notes": "PDF"}
        ],
        form_data=[{"field_id": "budget", "label": "What is your budget?", "value": "10k"}],
        notes="Went well",
        recording_url="https://recordings.example.test/1.mp4",
        transcript_data={
            "duration_seconds": 2280,
            "language": "en",
            "segments": [
                {"start_seconds": 0, "end_seconds": 4.5, "speaker": "closer", "text": "Hi!"}
            ],
        },
        guest_rsvp_status="yes",
        guest_rsvp_confirmed_at=start - timedelta(hours=3),
        utm_source="google",
        utm_medium="cpc",
        utm_campaign="summer_promo",
        utm_term="closing",
        utm_content="ad-1",
        referral="partner-x",
    )

    r = await client.get(f"/v1/calls/{call.id}", headers=org.auth("read"))
    data = ok(r)
    assert set(data) == SEED_004_FIELDS | SPEC_EXTRA_FIELDS

    assert data["id"] == call.id
    assert data["call_kind"] == "booking"
    assert data["lead_id"] == lead.id
    assert data["closer_id"] == closer.id
    assert data["setter_id"] == setter.id
    assert data["booking_link_id"] == "bl_abc123"
    assert data["product_id"] == product["id"]
    assert data["scheduled_at"] == iso(start)
    assert data["started_at"] == iso(start + timedelta(minutes=2))
    assert data["ended_at"] == iso(start + timedelta(minutes=40))
    assert data["duration_minutes"] == 45
    assert data["status"] == "closed"
    assert data["conferencing_link"] == call.conferencing_link
    assert data["expected_deal_value"] == 500000
    assert isinstance(data["expected_deal_value"], int)
    assert data["linked_payment_id"] == "pay_abc123"
    assert data["ai_summary"] == "Lead is ready to buy."
    assert data["action_items"] == [
        {"title": "Send contract", "owner": "closer", "due_at": "2026-01-21", "notes": "PDF"}
    ]
    assert data["form_data"] == [
        {"field_id": "budget", "label": "What is your budget?", "value": "10k"}
    ]
    assert data["notes"] == "Went well"
    assert data["recording_url"] == "https://recordings.example.test/1.mp4"
    assert data["has_recording"] is True
    assert data["has_analysis"] is True
    transcript = data["transcript_data"]
    assert transcript["duration_seconds"] == 2280
    assert transcript["language"] == "en"
    assert transcript["segments"] == [
        {"start_seconds": 0, "end_seconds": 4.5, "speaker": "closer", "text": "Hi!"}
    ]
    assert data["guest_rsvp_status"] == "yes"
    assert data["guest_rsvp_confirmed_at"] == iso(start - timedelta(hours=3))
    assert data["utm_source"] == "google"
    assert data["utm_medium"] == "cpc"
    assert data["utm_campaign"] == "summer_promo"
    assert data["utm_term"] == "closing"
    assert data["utm_content"] == "ad-1"
    assert data["referral"] == "partner-x"
    for name in ("scheduled_at", "started_at", "ended_at", "created_at", "updated_at"):
        assert RFC3339_Z.match(data[name]), (name, data[name])
    # SPEC §3 extras
    assert data["closer_name"] == "Dana Closer"
    assert data["closer_email"] == "dana@example.com"
    assert data["time_zone"] == "Europe/Berlin"
    assert data["calendar_event_id"] == call.calendar_event_id
    assert isinstance(data["calendar_event_id"], str)
    assert data["cancelled_at"] is None
    assert data["cancel_reason"] is None
    assert data["reschedule_count"] == 0
    assert isinstance(data["reschedule_count"], int)


async def test_get_call_minimal_has_nulls_and_false_flags(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    data = ok(await client.get(f"/v1/calls/{call.id}", headers=org.headers))
    assert set(data) == SEED_004_FIELDS | SPEC_EXTRA_FIELDS
    assert data["has_recording"] is False
    assert data["has_analysis"] is False
    assert data["action_items"] == []
    assert data["form_data"] == []
    for name in ("transcript_data", "recording_url", "ai_summary", "setter_id", "product_id"):
        assert data[name] is None, name


async def test_get_intent_call_has_no_time(client: httpx.AsyncClient, org: Org, session) -> None:
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=None, call_kind="intent")
    data = ok(await client.get(f"/v1/calls/{call.id}", headers=org.headers))
    assert data["call_kind"] == "intent"
    assert data["scheduled_at"] is None
    assert data["duration_minutes"] is None
    assert data["conferencing_link"] is None
    assert data["calendar_event_id"] is None


async def test_get_unknown_call_is_404(client: httpx.AsyncClient, org: Org) -> None:
    error(
        await client.get("/v1/calls/call_doesnotexist", headers=org.headers), 404, "CALL_NOT_FOUND"
    )


async def test_get_call_of_other_org_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, other_org)
    lead = await create_lead(session, other_org)
    call = await create_call(session, other_org, lead=lead, closer=closer)
    error(await client.get(f"/v1/calls/{call.id}", headers=org.headers), 404, "CALL_NOT_FOUND")
    error(
        await client.get(f"/v1/calls/{call.id}/history", headers=org.headers),
        404,
        "CALL_NOT_FOUND",
    )
    ok(await client.get(f"/v1/calls/{call.id}", headers=other_org.headers))


async def test_get_call_requires_api_key(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    error(await client.get(f"/v1/calls/{call.id}"), 401, "UNAUTHORIZED")


# --- GET /v1/calls -------------------------------------------------------------------------------
async def _ids(client: httpx.AsyncClient, org: Org, params: dict[str, str]) -> list[str]:
    r = await client.get("/v1/calls", headers=org.auth("read"), params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert body["pagination"] == {"next_cursor": None, "has_more": False}
    return [c["id"] for c in body["data"]]


@pytest.fixture
async def calls_world(org: Org, other_org: Org, session, database: Database):  # type: ignore[no-untyped-def]
    """A spread of calls: past/future, cancelled, outcomes, intents, two closers and setters."""
    await create_booking_link(database, org, "bl_world")
    closer_a = await create_member(session, org)
    closer_b = await create_member(session, org)
    setter = await create_member(session, org, role="setter", calendar=False)
    lead_1 = await create_lead(session, org)
    lead_2 = await create_lead(session, org)
    base = future(days=5)
    made = {
        "past_shown": await create_call(
            session, org, lead=lead_1, closer=closer_a, scheduled_at=past(days=2), status="shown"
        ),
        "past_scheduled": await create_call(
            session, org, lead=lead_2, closer=closer_b, scheduled_at=past(days=1)
        ),
        "future_a": await create_call(
            session, org, lead=lead_1, closer=closer_a, scheduled_at=base, setter_id=setter.id
        ),
        "future_b": await create_call(
            session,
            org,
            lead=lead_2,
            closer=closer_b,
            scheduled_at=base + timedelta(days=1),
            booking_link_id="bl_world",
        ),
        "future_cancelled": await create_call(
            session,
            org,
            lead=lead_1,
            closer=closer_b,
            scheduled_at=base + timedelta(days=2),
            status="cancelled",
        ),
        "intent": await create_call(
            session, org, lead=lead_2, closer=None, call_kind="intent", setter_id=setter.id
        ),
    }
    other_closer = await create_member(session, other_org)
    other_lead = await create_lead(session, other_org)
    await create_call(session, other_org, lead=other_lead, closer=other_closer)
    return {
        "calls": {k: v.id for k, v in made.items()},
        "closer_a": closer_a,
        "closer_b": closer_b,
        "setter": setter,
        "lead_1": lead_1,
        "lead_2": lead_2,
        "base": base,
    }


async def test_list_orders_by_scheduled_at_then_id_with_intent_last_and_hides_other_orgs(
    client: httpx.AsyncClient, org: Org, calls_world
) -> None:
    c = calls_world["calls"]
    ids = await _ids(client, org, {})
    assert ids == [
        c["past_shown"],
        c["past_scheduled"],
        c["future_a"],
        c["future_b"],
        c["future_cancelled"],
        c["intent"],
    ]


async def test_list_filter_status(client: httpx.AsyncClient, org: Org, calls_world) -> None:
    c = calls_world["calls"]
    assert await _ids(client, org, {"status": "cancelled"}) == [c["future_cancelled"]]
    assert await _ids(client, org, {"status": "shown"}) == [c["past_shown"]]
    assert await _ids(client, org, {"status": "scheduled"}) == [
        c["past_scheduled"],
        c["future_a"],
        c["future_b"],
        c["intent"],
    ]
    assert await _ids(client, org, {"status": "lost"}) == []
    r = await client.get("/v1/calls", headers=org.headers, params={"status": "bogus"})
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "status"


async def test_list_filter_lead_closer_setter_booking_link(
    client: httpx.AsyncClient, org: Org, calls_world
) -> None:
    c = calls_world["calls"]
    assert await _ids(client, org, {"lead_id": calls_world["lead_1"].id}) == [
        c["past_shown"],
        c["future_a"],
        c["future_cancelled"],
    ]
    assert await _ids(client, org, {"closer_id": calls_world["closer_b"].id}) == [
        c["past_scheduled"],
        c["future_b"],
        c["future_cancelled"],
    ]
    assert await _ids(client, org, {"setter_id": calls_world["setter"].id}) == [
        c["future_a"],
        c["intent"],
    ]
    assert await _ids(client, org, {"booking_link_id": "bl_world"}) == [c["future_b"]]
    assert await _ids(client, org, {"closer_id": "user_nobody"}) == []
    # combined filters AND together
    assert await _ids(
        client,
        org,
        {"lead_id": calls_world["lead_1"].id, "closer_id": calls_world["closer_b"].id},
    ) == [c["future_cancelled"]]


async def test_list_filter_is_upcoming(client: httpx.AsyncClient, org: Org, calls_world) -> None:
    c = calls_world["calls"]
    assert await _ids(client, org, {"is_upcoming": "true"}) == [c["future_a"], c["future_b"]]
    assert await _ids(client, org, {"is_upcoming": "false"}) == [
        c["past_shown"],
        c["past_scheduled"],
        c["future_cancelled"],
        c["intent"],
    ]


async def test_list_filter_scheduled_window(
    client: httpx.AsyncClient, org: Org, calls_world
) -> None:
    c = calls_world["calls"]
    base = calls_world["base"]
    # scheduled_after is inclusive, scheduled_before exclusive
    assert await _ids(client, org, {"scheduled_after": iso(base)}) == [
        c["future_a"],
        c["future_b"],
        c["future_cancelled"],
    ]
    assert await _ids(client, org, {"scheduled_before": iso(base)}) == [
        c["past_shown"],
        c["past_scheduled"],
    ]
    assert await _ids(
        client,
        org,
        {"scheduled_after": iso(base), "scheduled_before": iso(base + timedelta(days=2))},
    ) == [c["future_a"], c["future_b"]]
    # an offset is accepted and normalised
    local = (base + timedelta(days=1)).astimezone(ZoneInfo("America/New_York"))
    assert await _ids(client, org, {"scheduled_after": local.isoformat()}) == [
        c["future_b"],
        c["future_cancelled"],
    ]


async def test_list_naive_timestamp_filter_is_400(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.get(
        "/v1/calls", headers=org.headers, params={"scheduled_after": "2026-01-20T15:00:00"}
    )
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "scheduled_after"


async def test_list_cursor_pagination_walks_every_row_once(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    same_time = future(days=3)
    expected = []
    # ties on scheduled_at (ordered by id), distinct times, and several intents (null times)
    for offset in (0, 0, 0, 60, 120):
        call = await create_call(
            session,
            org,
            lead=lead,
            closer=closer,
            scheduled_at=same_time + timedelta(minutes=offset),
            with_event=False,
        )
        expected.append((same_time + timedelta(minutes=offset), call.id))
    intents = [
        (await create_call(session, org, lead=lead, closer=None, call_kind="intent")).id
        for _ in range(3)
    ]
    order = [cid for _, cid in sorted(expected)] + sorted(intents)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2"}
        if cursor is not None:
            params["cursor"] = cursor
        r = await client.get("/v1/calls", headers=org.headers, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["data"]) <= 2
        seen += [c["id"] for c in body["data"]]
        pages += 1
        cursor = body["pagination"]["next_cursor"]
        assert body["pagination"]["has_more"] is (cursor is not None)
        if cursor is None:
            break
        assert pages < 10
    assert seen == order
    assert len(set(seen)) == len(seen) == 8
    assert pages == 4


async def test_list_cursor_keeps_filters(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    mine = []
    for day in range(1, 6):
        mine.append(
            (
                await create_call(
                    session,
                    org,
                    lead=lead,
                    closer=closer,
                    scheduled_at=future(days=day),
                    with_event=False,
                )
            ).id
        )
        await create_call(
            session, org, lead=lead, closer=other, scheduled_at=future(days=day), with_event=False
        )
    seen: list[str] = []
    params = {"limit": "2", "closer_id": closer.id}
    while True:
        body = (await client.get("/v1/calls", headers=org.headers, params=params)).json()
        seen += [c["id"] for c in body["data"]]
        if body["pagination"]["next_cursor"] is None:
            break
        params["cursor"] = body["pagination"]["next_cursor"]
    assert seen == mine


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "!!!!",
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(json.dumps(["x"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, 2]).encode()).decode(),
        # the right width, the wrong types: a string where a time belongs
        base64.urlsafe_b64encode(json.dumps(["yesterday", "call_x"]).encode()).decode(),
        # a time without an offset
        base64.urlsafe_b64encode(
            json.dumps([{"t": "2026-01-20T15:00:00"}, "call_x"]).encode()
        ).decode(),
    ],
)
async def test_list_bad_cursor_is_400(
    client: httpx.AsyncClient, org: Org, session, cursor: str
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    await create_call(session, org, lead=lead, closer=closer)
    r = await client.get("/v1/calls", headers=org.headers, params={"cursor": cursor})
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "cursor"


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc"])
async def test_list_limit_out_of_range_is_400(
    client: httpx.AsyncClient, org: Org, limit: str
) -> None:
    r = await client.get("/v1/calls", headers=org.headers, params={"limit": limit})
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "limit"


async def test_list_limit_bounds_accepted(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    for day in (1, 2):
        await create_call(session, org, lead=lead, closer=closer, scheduled_at=future(days=day))
    r = await client.get("/v1/calls", headers=org.headers, params={"limit": "1"})
    body = r.json()
    assert len(body["data"]) == 1
    assert body["pagination"]["has_more"] is True
    r = await client.get("/v1/calls", headers=org.headers, params={"limit": "100"})
    assert len(r.json()["data"]) == 2


async def test_list_needs_api_key(client: httpx.AsyncClient, database: Database) -> None:
    error(await client.get("/v1/calls"), 401, "UNAUTHORIZED")


async def test_list_out_of_range_timestamp_is_400_not_500(
    client: httpx.AsyncClient, org: Org
) -> None:
    for value in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        r = await client.get("/v1/calls", headers=org.headers, params={"scheduled_after": value})
        assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == "scheduled_after"
