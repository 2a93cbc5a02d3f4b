"""POST /v1/calls/{id}/outcome (seed 003)."""

from __future__ import annotations

import httpx
import pytest

from closerdesk.db import Database
from tests.calls.helpers import (
    SEED_004_FIELDS,
    SPEC_EXTRA_FIELDS,
    call_events,
    call_row,
    error,
    get_call,
    history,
    ok,
    past,
    webhooks,
    webhooks_for_call,
)
from tests.factories import Org, create_call, create_lead, create_member


async def outcome(client: httpx.AsyncClient, org: Org, call_id: str, body: dict) -> httpx.Response:
    return await client.post(f"/v1/calls/{call_id}/outcome", headers=org.headers, json=body)


@pytest.mark.parametrize("status", ["shown", "no_show", "closed", "lost", "follow_up"])
async def test_each_outcome_status(
    client: httpx.AsyncClient, org: Org, session, database: Database, status: str
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(hours=2))
    data = ok(await outcome(client, org, call.id, {"status": status, "notes": f"it was {status}"}))
    # the response is the call object (seed 003)
    assert set(data) == SEED_004_FIELDS | SPEC_EXTRA_FIELDS
    assert data["id"] == call.id
    assert data["status"] == status
    assert data["notes"] == f"it was {status}"
    assert (await call_row(database, call.id)).status == status
    assert (await get_call(client, org, call.id))["status"] == status

    rows = await call_events(database, call.id)
    assert [e.type for e in rows] == ["outcome_set"]
    assert rows[0].before == {"status": "scheduled", "notes": None, "loss_reason": None}
    assert rows[0].after == {"status": status, "notes": f"it was {status}", "loss_reason": None}

    set_hooks = await webhooks_for_call(database, org, "call.outcome_set", call.id)
    assert len(set_hooks) == 1
    data_ = set_hooks[0].payload["data"]
    assert data_["call"]["status"] == status
    assert data_["previous_status"] == "scheduled"
    assert data_["lead"]["email"] == lead.email
    no_show = await webhooks_for_call(database, org, "call.no_show", call.id)
    assert len(no_show) == (1 if status == "no_show" else 0)


async def test_no_show_writes_both_webhooks(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(hours=1))
    ok(await outcome(client, org, call.id, {"status": "no_show"}))
    set_rows = await webhooks(database, org, "call.outcome_set")
    no_show_rows = await webhooks(database, org, "call.no_show")
    assert len(set_rows) == 1
    assert len(no_show_rows) == 1
    assert set_rows[0].id != no_show_rows[0].id
    assert no_show_rows[0].payload["event"] == "call.no_show"
    assert no_show_rows[0].payload["data"]["call"]["id"] == call.id
    assert no_show_rows[0].payload["data"]["call"]["status"] == "no_show"


async def test_outcome_without_notes_keeps_existing_notes(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=past(hours=1), notes="prep notes"
    )
    data = ok(await outcome(client, org, call.id, {"status": "shown"}))
    assert data["notes"] == "prep notes"


async def test_outcome_on_cancelled_call_is_409(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=past(hours=1), status="cancelled"
    )
    error(await outcome(client, org, call.id, {"status": "shown"}), 409, "CALL_CANCELLED")
    assert (await call_row(database, call.id)).status == "cancelled"
    assert await webhooks(database, org, "call.outcome_set") == []
    assert await call_events(database, call.id) == []


async def test_outcome_on_future_call_is_409(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    error(await outcome(client, org, call.id, {"status": "no_show"}), 409, "CALL_NOT_STARTED")
    assert (await call_row(database, call.id)).status == "scheduled"
    assert await webhooks(database, org, "call.no_show") == []


async def test_outcome_on_future_cancelled_call_is_cancelled(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, status="cancelled")
    error(await outcome(client, org, call.id, {"status": "shown"}), 409, "CALL_CANCELLED")


async def test_outcome_on_call_in_progress(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=past(minutes=5), duration_minutes=60
    )
    assert ok(await outcome(client, org, call.id, {"status": "shown"}))["status"] == "shown"


async def test_outcome_can_be_corrected_and_history_keeps_both(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(days=1))
    ok(await outcome(client, org, call.id, {"status": "follow_up", "notes": "wants a week"}))
    data = ok(await outcome(client, org, call.id, {"status": "closed", "notes": "signed!"}))
    assert data["status"] == "closed"
    assert data["notes"] == "signed!"

    entries = await history(client, org, call.id)
    assert [e["type"] for e in entries] == ["outcome_set", "outcome_set"]
    assert entries[0]["before"]["status"] == "scheduled"
    follow_up = {"status": "follow_up", "notes": "wants a week", "loss_reason": None}
    assert entries[0]["after"] == follow_up
    assert entries[1]["before"] == follow_up
    assert entries[1]["after"] == {"status": "closed", "notes": "signed!", "loss_reason": None}
    assert entries[0]["created_at"] <= entries[1]["created_at"]
    for entry in entries:
        assert entry["call_id"] == call.id
        assert entry["actor_type"] == "api_key"
        assert entry["actor_id"]
    hooks = await webhooks(database, org, "call.outcome_set")
    assert [h.payload["data"]["previous_status"] for h in hooks] == ["scheduled", "follow_up"]


@pytest.mark.parametrize("status", ["scheduled", "cancelled", "won", "", None, "SHOWN"])
async def test_invalid_outcome_status_is_400(
    client: httpx.AsyncClient, org: Org, session, status: str | None
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(hours=1))
    body = error(await outcome(client, org, call.id, {"status": status}), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "status"


async def test_missing_outcome_status_is_400(client: httpx.AsyncClient, org: Org, session) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(hours=1))
    body = error(await outcome(client, org, call.id, {"notes": "x"}), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "status"


async def test_outcome_unknown_or_foreign_call_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, other_org)
    lead = await create_lead(session, other_org)
    call = await create_call(
        session, other_org, lead=lead, closer=closer, scheduled_at=past(days=1)
    )
    for call_id in ("call_missing", call.id):
        error(await outcome(client, org, call_id, {"status": "shown"}), 404, "CALL_NOT_FOUND")
