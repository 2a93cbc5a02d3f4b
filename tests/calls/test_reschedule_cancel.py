"""POST /v1/calls/{id}/reschedule (after seed 002) and POST /v1/calls/{id}/cancel."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from closerdesk.db import Database
from tests.calls.helpers import (
    SEED_004_FIELDS,
    SPEC_EXTRA_FIELDS,
    add_busy_block,
    assert_link_live,
    assert_link_revoked,
    book,
    call_events,
    call_row,
    connection_of,
    error,
    event_row,
    future,
    get_call,
    iso,
    ok,
    past,
    webhooks,
    webhooks_for_call,
)
from tests.factories import Org, create_call, create_lead, create_member


async def reschedule(
    client: httpx.AsyncClient, org: Org, call_id: str, body: dict
) -> httpx.Response:
    return await client.post(f"/v1/calls/{call_id}/reschedule", headers=org.headers, json=body)


async def cancel(
    client: httpx.AsyncClient, org: Org, call_id: str, body: dict | None = None
) -> httpx.Response:
    url = f"/v1/calls/{call_id}/cancel"
    if body is None:
        return await client.post(url, headers=org.headers)
    return await client.post(url, headers=org.headers, json=body)


# --- reschedule: rules ---------------------------------------------------------------------------
async def test_reschedule_intent_is_not_reassignable(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=None, call_kind="intent")
    r = await reschedule(client, org, call.id, {"scheduled_at": iso(future(days=2))})
    error(r, 409, "CALL_NOT_REASSIGNABLE")


async def test_reschedule_cancelled_is_409(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, status="cancelled")
    r = await reschedule(client, org, call.id, {"scheduled_at": iso(future(days=3))})
    error(r, 409, "CALL_CANCELLED")


async def test_reschedule_started_call_is_in_past(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(minutes=5))
    r = await reschedule(client, org, call.id, {"scheduled_at": iso(future(days=3))})
    error(r, 409, "CALL_IN_PAST")
    # even when the new time is in the past too: the call's state is checked first
    r = await reschedule(client, org, call.id, {"scheduled_at": iso(past(days=3))})
    error(r, 409, "CALL_IN_PAST")
    assert (await call_row(database, call.id)).reschedule_count == 0


async def test_reschedule_to_the_past_is_slot_in_past(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await book(client, org, lead=lead, closer=closer, start=future(days=2))
    r = await reschedule(client, org, call["id"], {"scheduled_at": iso(past(minutes=1))})
    error(r, 400, "SLOT_IN_PAST")
    assert await get_call(client, org, call["id"]) == call
    assert await webhooks(database, org, "call.rescheduled") == []


async def test_reschedule_naive_time_is_400(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    naive = future(days=3).replace(tzinfo=None).isoformat()
    body = error(
        await reschedule(client, org, call.id, {"scheduled_at": naive}), 400, "VALIDATION_ERROR"
    )
    assert body["details"][0]["field"] == "scheduled_at"
    body = error(
        await reschedule(
            client,
            org,
            call.id,
            {"scheduled_at": iso(future(days=3)), "time_zone": "Not/AZone"},
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert body["details"][0]["field"] == "time_zone"


async def test_reschedule_unknown_call_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, other_org)
    lead = await create_lead(session, other_org)
    call = await create_call(session, other_org, lead=lead, closer=closer)
    for call_id in ("call_missing", call.id):
        r = await reschedule(client, org, call_id, {"scheduled_at": iso(future(days=3))})
        error(r, 404, "CALL_NOT_FOUND")


async def test_reschedule_conflict_is_409(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start)
    target = start + timedelta(days=1)
    other = await book(client, org, lead=lead, closer=closer, start=target + timedelta(minutes=15))
    block_start = target - timedelta(minutes=30)
    await add_busy_block(client, org, closer.id, block_start, target + timedelta(minutes=5))
    r = await reschedule(client, org, call["id"], {"scheduled_at": iso(target)})
    conflicts = error(r, 409, "CLOSER_CONFLICT")["details"]["conflicts"]
    assert len(conflicts) == 2
    assert conflicts[0]["source"] == "call"
    assert conflicts[0]["call_id"] == other["id"]
    assert conflicts[0]["start"] == iso(target + timedelta(minutes=15))
    assert conflicts[1]["source"] == "calendar"
    assert conflicts[1]["start"] == iso(block_start)
    # nothing moved
    assert await get_call(client, org, call["id"]) == call
    assert (await event_row(database, call["calendar_event_id"])).starts_at == start


async def test_reschedule_overlapping_its_own_old_slot_is_free(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start, minutes=60)
    r = await reschedule(
        client, org, call["id"], {"scheduled_at": iso(start + timedelta(minutes=15))}
    )
    data = ok(r)
    assert data["is_slot_free"] is True
    assert data["conflicts"] == []


async def test_reschedule_with_override_reports_conflicts(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start)
    target = start + timedelta(hours=5)
    other = await book(client, org, lead=lead, closer=closer, start=target)
    r = await reschedule(
        client, org, call["id"], {"scheduled_at": iso(target), "override_conflict": True}
    )
    data = ok(r)
    assert data["is_slot_free"] is False
    assert data["conflicts"] == [
        {
            "start": iso(target),
            "end": iso(target + timedelta(minutes=45)),
            "source": "call",
            "call_id": other["id"],
        }
    ]
    assert data["scheduled_at"] == iso(target)


async def test_reschedule_to_unknown_new_closer_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, org)
    foreign = await create_member(session, other_org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    for closer_id in ("user_nobody", foreign.id):
        r = await reschedule(
            client,
            org,
            call.id,
            {"scheduled_at": iso(future(days=3)), "new_closer_id": closer_id},
        )
        error(r, 404, "CLOSER_NOT_FOUND")


async def test_reschedule_to_new_closer_without_calendar_is_409(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org, calendar=False)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    r = await reschedule(
        client, org, call.id, {"scheduled_at": iso(future(days=3)), "new_closer_id": other.id}
    )
    error(r, 409, "CALENDAR_NOT_CONNECTED")


# --- reschedule: success -------------------------------------------------------------------------
async def test_reschedule_same_closer_moves_event_and_keeps_link(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start, minutes=45)
    target = start + timedelta(days=1, hours=2)
    r = await reschedule(
        client,
        org,
        call["id"],
        {
            "scheduled_at": iso(target),
            "time_zone": "Europe/Berlin",
            "reason": "Lead asked for Thursday",
            "notes": "Moved on request",
            "duration_minutes": 60,
        },
    )
    data = ok(r)
    # the call plus seed 002's answers
    assert set(data) == SEED_004_FIELDS | SPEC_EXTRA_FIELDS | {
        "is_slot_free",
        "conflicts",
        "previous_scheduled_at",
    }
    assert data["id"] == call["id"]
    assert data["scheduled_at"] == iso(target)
    assert data["previous_scheduled_at"] == iso(start)
    assert data["duration_minutes"] == 60
    assert data["time_zone"] == "Europe/Berlin"
    assert data["notes"] == "Moved on request"
    assert data["reschedule_count"] == 1
    assert data["is_slot_free"] is True
    assert data["conflicts"] == []
    # same closer: same link (still live), same event, moved
    assert data["closer_id"] == closer.id
    assert data["conferencing_link"] == call["conferencing_link"]
    await assert_link_live(client, data["conferencing_link"])
    assert data["calendar_event_id"] == call["calendar_event_id"]
    event = await event_row(database, call["calendar_event_id"])
    assert event.status == "confirmed"
    assert event.starts_at == target
    assert event.ends_at == target + timedelta(minutes=60)
    row = await call_row(database, call["id"])
    assert row.ends_at == target + timedelta(minutes=60)

    got = await get_call(client, org, call["id"])
    assert got["scheduled_at"] == iso(target)
    assert got["reschedule_count"] == 1

    rows = await call_events(database, call["id"])
    assert [e.type for e in rows] == ["booked", "rescheduled"]
    assert rows[-1].reason == "Lead asked for Thursday"
    assert rows[-1].before["scheduled_at"] == iso(start)
    assert rows[-1].after["scheduled_at"] == iso(target)

    hooks = await webhooks_for_call(database, org, "call.rescheduled", call["id"])
    assert len(hooks) == 1
    payload = hooks[0].payload["data"]
    assert payload["previous_scheduled_at"] == iso(start)
    assert payload["scheduled_at"] == iso(target)
    assert payload["reason"] == "Lead asked for Thursday"
    assert payload["rescheduled_by"]["type"] == "api_key"
    assert payload["lead"]["email"] == lead.email
    assert await webhooks(database, org, "call.closer_reassigned") == []

    # and again: the count increments, the previous time is the last one
    again = ok(await reschedule(client, org, call["id"], {"scheduled_at": iso(start)}))
    assert again["reschedule_count"] == 2
    assert again["previous_scheduled_at"] == iso(target)
    assert again["duration_minutes"] == 60  # kept
    assert again["time_zone"] == "Europe/Berlin"


async def test_reschedule_frees_the_old_slot(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start)
    ok(await reschedule(client, org, call["id"], {"scheduled_at": iso(start + timedelta(days=1))}))
    await book(client, org, lead=lead, closer=closer, start=start)


async def test_reschedule_with_new_closer_changes_link_and_events(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    old = await create_member(session, org)
    new = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=old, start=start)
    target = start + timedelta(hours=3)
    r = await reschedule(
        client,
        org,
        call["id"],
        {"scheduled_at": iso(target), "new_closer_id": new.id, "reason": "swap"},
    )
    data = ok(r)
    assert data["closer_id"] == new.id
    assert data["closer_name"] == new.name
    assert data["closer_email"] == new.email
    assert data["scheduled_at"] == iso(target)
    assert data["previous_scheduled_at"] == iso(start)
    assert data["reschedule_count"] == 1
    assert data["conferencing_link"] != call["conferencing_link"]
    assert data["calendar_event_id"] != call["calendar_event_id"]
    await assert_link_revoked(client, call["conferencing_link"])
    await assert_link_live(client, data["conferencing_link"])
    old_event = await event_row(database, call["calendar_event_id"])
    assert old_event.status == "cancelled"
    new_event = await event_row(database, data["calendar_event_id"])
    assert new_event.status == "confirmed"
    assert new_event.connection_id == (await connection_of(database, new.id)).id
    assert new_event.starts_at == target
    rescheduled = await webhooks_for_call(database, org, "call.rescheduled", call["id"])
    assert len(rescheduled) == 1
    assert rescheduled[0].payload["data"]["previous_scheduled_at"] == iso(start)
    assert rescheduled[0].payload["data"]["scheduled_at"] == iso(target)
    reassigned = await webhooks(database, org, "call.closer_reassigned")
    assert len(reassigned) == 1
    assert reassigned[0].payload["data"]["previous_closer_id"] == old.id
    assert reassigned[0].payload["data"]["new_closer_id"] == new.id


async def test_reschedule_to_new_closer_checks_new_closers_conflicts(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    old = await create_member(session, org)
    new = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=old, start=start)
    target = start + timedelta(hours=3)
    await add_busy_block(client, org, new.id, target, target + timedelta(hours=1))
    r = await reschedule(
        client, org, call["id"], {"scheduled_at": iso(target), "new_closer_id": new.id}
    )
    error(r, 409, "CLOSER_CONFLICT")
    await assert_link_live(client, call["conferencing_link"])


# --- cancel --------------------------------------------------------------------------------------
async def test_cancel_success(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await book(client, org, lead=lead, closer=closer, start=future(days=2))
    data = ok(await cancel(client, org, call["id"], {"reason": "Lead found another vendor"}))
    assert set(data) == SEED_004_FIELDS | SPEC_EXTRA_FIELDS
    assert data["status"] == "cancelled"
    assert data["cancel_reason"] == "Lead found another vendor"
    assert data["cancelled_at"] is not None
    assert data["cancelled_at"].endswith("Z")
    got = await get_call(client, org, call["id"])
    assert got["status"] == "cancelled"
    assert got["cancel_reason"] == "Lead found another vendor"
    row = await call_row(database, call["id"])
    assert row.cancel_reason == "Lead found another vendor"
    await assert_link_revoked(client, call["conferencing_link"])
    assert (await event_row(database, call["calendar_event_id"])).status == "cancelled"
    rows = await call_events(database, call["id"])
    assert [e.type for e in rows] == ["booked", "cancelled"]
    assert rows[-1].reason == "Lead found another vendor"
    hooks = await webhooks_for_call(database, org, "call.cancelled", call["id"])
    assert len(hooks) == 1
    assert hooks[0].payload["data"]["reason"] == "Lead found another vendor"
    assert hooks[0].payload["data"]["call"]["status"] == "cancelled"
    assert hooks[0].payload["data"]["cancelled_by"]["type"] == "api_key"


async def test_cancel_removes_its_own_event_and_link_only(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    """The closer's other call keeps its calendar event and its conferencing link: the cancel
    names one event and one link, not the calendar's or the organization's."""
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    kept = await book(client, org, lead=lead, closer=closer, start=future(days=2))
    gone = await book(client, org, lead=lead, closer=closer, start=future(days=3))
    ok(await cancel(client, org, gone["id"], {}))
    assert (await event_row(database, gone["calendar_event_id"])).status == "cancelled"
    assert (await event_row(database, kept["calendar_event_id"])).status == "confirmed"
    await assert_link_revoked(client, gone["conferencing_link"])
    await assert_link_live(client, kept["conferencing_link"])


async def test_cancel_without_body(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    data = ok(await cancel(client, org, call.id))
    assert data["status"] == "cancelled"
    assert data["cancel_reason"] is None
    await assert_link_revoked(client, call.conferencing_link)


async def test_cancel_twice_is_409(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await book(client, org, lead=lead, closer=closer, start=future(days=2))
    ok(await cancel(client, org, call["id"], {"reason": "first"}))
    error(await cancel(client, org, call["id"], {"reason": "second"}), 409, "CALL_CANCELLED")
    assert (await call_row(database, call["id"])).cancel_reason == "first"
    assert len(await webhooks(database, org, "call.cancelled")) == 1


async def test_cancel_past_call_is_409(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(hours=1))
    error(await cancel(client, org, call.id, {"reason": "too late"}), 409, "CALL_IN_PAST")
    assert (await call_row(database, call.id)).status == "scheduled"
    await assert_link_live(client, call.conferencing_link)
    assert (await event_row(database, call.calendar_event_id)).status == "confirmed"
    assert await webhooks(database, org, "call.cancelled") == []


async def test_cancel_intent_call(client: httpx.AsyncClient, org: Org, session) -> None:
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=None, call_kind="intent")
    data = ok(await cancel(client, org, call.id, {"reason": "no longer interested"}))
    assert data["status"] == "cancelled"


async def test_cancel_unknown_call_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, other_org)
    lead = await create_lead(session, other_org)
    call = await create_call(session, other_org, lead=lead, closer=closer)
    for call_id in ("call_missing", call.id):
        error(await cancel(client, org, call_id, {}), 404, "CALL_NOT_FOUND")


@pytest.mark.parametrize("body", [{"reason": "x" * 1001}, {"why": "extra"}, {"reason": 5}])
async def test_cancel_invalid_body_is_400(
    client: httpx.AsyncClient, org: Org, session, body: dict
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    error(await cancel(client, org, call.id, body), 400, "VALIDATION_ERROR")


async def test_cancelled_call_frees_the_slot(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start)
    ok(await cancel(client, org, call["id"]))
    await book(client, org, lead=lead, closer=closer, start=start)


async def test_reschedule_out_of_range_is_400_not_500(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    r = await reschedule(client, org, call.id, {"scheduled_at": "9999-12-31T23:30:00Z"})
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == "scheduled_at"
