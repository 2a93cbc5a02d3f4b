"""PATCH /v1/calls/{id}: partial updates for recorders and analysers; payments linking."""

from __future__ import annotations

import httpx
import pytest

from closerdesk.db import Database
from closerdesk.models import Lead
from tests.calls.helpers import (
    call_events,
    call_row,
    create_product,
    error,
    get_call,
    history,
    iso,
    ok,
    past,
    webhooks,
    webhooks_for_call,
)
from tests.factories import Org, create_call, create_lead, create_member


async def patch(client: httpx.AsyncClient, org: Org, call_id: str, body: dict) -> httpx.Response:
    return await client.patch(f"/v1/calls/{call_id}", headers=org.headers, json=body)


@pytest.fixture
async def a_call(org: Org, session):  # type: ignore[no-untyped-def]
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    return await create_call(
        session,
        org,
        lead=lead,
        closer=closer,
        scheduled_at=past(hours=2),
        notes="before",
        expected_deal_value=100000,
        utm_source="google",
    )


async def test_patch_changes_only_given_fields(
    client: httpx.AsyncClient, org: Org, a_call, database: Database
) -> None:
    before = await get_call(client, org, a_call.id)
    data = ok(await patch(client, org, a_call.id, {"expected_deal_value": 750000}))
    assert data["expected_deal_value"] == 750000
    assert data["notes"] == "before"
    assert data["utm_source"] == "google"
    got = await get_call(client, org, a_call.id)
    assert got == data
    unchanged = {k: v for k, v in got.items() if k not in {"expected_deal_value", "updated_at"}}
    assert unchanged == {k: v for k, v in before.items() if k in unchanged}

    rows = await call_events(database, a_call.id)
    assert [e.type for e in rows] == ["updated"]
    assert rows[0].before == {"expected_deal_value": 100000}
    assert rows[0].after == {"expected_deal_value": 750000}
    hooks = await webhooks_for_call(database, org, "call.updated", a_call.id)
    assert len(hooks) == 1
    payload = hooks[0].payload["data"]
    assert payload["changed_fields"] == ["expected_deal_value"]
    assert payload["previous"] == {"expected_deal_value": 100000}
    assert payload["call"]["expected_deal_value"] == 750000
    assert payload["updated_by"]["type"] == "api_key"


async def test_patch_null_clears(
    client: httpx.AsyncClient, org: Org, a_call, database: Database
) -> None:
    data = ok(await patch(client, org, a_call.id, {"notes": None, "expected_deal_value": None}))
    assert data["notes"] is None
    assert data["expected_deal_value"] is None
    row = await call_row(database, a_call.id)
    assert row.notes is None
    assert row.expected_deal_value is None
    entries = await history(client, org, a_call.id)
    assert entries[-1]["type"] == "updated"
    assert entries[-1]["before"] == {"expected_deal_value": 100000, "notes": "before"}
    assert entries[-1]["after"] == {"expected_deal_value": None, "notes": None}


async def test_patch_analysis_fields_then_clear_them(
    client: httpx.AsyncClient, org: Org, a_call
) -> None:
    body = {
        "ai_summary": "Strong fit.",
        "action_items": [{"title": "Send proposal", "owner": "closer", "due_at": "2026-02-01"}],
        "recording_url": "https://recordings.example.test/call.mp4",
        "transcript_data": {
            "duration_seconds": 1800,
            "language": "en",
            "segments": [{"start_seconds": 0, "end_seconds": 3, "speaker": "lead", "text": "Hi"}],
        },
    }
    data = ok(await patch(client, org, a_call.id, body))
    assert data["ai_summary"] == "Strong fit."
    assert data["action_items"] == [
        {"title": "Send proposal", "owner": "closer", "due_at": "2026-02-01", "notes": None}
    ]
    assert data["recording_url"] == "https://recordings.example.test/call.mp4"
    assert data["has_recording"] is True
    assert data["has_analysis"] is True
    assert data["transcript_data"]["segments"][0]["text"] == "Hi"
    assert data["transcript_data"]["duration_seconds"] == 1800

    cleared = ok(
        await patch(
            client,
            org,
            a_call.id,
            {
                "ai_summary": None,
                "action_items": None,
                "recording_url": None,
                "transcript_data": None,
            },
        )
    )
    assert cleared["ai_summary"] is None
    assert cleared["action_items"] == []
    assert cleared["recording_url"] is None
    assert cleared["transcript_data"] is None
    assert cleared["has_recording"] is False
    assert cleared["has_analysis"] is False
    assert (await get_call(client, org, a_call.id))["action_items"] == []


