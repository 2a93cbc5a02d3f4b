"""POST /v1/calls/{id}/reassign-closer (seed 000): every row of SPEC §3's table, its order,
and the effects of a success."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from closerdesk.db import Database
from closerdesk.models import CalendarConnection, CalendarEvent, TeamMember
from tests.booking_links.helpers import book_through_link, create_link, day, host
from tests.calls.helpers import (
    REASSIGN_RESULT_FIELDS,
    add_busy_block,
    assert_link_live,
    assert_link_revoked,
    book,
    call_events,
    call_row,
    connection_of,
    error,
    event_row,
    events_of_call,
    fetch_all,
    future,
    get_call,
    history,
    iso,
    ok,
    past,
    webhooks,
    webhooks_for_call,
)
from tests.factories import Org, create_call, create_lead, create_member


async def reassign(client: httpx.AsyncClient, org: Org, call_id: str, body: dict) -> httpx.Response:
    return await client.post(f"/v1/calls/{call_id}/reassign-closer", headers=org.headers, json=body)


async def _set_active(database: Database, member_id: str, active: bool) -> None:
    async with database.writer() as s:
        await s.execute(
            update(TeamMember).where(TeamMember.id == member_id).values(is_active=active)
        )
        await s.commit()


async def _set_calendar_status(database: Database, member_id: str, status: str) -> None:
    async with database.writer() as s:
        await s.execute(
            update(CalendarConnection)
            .where(CalendarConnection.member_id == member_id)
            .values(status=status)
        )
        await s.commit()


async def _assert_unchanged(
    client: httpx.AsyncClient, org: Org, database: Database, before: dict
) -> None:
    """A refused reassign changed nothing: same call, no new event, no outbox row, link live."""
    after = await get_call(client, org, before["id"])
    assert after == before
    assert await webhooks(database, org, "call.closer_reassigned") == []
    events = await events_of_call(database, before["id"])
    assert [e.status for e in events] == ["confirmed"] * len(events)
    assert [e.type for e in await call_events(database, before["id"])] in ([], ["booked"])
    if before["conferencing_link"]:
        await assert_link_live(client, before["conferencing_link"])


# --- row 1: body invalid (400), checked before anything else --------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"new_closer_id": "user-with-dash"}, "new_closer_id"),
        ({"new_closer_id": "2abc123xyz"}, "new_closer_id"),
        ({"new_closer_id": ""}, "new_closer_id"),
        ({"new_closer_id": 12345}, "new_closer_id"),
        ({}, "new_closer_id"),
        ({"new_closer_id": "user_ok", "reason": "x" * 1001}, "reason"),
        ({"new_closer_id": "user_ok", "override_conflict": "perhaps"}, "override_conflict"),
        ({"new_closer_id": "user_ok", "unknown": 1}, "unknown"),
    ],
)
async def test_invalid_body_is_400(
    client: httpx.AsyncClient, org: Org, session, body: dict, field: str
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    r = await reassign(client, org, call.id, body)
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == field


async def test_missing_or_non_json_body_is_400(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    url = f"/v1/calls/{call.id}/reassign-closer"
    error(await client.post(url, headers=org.headers), 400, "VALIDATION_ERROR")
    r = await client.post(
        url, headers={**org.headers, "Content-Type": "application/json"}, content=b"{not json"
    )
    error(r, 400, "VALIDATION_ERROR")


async def test_invalid_body_wins_over_unknown_call(client: httpx.AsyncClient, org: Org) -> None:
    r = await reassign(client, org, "call_missing", {"new_closer_id": "not valid"})
    error(r, 400, "VALIDATION_ERROR")


# --- row 2: call missing or of another organization (404) -----------------------------------------
async def test_unknown_call_is_404(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    error(
        await reassign(client, org, "call_missing", {"new_closer_id": closer.id}),
        404,
        "CALL_NOT_FOUND",
    )


async def test_call_of_other_org_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session, database: Database
) -> None:
    their_closer = await create_member(session, other_org)
    their_other = await create_member(session, other_org)
    lead = await create_lead(session, other_org)
    call = await create_call(session, other_org, lead=lead, closer=their_closer)
    # even naming a closer that exists in the call's own organization
    error(
        await reassign(client, org, call.id, {"new_closer_id": their_other.id}),
        404,
        "CALL_NOT_FOUND",
    )
    assert (await call_row(database, call.id)).closer_id == their_closer.id


async def test_intent_call_of_other_org_is_404_not_409(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    mine = await create_member(session, org)
    lead = await create_lead(session, other_org)
    call = await create_call(session, other_org, lead=lead, closer=None, call_kind="intent")
    error(await reassign(client, org, call.id, {"new_closer_id": mine.id}), 404, "CALL_NOT_FOUND")


async def test_cancelled_past_call_of_other_org_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, other_org)
    lead = await create_lead(session, other_org)
    call = await create_call(
        session, other_org, lead=lead, closer=closer, scheduled_at=past(days=1), status="cancelled"
    )
    error(await reassign(client, org, call.id, {"new_closer_id": closer.id}), 404, "CALL_NOT_FOUND")


# --- row 3: intent (409 CALL_NOT_REASSIGNABLE) ----------------------------------------------------
async def test_intent_call_is_not_reassignable(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=None, call_kind="intent")
    error(
        await reassign(client, org, call.id, {"new_closer_id": closer.id}),
        409,
        "CALL_NOT_REASSIGNABLE",
    )


async def test_cancelled_intent_call_is_not_reassignable_first(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=None, call_kind="intent", status="cancelled"
    )
    # intent is checked before cancelled and before the (unknown) closer
    error(
        await reassign(client, org, call.id, {"new_closer_id": "user_nobody"}),
        409,
        "CALL_NOT_REASSIGNABLE",
    )


# --- row 4: cancelled (409 CALL_CANCELLED) --------------------------------------------------------
async def test_cancelled_call_is_409(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, status="cancelled")
    error(await reassign(client, org, call.id, {"new_closer_id": other.id}), 409, "CALL_CANCELLED")


async def test_cancelled_call_with_unknown_closer_is_call_cancelled(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, status="cancelled")
    error(
        await reassign(client, org, call.id, {"new_closer_id": "user_nobody"}),
        409,
        "CALL_CANCELLED",
    )


async def test_cancelled_past_call_is_call_cancelled_not_in_past(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=past(days=1), status="cancelled"
    )
    error(await reassign(client, org, call.id, {"new_closer_id": other.id}), 409, "CALL_CANCELLED")


async def test_call_cancelled_through_the_api_cannot_be_reassigned(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await book(client, org, lead=lead, closer=closer, start=future(days=2))
    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))
    error(
        await reassign(client, org, call["id"], {"new_closer_id": other.id}), 409, "CALL_CANCELLED"
    )


# --- row 5: not in the future (409 CALL_IN_PAST) --------------------------------------------------
async def test_past_call_is_409(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(days=1))
    before = await get_call(client, org, call.id)
    error(await reassign(client, org, call.id, {"new_closer_id": other.id}), 409, "CALL_IN_PAST")
    await _assert_unchanged(client, org, database, before)


async def test_call_in_progress_is_in_past(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=past(minutes=10), duration_minutes=60
    )
    error(await reassign(client, org, call.id, {"new_closer_id": other.id}), 409, "CALL_IN_PAST")


async def test_past_call_with_same_closer_is_in_past(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(hours=3))
    error(await reassign(client, org, call.id, {"new_closer_id": closer.id}), 409, "CALL_IN_PAST")


async def test_past_call_with_unknown_closer_is_in_past(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=past(hours=3), status="shown"
    )
    error(
        await reassign(client, org, call.id, {"new_closer_id": "user_nobody"}),
        409,
        "CALL_IN_PAST",
    )


# --- row 6: new closer missing, inactive, other org (404 CLOSER_NOT_FOUND) ------------------------
async def test_unknown_new_closer_is_404(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    error(
        await reassign(client, org, call.id, {"new_closer_id": "user_nobody"}),
        404,
        "CLOSER_NOT_FOUND",
    )


async def test_inactive_new_closer_is_404(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    inactive = await create_member(session, org, is_active=False)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    before = await get_call(client, org, call.id)
    error(
        await reassign(client, org, call.id, {"new_closer_id": inactive.id}),
        404,
        "CLOSER_NOT_FOUND",
    )
    await _assert_unchanged(client, org, database, before)


async def test_cross_org_new_closer_is_404_though_it_exists(
    client: httpx.AsyncClient, org: Org, other_org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    foreign = await create_member(session, other_org)  # valid calendar, free, active
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    before = await get_call(client, org, call.id)
    r = await reassign(client, org, call.id, {"new_closer_id": foreign.id})
    body = error(r, 404, "CLOSER_NOT_FOUND")
    # the answer does not reveal that the id exists elsewhere
    missing = error(
        await reassign(client, org, call.id, {"new_closer_id": "user_nobody"}),
        404,
        "CLOSER_NOT_FOUND",
    )
    assert body["error"] == missing["error"]
    assert body.get("details") == missing.get("details")
    await _assert_unchanged(client, org, database, before)


async def test_setter_as_new_closer_is_404(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    setter = await create_member(session, org, role="setter")
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    error(
        await reassign(client, org, call.id, {"new_closer_id": setter.id}), 404, "CLOSER_NOT_FOUND"
    )


async def test_unknown_closer_without_calendar_is_not_found_first(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org, calendar=False, is_active=False)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    error(
        await reassign(client, org, call.id, {"new_closer_id": other.id}), 404, "CLOSER_NOT_FOUND"
    )


async def test_current_closer_now_inactive_is_not_found_before_same_closer(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    await _set_active(database, closer.id, False)
    error(
        await reassign(client, org, call.id, {"new_closer_id": closer.id}), 404, "CLOSER_NOT_FOUND"
    )


# --- row 7: same closer (409 SAME_CLOSER) ---------------------------------------------------------
async def test_same_closer_is_409(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await book(client, org, lead=lead, closer=closer, start=future(days=2))
    error(await reassign(client, org, call["id"], {"new_closer_id": closer.id}), 409, "SAME_CLOSER")


async def test_same_closer_before_calendar_not_connected(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    await _set_calendar_status(database, closer.id, "invalid")
    error(await reassign(client, org, call.id, {"new_closer_id": closer.id}), 409, "SAME_CLOSER")


async def test_same_closer_without_any_calendar_is_same_closer(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org, calendar=False)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    error(await reassign(client, org, call.id, {"new_closer_id": closer.id}), 409, "SAME_CLOSER")


async def test_same_closer_before_conflict(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=start)
    await create_call(session, org, lead=lead, closer=closer, scheduled_at=start)  # double booked
    error(await reassign(client, org, call.id, {"new_closer_id": closer.id}), 409, "SAME_CLOSER")


# --- row 8: no valid calendar (409 CALENDAR_NOT_CONNECTED) ----------------------------------------
@pytest.mark.parametrize("how", ["none", "invalid"])
async def test_new_closer_without_valid_calendar_is_409(
    client: httpx.AsyncClient, org: Org, session, database: Database, how: str
) -> None:
    closer = await create_member(session, org)
    if how == "none":
        other = await create_member(session, org, calendar=False)
    else:
        other = await create_member(session, org, calendar_status="invalid")
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    before = await get_call(client, org, call.id)
    error(
        await reassign(client, org, call.id, {"new_closer_id": other.id}),
        409,
        "CALENDAR_NOT_CONNECTED",
    )
    # override_conflict does not override a missing calendar
    error(
        await reassign(
            client, org, call.id, {"new_closer_id": other.id, "override_conflict": True}
        ),
        409,
        "CALENDAR_NOT_CONNECTED",
    )
    await _assert_unchanged(client, org, database, before)


async def test_calendar_not_connected_before_conflict(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org, calendar=False)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=start)
    await create_call(session, org, lead=lead, closer=other, scheduled_at=start)
    error(
        await reassign(client, org, call.id, {"new_closer_id": other.id}),
        409,
        "CALENDAR_NOT_CONNECTED",
    )


# --- row 9: busy (409 CLOSER_CONFLICT) ------------------------------------------------------------
async def test_conflict_with_a_call_of_the_new_closer(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start, minutes=45)
    busy = await book(
        client, org, lead=lead, closer=other, start=start + timedelta(minutes=30), minutes=30
    )
    r = await reassign(client, org, call["id"], {"new_closer_id": other.id})
    body = error(r, 409, "CLOSER_CONFLICT")
    assert body["details"]["conflicts"] == [
        {
            "start": iso(start + timedelta(minutes=30)),
            "end": iso(start + timedelta(minutes=60)),
            "source": "call",
            "call_id": busy["id"],
        }
    ]
    await _assert_unchanged(client, org, database, call)


async def test_conflict_with_a_busy_block_of_the_new_closer(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start, minutes=45)
    block_start, block_end = start - timedelta(minutes=30), start + timedelta(minutes=1)
    await add_busy_block(client, org, other.id, block_start, block_end)
    r = await reassign(client, org, call["id"], {"new_closer_id": other.id})
    conflicts = error(r, 409, "CLOSER_CONFLICT")["details"]["conflicts"]
    assert len(conflicts) == 1
    assert conflicts[0]["source"] == "calendar"
    assert conflicts[0]["start"] == iso(block_start)
    assert conflicts[0]["end"] == iso(block_end)
    assert conflicts[0].get("call_id") is None
    await _assert_unchanged(client, org, database, call)


async def test_adjacent_busy_time_is_not_a_conflict(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start, minutes=45)
    await add_busy_block(client, org, other.id, start - timedelta(hours=1), start)
    await create_call(
        session, org, lead=lead, closer=other, scheduled_at=start + timedelta(minutes=45)
    )
    # a cancelled call in the very slot does not count either
    await create_call(session, org, lead=lead, closer=other, scheduled_at=start, status="cancelled")
    ok(await reassign(client, org, call["id"], {"new_closer_id": other.id}))


async def test_override_conflict_succeeds(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=closer, start=start)
    await book(client, org, lead=lead, closer=other, start=start)
    await add_busy_block(client, org, other.id, start, start + timedelta(hours=1))
    r = await reassign(
        client, org, call["id"], {"new_closer_id": other.id, "override_conflict": True}
    )
    data = ok(r)
    assert data["new_closer_id"] == other.id
    after = await get_call(client, org, call["id"])
    assert after["closer_id"] == other.id
    assert after["calendar_event_id"] == data["new_event_id"]
    assert len(await webhooks(database, org, "call.closer_reassigned")) == 1


# --- success --------------------------------------------------------------------------------------
async def test_reassign_success_changes_everything_in_one_go(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    old = await create_member(session, org, name="Olga Old", email="olga@example.com")
    new = await create_member(session, org, name="Nina New", email="nina@example.com")
    lead = await create_lead(
        session,
        org,
        email="lead.person@example.com",
        full_name="Lead Person",
        phone="+14155550199",
        time_zone="America/Denver",
    )
    start = future(days=3)
    call = await book(client, org, lead=lead, closer=old, start=start, minutes=50)
    old_link, old_event_id = call["conferencing_link"], call["calendar_event_id"]

    r = await reassign(
        client, org, call["id"], {"new_closer_id": new.id, "reason": "Olga is out sick"}
    )
    data = ok(r)
    # seed 000's response, exactly
    assert set(data) == REASSIGN_RESULT_FIELDS
    assert data["call_id"] == call["id"]
    assert data["new_closer_id"] == new.id
    assert data["new_closer_name"] == "Nina New"
    assert data["previous_closer_id"] == old.id
    assert data["previous_closer_name"] == "Olga Old"
    assert data["old_event_orphaned"] is False
    assert data["new_event_id"] != old_event_id
    assert data["conferencing_link"] != old_link
    assert data["conferencing_link"].startswith("http://closerdesk.test/meet/")

    # the call changed
    after = await get_call(client, org, call["id"])
    assert after["closer_id"] == new.id
    assert after["closer_name"] == "Nina New"
    assert after["closer_email"] == "nina@example.com"
    assert after["calendar_event_id"] == data["new_event_id"]
    assert after["conferencing_link"] == data["conferencing_link"]
    assert after["scheduled_at"] == iso(start)
    assert after["duration_minutes"] == 50
    assert after["status"] == "scheduled"
    new_connection = await connection_of(database, new.id)
    assert (await call_row(database, call["id"])).calendar_grant_id == new_connection.id

    # links: the old one is revoked, the new one works
    await assert_link_revoked(client, old_link)
    await assert_link_live(client, data["conferencing_link"])

    # calendars: old event cancelled on the old calendar, new event on the new one
    old_event = await event_row(database, old_event_id)
    assert old_event.status == "cancelled"
    assert old_event.connection_id == (await connection_of(database, old.id)).id
    new_event = await event_row(database, data["new_event_id"])
    assert new_event.status == "confirmed"
    assert new_event.connection_id == new_connection.id
    assert new_event.call_id == call["id"]
    assert new_event.starts_at == start
    assert new_event.ends_at == start + timedelta(minutes=50)
    live = await fetch_all(
        database,
        select(CalendarEvent).where(
            CalendarEvent.call_id == call["id"], CalendarEvent.status == "confirmed"
        ),
    )
    assert [e.id for e in live] == [data["new_event_id"]]

    # history: a closer_reassigned row with the reason, before and after
    rows = await call_events(database, call["id"])
    assert [e.type for e in rows] == ["booked", "closer_reassigned"]
    changed = rows[-1]
    assert changed.reason == "Olga is out sick"
    assert changed.actor_type == "api_key"
    assert changed.before["closer_id"] == old.id
    assert changed.after["closer_id"] == new.id
    assert changed.before["conferencing_link"] == old_link
    assert changed.after["conferencing_link"] == data["conferencing_link"]
    entries = await history(client, org, call["id"])
    assert [e["type"] for e in entries] == ["booked", "closer_reassigned"]
    assert entries[-1]["reason"] == "Olga is out sick"

    # exactly one outbox row, carrying what a partner needs to tell the lead
    hooks = await webhooks(database, org, "call.closer_reassigned")
    assert len(hooks) == 1
    payload = hooks[0].payload
    assert payload["event"] == "call.closer_reassigned"
    assert payload["id"] == hooks[0].id
    assert payload["id"].startswith("msg_")
    assert payload["organization_id"] == org.id
    body = payload["data"]
    for key, value in data.items():
        assert body[key] == value, key
    assert body["reason"] == "Olga is out sick"
    assert body["scheduled_at"] == iso(start)
    assert body["duration_minutes"] == 50
    assert body["lead"]["id"] == lead.id
    assert body["lead"]["email"] == "lead.person@example.com"
    assert body["lead"]["full_name"] == "Lead Person"
    assert body["lead"]["phone"] == "+14155550199"
    assert body["lead"]["time_zone"] == "America/Denver"
    assert body["reassigned_by"]["type"] == "api_key"
    assert body["reassigned_by"]["id"] == changed.actor_id


async def test_reassign_without_reason_records_null_reason(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    old = await create_member(session, org)
    new = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=old)
    data = ok(await reassign(client, org, call.id, {"new_closer_id": new.id}))
    assert data["previous_closer_id"] == old.id
    hooks = await webhooks_for_call(database, org, "call.closer_reassigned", call.id)
    assert len(hooks) == 1
    assert hooks[0].payload["data"]["reason"] is None
    rows = await call_events(database, call.id)
    assert [e.type for e in rows] == ["closer_reassigned"]
    assert rows[0].reason is None
    # the factory's old event and link are gone too
    await assert_link_revoked(client, call.conferencing_link)
    assert (await event_row(database, call.calendar_event_id)).status == "cancelled"


async def test_reassign_back_and_forth(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    a = await create_member(session, org)
    b = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await book(client, org, lead=lead, closer=a, start=future(days=2))
    first = ok(await reassign(client, org, call["id"], {"new_closer_id": b.id}))
    second = ok(await reassign(client, org, call["id"], {"new_closer_id": a.id}))
    assert second["previous_closer_id"] == b.id
    assert second["new_closer_id"] == a.id
    links = [call["conferencing_link"], first["conferencing_link"], second["conferencing_link"]]
    assert len(set(links)) == 3
    await assert_link_revoked(client, links[0])
    await assert_link_revoked(client, links[1])
    await assert_link_live(client, links[2])
    events = await events_of_call(database, call["id"])
    assert sorted(e.status for e in events) == ["cancelled", "cancelled", "confirmed"]
    assert len(await webhooks(database, org, "call.closer_reassigned")) == 2
    assert [e["type"] for e in await history(client, org, call["id"])] == [
        "booked",
        "closer_reassigned",
        "closer_reassigned",
    ]


async def test_reassigned_call_frees_the_old_closer(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    a = await create_member(session, org)
    b = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=2)
    call = await book(client, org, lead=lead, closer=a, start=start)
    ok(await reassign(client, org, call["id"], {"new_closer_id": b.id}))
    # a is free again at that time; b is not
    await book(client, org, lead=lead, closer=a, start=start)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead_id": lead.id,
            "scheduled_at": iso(start),
            "duration_minutes": 45,
            "closer_id": b.id,
        },
    )
    conflicts = error(r, 409, "CLOSER_CONFLICT")["details"]["conflicts"]
    assert [c["call_id"] for c in conflicts] == [call["id"]]


async def test_reassign_to_admin_closer(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    admin = await create_member(session, org, role="admin")
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    data = ok(await reassign(client, org, call.id, {"new_closer_id": admin.id}))
    assert data["new_closer_id"] == admin.id


async def test_reassign_with_write_key(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    r = await client.post(
        f"/v1/calls/{call.id}/reassign-closer",
        headers=org.auth("write"),
        json={"new_closer_id": other.id},
    )
    ok(r)


async def test_reassign_other_org_unaffected(
    client: httpx.AsyncClient, org: Org, other_org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    ok(await reassign(client, org, call.id, {"new_closer_id": other.id}))
    assert await webhooks(database, other_org, "call.closer_reassigned") == []


async def test_new_closers_event_carries_the_new_link(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    """The event put on the new closer's calendar points at the new, live link, never at the
    revoked one (for reassign and for a reschedule that changes the closer)."""
    lead = await create_lead(session, org)
    first = await create_member(session, org)
    second = await create_member(session, org)
    third = await create_member(session, org)
    call = await create_call(session, org, lead=lead, closer=first)
    r = await client.post(
        f"/v1/calls/{call.id}/reassign-closer",
        headers=org.headers,
        json={"new_closer_id": second.id},
    )
    assert r.status_code == 200, r.text
    reassigned = r.json()["data"]
    later = (call.scheduled_at + timedelta(days=1)).isoformat()
    r = await client.post(
        f"/v1/calls/{call.id}/reschedule",
        headers=org.headers,
        json={"scheduled_at": later, "new_closer_id": third.id},
    )
    assert r.status_code == 200, r.text
    moved = r.json()["data"]
    async with database.reader() as s:
        rows = await s.scalars(select(CalendarEvent).where(CalendarEvent.call_id == call.id))
        events = {e.id: e for e in rows}
    assert events[reassigned["new_event_id"]].location == reassigned["conferencing_link"]
    assert events[moved["calendar_event_id"]].location == moved["conferencing_link"]
    assert moved["conferencing_link"] != reassigned["conferencing_link"]


async def test_builtin_calendars_change_in_the_reassign_transaction_with_no_cleanup_row(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:  # type: ignore[no-untyped-def]
    """The built-in calendar writes through the change's own transaction: the old event is
    cancelled in it, so no clean-up row is written and nothing is left for later."""
    from closerdesk.models import CalendarCleanup

    old = await create_member(session, org)
    new = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=old)
    r = await reassign(client, org, call.id, {"new_closer_id": new.id})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["old_event_orphaned"] is False
    async with database.reader() as s:
        assert (await s.scalars(select(CalendarCleanup))).all() == []
        old_event = await s.get(CalendarEvent, call.calendar_event_id)
        assert old_event is not None
        assert old_event.status == "cancelled"


async def test_the_new_event_carries_the_booking_links_description(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    """The call's link is read with its lock: the new closer's event has the join link, then
    the booking link's public description, as the first event had (docs/calendars.md)."""
    first, second = await create_member(session, org), await create_member(session, org)
    link = await create_link(
        client, org, [host(first.id)], description="Bring your numbers for Q3."
    )
    call = ok(await book_through_link(client, org, session, link["id"], day(3, 10)), 201)
    data = ok(await reassign(client, org, call["id"], {"new_closer_id": second.id}))
    new_event = await event_row(database, data["new_event_id"])
    assert new_event.description == (
        f"Join: {data['conferencing_link']}\n\nBring your numbers for Q3."
    )
