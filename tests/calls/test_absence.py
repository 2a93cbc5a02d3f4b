"""POST /v1/calls/{id}/absence (after Cal.com's "mark a booking absence"; docs/sales-floor.md,
"Absence"): the lead absent makes the call ``no_show``, the host absent sets ``host_no_show``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import update

from closerdesk.db import Database
from closerdesk.models import Call
from tests.calls.helpers import (
    call_events,
    call_row,
    error,
    future,
    get_call,
    history,
    ok,
    past,
    webhooks,
    webhooks_for_call,
)
from tests.factories import Org, create_call, create_lead, create_member


async def mark(
    client: httpx.AsyncClient, org: Org, call_id: str, body: Any, *, key: str = "write"
) -> httpx.Response:
    return await client.post(f"/v1/calls/{call_id}/absence", headers=org.auth(key), json=body)


async def _past_call(session, org: Org, **kw: Any):  # type: ignore[no-untyped-def]
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=past(hours=1), **kw
    )
    return call, lead


async def _nothing_recorded(database: Database, org: Org, call_id: str) -> None:
    assert [e.type for e in await call_events(database, call_id)] in ([], ["booked"])
    assert await webhooks(database, org, "call.absence_marked") == []
    assert await webhooks(database, org, "call.no_show") == []


# --- effects -------------------------------------------------------------------------------------
async def test_lead_absent_makes_the_call_no_show(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, lead = await _past_call(session, org)
    body = {"host": False, "lead": True, "notes": "Lead never joined"}
    data = ok(await mark(client, org, call.id, body))
    assert (data["status"], data["host_no_show"]) == ("no_show", False)
    assert data["notes"] is None  # the notes go to the history, not over the call's notes
    row = await call_row(database, call.id)
    assert (row.status, row.host_no_show) == ("no_show", False)

    [entry] = await history(client, org, call.id)
    assert entry["type"] == "absence_marked"
    assert entry["reason"] == "Lead never joined"
    assert entry["reason_code"] is None
    assert entry["before"] == {"status": "scheduled", "host_no_show": False, "loss_reason": None}
    assert entry["after"] == {"status": "no_show", "host_no_show": False, "loss_reason": None}

    [marked] = await webhooks_for_call(database, org, "call.absence_marked", call.id)
    payload = marked.payload["data"]
    assert set(payload) == {"call", "lead", "absence", "previous_status", "marked_by"}
    assert payload["absence"] == {"host": False, "lead": True, "notes": "Lead never joined"}
    assert payload["previous_status"] == "scheduled"
    assert payload["call"] == await get_call(client, org, call.id)
    assert payload["lead"]["email"] == lead.email
    assert payload["marked_by"]["type"] == "api_key"
    [no_show] = await webhooks_for_call(database, org, "call.no_show", call.id)
    assert set(no_show.payload["data"]) == {
        "call",
        "lead",
        "previous_status",
        "loss_reason",
        "set_by",
    }
    assert no_show.payload["data"]["call"]["status"] == "no_show"
    assert no_show.payload["data"]["previous_status"] == "scheduled"
    # an absence is not an outcome request: no call.outcome_set
    assert await webhooks(database, org, "call.outcome_set") == []


async def test_host_absent_sets_host_no_show_only(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _past_call(session, org)
    data = ok(await mark(client, org, call.id, {"host": True, "lead": False}))
    assert (data["status"], data["host_no_show"]) == ("scheduled", True)
    assert (await call_row(database, call.id)).host_no_show is True
    assert (await get_call(client, org, call.id))["host_no_show"] is True
    [entry] = await history(client, org, call.id)
    assert entry["after"]["host_no_show"] is True
    assert entry["reason"] is None
    [marked] = await webhooks_for_call(database, org, "call.absence_marked", call.id)
    assert marked.payload["data"]["absence"] == {"host": True, "lead": False, "notes": None}
    assert marked.payload["data"]["call"]["host_no_show"] is True
    assert await webhooks(database, org, "call.no_show") == []


async def test_both_absent(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _past_call(session, org)
    data = ok(await mark(client, org, call.id, {"host": True, "lead": True}))
    assert (data["status"], data["host_no_show"]) == ("no_show", True)
    assert len(await webhooks_for_call(database, org, "call.absence_marked", call.id)) == 1
    assert len(await webhooks_for_call(database, org, "call.no_show", call.id)) == 1


async def test_lead_absent_replaces_an_outcome_and_clears_its_loss_reason(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _past_call(session, org)
    body = {"status": "lost", "loss_reason": "price"}
    ok(await client.post(f"/v1/calls/{call.id}/outcome", headers=org.headers, json=body))
    data = ok(await mark(client, org, call.id, {"host": False, "lead": True}))
    assert (data["status"], data["loss_reason"]) == ("no_show", None)
    entry = (await history(client, org, call.id))[-1]
    assert entry["before"] == {"status": "lost", "host_no_show": False, "loss_reason": "price"}
    [marked] = await webhooks_for_call(database, org, "call.absence_marked", call.id)
    assert marked.payload["data"]["previous_status"] == "lost"


async def test_a_call_in_progress_can_be_marked(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=past(minutes=5), duration_minutes=60
    )
    data = ok(await mark(client, org, call.id, {"host": False, "lead": True}))
    assert data["status"] == "no_show"


# --- marking again -------------------------------------------------------------------------------
async def test_the_same_mark_again_records_nothing(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _past_call(session, org)
    first = ok(await mark(client, org, call.id, {"host": True, "lead": True}))
    again = ok(await mark(client, org, call.id, {"host": True, "lead": True, "notes": "again"}))
    assert again == first
    assert [e.type for e in await call_events(database, call.id)] == ["absence_marked"]
    assert len(await webhooks(database, org, "call.absence_marked")) == 1
    assert len(await webhooks(database, org, "call.no_show")) == 1


async def test_marks_add_up_and_false_never_clears(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _past_call(session, org)
    ok(await mark(client, org, call.id, {"host": False, "lead": True}))
    data = ok(await mark(client, org, call.id, {"host": True, "lead": False}))
    assert (data["status"], data["host_no_show"]) == ("no_show", True)
    entries = await history(client, org, call.id)
    assert [e["type"] for e in entries] == ["absence_marked", "absence_marked"]
    assert entries[1]["before"]["host_no_show"] is False
    assert entries[1]["after"] == {"status": "no_show", "host_no_show": True, "loss_reason": None}
    assert len(await webhooks(database, org, "call.absence_marked")) == 2
    # the status was already no_show: call.no_show is not sent twice
    assert len(await webhooks(database, org, "call.no_show")) == 1
    # the outcome corrects the status; host_no_show stays
    body = {"status": "shown"}
    ok(await client.post(f"/v1/calls/{call.id}/outcome", headers=org.headers, json=body))
    data = ok(await mark(client, org, call.id, {"host": True, "lead": False}))
    assert (data["status"], data["host_no_show"]) == ("shown", True)


# --- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        {"host": False, "lead": False},
        {"host": False, "lead": False, "notes": "nobody"},
    ],
)
async def test_nobody_absent_is_400(
    client: httpx.AsyncClient, org: Org, session, database: Database, body: dict
) -> None:
    call, _ = await _past_call(session, org)
    r = await mark(client, org, call.id, body)
    assert "host or lead" in error(r, 400, "VALIDATION_ERROR")["error"]
    await _nothing_recorded(database, org, call.id)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lead": True}, "host"),
        ({"host": True}, "lead"),
        ({"host": "yes", "lead": False}, "host"),
        ({"host": True, "lead": 1}, "lead"),
        ({"host": True, "lead": False, "who": "x"}, "who"),
    ],
)
async def test_invalid_body_is_400(
    client: httpx.AsyncClient, org: Org, session, body: dict, field: str
) -> None:
    call, _ = await _past_call(session, org)
    r = await mark(client, org, call.id, body)
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == field


async def test_a_call_not_started_is_409(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=future(hours=1))
    error(await mark(client, org, call.id, {"host": True, "lead": True}), 409, "CALL_NOT_STARTED")
    await _nothing_recorded(database, org, call.id)
    assert (await call_row(database, call.id)).status == "scheduled"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("cancelled", "CALL_CANCELLED"),
        ("declined", "CALL_DECLINED"),
        ("pending", "CALL_NOT_CONFIRMED"),
    ],
)
async def test_a_call_that_did_not_stand_is_409(
    client: httpx.AsyncClient, org: Org, session, database: Database, status: str, code: str
) -> None:
    call, _ = await _past_call(session, org, status=status)
    error(await mark(client, org, call.id, {"host": False, "lead": True}), 409, code)
    await _nothing_recorded(database, org, call.id)
    assert (await call_row(database, call.id)).status == status


async def test_a_future_cancelled_call_is_cancelled_first(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, status="cancelled")
    error(await mark(client, org, call.id, {"host": True, "lead": False}), 409, "CALL_CANCELLED")


async def test_an_intent_call_is_not_scheduled(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/calls", headers=org.headers, json={"lead_id": lead.id, "call_kind": "intent"}
    )
    call = ok(r, 201)
    r = await mark(client, org, call["id"], {"host": False, "lead": True})
    error(r, 409, "CALL_NOT_SCHEDULED")
    await _nothing_recorded(database, org, call["id"])


async def test_an_intent_call_given_a_time_by_hand_is_checked_by_its_time(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    """The rule is about the time, not the kind: what has a past time can be marked."""
    call, _ = await _past_call(session, org)
    async with database.writer() as s:
        await s.execute(update(Call).where(Call.id == call.id).values(call_kind="intent"))
        await s.commit()
    data = ok(await mark(client, org, call.id, {"host": False, "lead": True}))
    assert data["status"] == "no_show"


async def test_unknown_or_foreign_call_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session, database: Database
) -> None:
    theirs, _ = await _past_call(session, other_org)
    for call_id in ("call_missing", theirs.id):
        r = await mark(client, org, call_id, {"host": True, "lead": True})
        error(r, 404, "CALL_NOT_FOUND")
    assert (await call_row(database, theirs.id)).host_no_show is False


async def test_a_read_key_is_forbidden(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _past_call(session, org)
    r = await mark(client, org, call.id, {"host": True, "lead": True}, key="read")
    error(r, 403, "FORBIDDEN")
    await _nothing_recorded(database, org, call.id)


async def test_the_endpoint_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    op = doc["paths"]["/v1/calls/{call_id}/absence"]["post"]
    described = " ".join(r.get("description", "") for r in op["responses"].values())
    for code in ("CALL_NOT_FOUND", "CALL_CANCELLED", "CALL_NOT_SCHEDULED", "CALL_NOT_STARTED"):
        assert code in described
    assert doc["components"]["schemas"]["Call"]["properties"]["host_no_show"]["type"] == "boolean"
    assert "call.absence_marked" in doc["webhooks"]