async def test_patch_times_and_rsvp(client: httpx.AsyncClient, org: Org, a_call) -> None:
    start = past(hours=2)
    end = past(hours=1)
    data = ok(
        await patch(
            client,
            org,
            a_call.id,
            {"started_at": iso(start), "ended_at": iso(end), "guest_rsvp_status": "yes"},
        )
    )
    assert data["started_at"] == iso(start)
    assert data["ended_at"] == iso(end)
    assert data["guest_rsvp_status"] == "yes"
    assert data["guest_rsvp_confirmed_at"] is not None
    assert data["guest_rsvp_confirmed_at"].endswith("Z")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"started_at": "2026-01-20T15:00:00"}, "started_at"),
        ({"guest_rsvp_status": "perhaps"}, "guest_rsvp_status"),
        ({"expected_deal_value": -5}, "expected_deal_value"),
        ({"expected_deal_value": 12.5}, "expected_deal_value"),
        ({"recording_url": "ftp://x.example/a"}, "recording_url"),
        ({"setter_id": "bob"}, "setter_id"),
        ({"status": "closed"}, "status"),  # outcomes go through POST /outcome
        ({"closer_id": "user_abc"}, "closer_id"),  # closers change through reassign
        ({"scheduled_at": "2030-01-01T00:00:00Z"}, "scheduled_at"),  # times through reschedule
    ],
)
async def test_patch_invalid_body_is_400(
    client: httpx.AsyncClient, org: Org, a_call, database: Database, body: dict, field: str
) -> None:
    r = await patch(client, org, a_call.id, body)
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == field
    assert await call_events(database, a_call.id) == []


async def test_patch_ended_before_started_is_400(
    client: httpx.AsyncClient, org: Org, a_call
) -> None:
    r = await patch(
        client,
        org,
        a_call.id,
        {"started_at": iso(past(hours=1)), "ended_at": iso(past(hours=2))},
    )
    error(r, 400, "VALIDATION_ERROR")


async def test_patch_empty_or_same_value_records_nothing(
    client: httpx.AsyncClient, org: Org, a_call, database: Database
) -> None:
    ok(await patch(client, org, a_call.id, {}))
    ok(await patch(client, org, a_call.id, {"notes": "before"}))
    assert await call_events(database, a_call.id) == []
    assert await webhooks(database, org, "call.updated") == []


async def test_patch_unknown_or_foreign_call_is_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session
) -> None:
    closer = await create_member(session, other_org)
    lead = await create_lead(session, other_org)
    call = await create_call(session, other_org, lead=lead, closer=closer)
    for call_id in ("call_missing", call.id):
        error(await patch(client, org, call_id, {"notes": "x"}), 404, "CALL_NOT_FOUND")
    assert (await get_call(client, other_org, call.id))["notes"] is None


async def test_patch_product_and_setter(
    client: httpx.AsyncClient, org: Org, other_org: Org, session, a_call
) -> None:
    product = await create_product(client, org)
    inactive = await create_product(client, org, active=False)
    foreign = await create_product(client, other_org)
    setter = await create_member(session, org, role="setter", calendar=False)
    foreign_setter = await create_member(session, other_org, role="setter")
    data = ok(await patch(client, org, a_call.id, {"product_id": product["id"]}))
    assert data["product_id"] == product["id"]
    # a deactivated product may still be recorded on a call that was sold under it
    assert (
        ok(await patch(client, org, a_call.id, {"product_id": inactive["id"]}))["product_id"]
        == inactive["id"]
    )
    for product_id in ("prod_missing", foreign["id"]):
        error(
            await patch(client, org, a_call.id, {"product_id": product_id}),
            404,
            "PRODUCT_NOT_FOUND",
        )
    data = ok(await patch(client, org, a_call.id, {"setter_id": setter.id}))
    assert data["setter_id"] == setter.id
    for setter_id in ("user_nobody", foreign_setter.id):
        error(
            await patch(client, org, a_call.id, {"setter_id": setter_id}),
            404,
            "SETTER_NOT_FOUND",
        )
    cleared = ok(await patch(client, org, a_call.id, {"setter_id": None, "product_id": None}))
    assert cleared["setter_id"] is None
    assert cleared["product_id"] is None


# --- payments ------------------------------------------------------------------------------------
async def _record_payment(client: httpx.AsyncClient, org: Org, lead_id: str, **extra) -> dict:
    r = await client.post(
        "/v1/payments",
        headers=org.headers,
        json={
            "amount": 500000,
            "currency": "USD",
            "provider": "stripe",
            "lead_id": lead_id,
            **extra,
        },
    )
    return ok(r, 201)  # type: ignore[no-any-return]


