"""Reason codes (docs/sales-floor.md, "Reason codes"): ``reason_code`` on cancel, reschedule,
reassign and auto-reassign, ``loss_reason`` on the ``lost`` outcome; each on the call, in its
history, in its webhook and as a list filter."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from closerdesk.db import Database
from tests.calls.helpers import (
    call_events,
    call_row,
    error,
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


async def post(client: httpx.AsyncClient, org: Org, path: str, body: dict[str, Any]) -> Any:
    return await client.post(f"/v1/calls/{path}", headers=org.headers, json=body)


async def list_ids(client: httpx.AsyncClient, org: Org, query: str) -> list[str]:
    r = await client.get(f"/v1/calls?{query}", headers=org.headers)
    return [c["id"] for c in ok(r)]


async def _call(session, org: Org, **kw: Any):  # type: ignore[no-untyped-def]
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    return await create_call(session, org, lead=lead, closer=closer, **kw), closer


# --- cancel --------------------------------------------------------------------------------------
async def test_cancel_reason_code_on_call_history_and_webhook(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org)
    body = {"reason": "Bought elsewhere", "reason_code": "lead_requested"}
    data = ok(await post(client, org, f"{call.id}/cancel", body))
    assert data["reason_code"] == "lead_requested"
    assert data["cancel_reason"] == "Bought elsewhere"
    assert (await get_call(client, org, call.id))["reason_code"] == "lead_requested"
    assert (await call_row(database, call.id)).reason_code == "lead_requested"

    [entry] = await history(client, org, call.id)
    assert entry["type"] == "cancelled"
    assert entry["reason"] == "Bought elsewhere"
    assert entry["reason_code"] == "lead_requested"
    assert entry["before"]["reason_code"] is None
    assert entry["after"]["reason_code"] == "lead_requested"

    [hook] = await webhooks_for_call(database, org, "call.cancelled", call.id)
    assert hook.payload["data"]["reason_code"] == "lead_requested"
    assert hook.payload["data"]["call"]["reason_code"] == "lead_requested"


async def test_cancel_without_reason_code_is_null_everywhere(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org)
    data = ok(await post(client, org, f"{call.id}/cancel", {}))
    assert data["reason_code"] is None
    [entry] = await history(client, org, call.id)
    assert entry["reason_code"] is None
    [hook] = await webhooks_for_call(database, org, "call.cancelled", call.id)
    assert hook.payload["data"]["reason_code"] is None


@pytest.mark.parametrize("code", ["rebalance", "LEAD_REQUESTED", "", "sick", 1])
async def test_cancel_unknown_reason_code_is_400(
    client: httpx.AsyncClient, org: Org, session, database: Database, code: Any
) -> None:
    call, _ = await _call(session, org)
    r = await post(client, org, f"{call.id}/cancel", {"reason_code": code})
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "reason_code"
    assert (await call_row(database, call.id)).status == "scheduled"
    assert await call_events(database, call.id) == []


# --- reschedule ----------------------------------------------------------------------------------
async def test_reschedule_reason_code_on_call_history_and_webhook(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org)
    body = {
        "scheduled_at": iso(future(days=5)),
        "reason": "Lead travels",
        "reason_code": "lead_requested",
    }
    data = ok(await post(client, org, f"{call.id}/reschedule", body))
    assert data["reason_code"] == "lead_requested"
    [entry] = await history(client, org, call.id)
    assert (entry["type"], entry["reason_code"]) == ("rescheduled", "lead_requested")
    assert entry["after"]["reason_code"] == "lead_requested"
    [hook] = await webhooks_for_call(database, org, "call.rescheduled", call.id)
    assert hook.payload["data"]["reason_code"] == "lead_requested"
    assert hook.payload["data"]["reason"] == "Lead travels"

    # The call keeps the code of its latest change: a move without one clears it.
    ok(await post(client, org, f"{call.id}/reschedule", {"scheduled_at": iso(future(days=6))}))
    assert (await get_call(client, org, call.id))["reason_code"] is None
    assert [e["reason_code"] for e in await history(client, org, call.id)] == [
        "lead_requested",
        None,
    ]


async def test_reschedule_to_a_new_closer_carries_the_code_in_both_webhooks(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org)
    other = await create_member(session, org)
    body = {
        "scheduled_at": iso(future(days=5)),
        "new_closer_id": other.id,
        "reason_code": "closer_unavailable",
    }
    data = ok(await post(client, org, f"{call.id}/reschedule", body))
    assert (data["closer_id"], data["reason_code"]) == (other.id, "closer_unavailable")
    [moved] = await webhooks_for_call(database, org, "call.rescheduled", call.id)
    [reassigned] = await webhooks_for_call(database, org, "call.closer_reassigned", call.id)
    assert moved.payload["data"]["reason_code"] == "closer_unavailable"
    assert reassigned.payload["data"]["reason_code"] == "closer_unavailable"


@pytest.mark.parametrize("code", ["not_qualified", "duplicate", "nope"])
async def test_reschedule_takes_only_change_codes(
    client: httpx.AsyncClient, org: Org, session, code: str
) -> None:
    call, _ = await _call(session, org)
    body = {"scheduled_at": iso(future(days=5)), "reason_code": code}
    r = await post(client, org, f"{call.id}/reschedule", body)
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == "reason_code"


# --- reassign and auto-reassign ------------------------------------------------------------------
async def test_reassign_reason_code_on_call_history_and_webhook(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org)
    other = await create_member(session, org)
    body = {"new_closer_id": other.id, "reason": "Out sick", "reason_code": "closer_unavailable"}
    ok(await post(client, org, f"{call.id}/reassign-closer", body))
    assert (await get_call(client, org, call.id))["reason_code"] == "closer_unavailable"
    [entry] = await history(client, org, call.id)
    assert entry["type"] == "closer_reassigned"
    assert entry["reason_code"] == "closer_unavailable"
    assert entry["before"]["reason_code"] is None
    assert entry["after"]["reason_code"] == "closer_unavailable"
    [hook] = await webhooks_for_call(database, org, "call.closer_reassigned", call.id)
    data = hook.payload["data"]
    assert (data["reason"], data["reason_code"]) == ("Out sick", "closer_unavailable")
    assert data["call"]["reason_code"] == "closer_unavailable"
    assert data["assignment"] == "manual"


async def test_reassign_unknown_reason_code_is_400(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org)
    other = await create_member(session, org)
    body = {"new_closer_id": other.id, "reason_code": "lead_bought"}
    r = await post(client, org, f"{call.id}/reassign-closer", body)
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == "reason_code"
    assert await webhooks(database, org, "call.closer_reassigned") == []


async def test_auto_reassign_reason_code(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org)
    other = await create_member(session, org)
    result = ok(await post(client, org, f"{call.id}/auto-reassign", {"reason_code": "rebalance"}))
    assert result["new_closer_id"] == other.id
    assert (await get_call(client, org, call.id))["reason_code"] == "rebalance"
    [entry] = await history(client, org, call.id)
    assert entry["reason_code"] == "rebalance"
    [hook] = await webhooks_for_call(database, org, "call.closer_reassigned", call.id)
    assert hook.payload["data"]["reason_code"] == "rebalance"
    assert hook.payload["data"]["assignment"] == "round_robin"
    r = await post(client, org, f"{call.id}/auto-reassign", {"reason_code": "duplicate"})
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == "reason_code"


# --- loss_reason ---------------------------------------------------------------------------------
async def test_lost_takes_a_loss_reason(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org, scheduled_at=past(hours=2))
    body = {"status": "lost", "loss_reason": "price", "notes": "Too expensive"}
    data = ok(await post(client, org, f"{call.id}/outcome", body))
    assert (data["status"], data["loss_reason"]) == ("lost", "price")
    assert (await call_row(database, call.id)).loss_reason == "price"
    [entry] = await history(client, org, call.id)
    assert entry["before"]["loss_reason"] is None
    assert entry["after"]["loss_reason"] == "price"
    [hook] = await webhooks_for_call(database, org, "call.outcome_set", call.id)
    assert hook.payload["data"]["loss_reason"] == "price"
    assert hook.payload["data"]["call"]["loss_reason"] == "price"


async def test_lost_without_a_loss_reason_is_allowed(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org, scheduled_at=past(hours=2))
    data = ok(await post(client, org, f"{call.id}/outcome", {"status": "lost"}))
    assert (data["status"], data["loss_reason"]) == ("lost", None)
    [hook] = await webhooks_for_call(database, org, "call.outcome_set", call.id)
    assert hook.payload["data"]["loss_reason"] is None


@pytest.mark.parametrize("status", ["shown", "no_show", "closed", "follow_up"])
async def test_loss_reason_with_another_status_is_400(
    client: httpx.AsyncClient, org: Org, session, database: Database, status: str
) -> None:
    call, _ = await _call(session, org, scheduled_at=past(hours=2))
    r = await post(client, org, f"{call.id}/outcome", {"status": status, "loss_reason": "price"})
    body = error(r, 400, "VALIDATION_ERROR")
    assert "loss_reason" in body["error"]
    assert (await call_row(database, call.id)).status == "scheduled"


async def test_unknown_loss_reason_is_400(client: httpx.AsyncClient, org: Org, session) -> None:
    call, _ = await _call(session, org, scheduled_at=past(hours=2))
    r = await post(client, org, f"{call.id}/outcome", {"status": "lost", "loss_reason": "budget"})
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == "loss_reason"


async def test_another_outcome_clears_the_loss_reason(
    client: httpx.AsyncClient, org: Org, session, database: Database
) -> None:
    call, _ = await _call(session, org, scheduled_at=past(hours=2))
    ok(await post(client, org, f"{call.id}/outcome", {"status": "lost", "loss_reason": "timing"}))
    data = ok(await post(client, org, f"{call.id}/outcome", {"status": "follow_up"}))
    assert (data["status"], data["loss_reason"]) == ("follow_up", None)
    entries = await history(client, org, call.id)
    assert entries[1]["before"]["loss_reason"] == "timing"
    assert entries[1]["after"]["loss_reason"] is None
    # lost again without a reason: none, not the old one
    data = ok(await post(client, org, f"{call.id}/outcome", {"status": "lost"}))
    assert data["loss_reason"] is None


# --- list filters --------------------------------------------------------------------------------
async def test_list_filters_by_reason_code_and_loss_reason(
    client: httpx.AsyncClient, org: Org, session
) -> None:
    cancelled, _ = await _call(session, org)
    moved, _ = await _call(session, org)
    lost_price, _ = await _call(session, org, scheduled_at=past(hours=3))
    lost_need, _ = await _call(session, org, scheduled_at=past(hours=4))
    plain, _ = await _call(session, org)
    ok(await post(client, org, f"{cancelled.id}/cancel", {"reason_code": "duplicate"}))
    body = {"scheduled_at": iso(future(days=9)), "reason_code": "lead_requested"}
    ok(await post(client, org, f"{moved.id}/reschedule", body))
    body = {"status": "lost", "loss_reason": "price"}
    ok(await post(client, org, f"{lost_price.id}/outcome", body))
    body = {"status": "lost", "loss_reason": "need"}
    ok(await post(client, org, f"{lost_need.id}/outcome", body))

    assert await list_ids(client, org, "reason_code=duplicate") == [cancelled.id]
    assert await list_ids(client, org, "reason_code=lead_requested") == [moved.id]
    assert await list_ids(client, org, "reason_code=rebalance") == []
    assert await list_ids(client, org, "loss_reason=price") == [lost_price.id]
    assert await list_ids(client, org, "loss_reason=need&status=lost") == [lost_need.id]
    assert await list_ids(client, org, "loss_reason=need&status=shown") == []
    everything = await list_ids(client, org, "limit=100")
    assert plain.id in everything
    assert len(everything) == 5


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("reason_code=sick", "reason_code"),
        ("reason_code=", "reason_code"),
        ("loss_reason=budget", "loss_reason"),
        ("loss_reason=PRICE", "loss_reason"),
    ],
)
async def test_list_unknown_codes_are_400(
    client: httpx.AsyncClient, org: Org, query: str, field: str
) -> None:
    r = await client.get(f"/v1/calls?{query}", headers=org.headers)
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == field


async def test_list_filters_stay_in_the_organization(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    theirs, _ = await _call(session, other_org)
    ok(await post(client, other_org, f"{theirs.id}/cancel", {"reason_code": "duplicate"}))
    assert await list_ids(client, org, "reason_code=duplicate") == []
    assert await list_ids(client, other_org, "reason_code=duplicate") == [theirs.id]