async def test_patch_links_a_payment(
    client: httpx.AsyncClient, org: Org, a_call, database: Database
) -> None:
    payment = await _record_payment(client, org, a_call.lead_id)
    assert payment["call_id"] is None
    data = ok(await patch(client, org, a_call.id, {"linked_payment_id": payment["id"]}))
    assert data["linked_payment_id"] == payment["id"]
    got = ok(await client.get(f"/v1/payments/{payment['id']}", headers=org.headers))
    assert got["call_id"] == a_call.id
    hooks = await webhooks_for_call(database, org, "call.updated", a_call.id)
    assert [h.payload["data"]["changed_fields"] for h in hooks] == [["linked_payment_id"]]
    # linking it again to the same call is fine
    ok(await patch(client, org, a_call.id, {"linked_payment_id": payment["id"]}))


async def test_patch_payment_errors(
    client: httpx.AsyncClient, org: Org, other_org: Org, session, a_call
) -> None:
    closer = await create_member(session, org)
    same_lead = await session.get(Lead, a_call.lead_id)
    other_call = await create_call(session, org, lead=same_lead, closer=closer)
    taken = await _record_payment(client, org, other_call.lead_id, call_id=other_call.id)
    stranger = await _record_payment(client, org, (await create_lead(session, org)).id)
    foreign_lead = await create_lead(session, other_org)
    foreign = await _record_payment(client, other_org, foreign_lead.id)
    error(
        await patch(client, org, a_call.id, {"linked_payment_id": "pay_missing"}),
        404,
        "PAYMENT_NOT_FOUND",
    )
    error(
        await patch(client, org, a_call.id, {"linked_payment_id": foreign["id"]}),
        404,
        "PAYMENT_NOT_FOUND",
    )
    error(
        await patch(client, org, a_call.id, {"linked_payment_id": taken["id"]}),
        409,
        "PAYMENT_ALREADY_LINKED",
    )
    error(  # a payment of another lead of the same organization
        await patch(client, org, a_call.id, {"linked_payment_id": stranger["id"]}),
        409,
        "CALL_LEAD_MISMATCH",
    )
    assert (await get_call(client, org, a_call.id))["linked_payment_id"] is None


async def test_recording_a_payment_for_a_call_links_it(
    client: httpx.AsyncClient, org: Org, a_call, database: Database
) -> None:
    payment = await _record_payment(client, org, a_call.lead_id, call_id=a_call.id)
    assert payment["call_id"] == a_call.id
    assert (await get_call(client, org, a_call.id))["linked_payment_id"] == payment["id"]
    rows = await call_events(database, a_call.id)
    assert [e.type for e in rows] == ["updated"]
    assert rows[0].after == {"linked_payment_id": payment["id"]}
    assert len(await webhooks_for_call(database, org, "call.updated", a_call.id)) == 1
    assert len(await webhooks(database, org, "payment.recorded")) == 1


async def test_unlinked_payment_can_be_linked_to_another_call(
    client: httpx.AsyncClient, org: Org, session, a_call
) -> None:
    closer = await create_member(session, org)
    lead = await session.get(Lead, a_call.lead_id)  # a payment belongs to one lead's calls
    other = await create_call(session, org, lead=lead, closer=closer)
    payment = await _record_payment(client, org, a_call.lead_id)
    ok(await patch(client, org, a_call.id, {"linked_payment_id": payment["id"]}))
    # unlink it from the first call: it is free again
    cleared = ok(await patch(client, org, a_call.id, {"linked_payment_id": None}))
    assert cleared["linked_payment_id"] is None
    got = ok(await client.get(f"/v1/payments/{payment['id']}", headers=org.headers))
    assert got["call_id"] is None
    data = ok(await patch(client, org, other.id, {"linked_payment_id": payment["id"]}))
    assert data["linked_payment_id"] == payment["id"]


async def test_replacing_the_linked_payment_frees_the_old_one(
    client: httpx.AsyncClient, org: Org, session, a_call
) -> None:
    first = await _record_payment(client, org, a_call.lead_id, call_id=a_call.id)
    second = await _record_payment(client, org, a_call.lead_id)
    data = ok(await patch(client, org, a_call.id, {"linked_payment_id": second["id"]}))
    assert data["linked_payment_id"] == second["id"]
    got_first = ok(await client.get(f"/v1/payments/{first['id']}", headers=org.headers))
    got_second = ok(await client.get(f"/v1/payments/{second['id']}", headers=org.headers))
    assert got_first["call_id"] is None
    assert got_second["call_id"] == a_call.id
