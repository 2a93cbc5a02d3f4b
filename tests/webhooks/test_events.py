"""Every state change of the API produces its webhook with SPEC §6's body, delivered to the
receiver and verified; and docs/webhooks.md shows each event type with the shape sent."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import ApiKey
from closerdesk.webhooks.events import EventType
from closerdesk.webhooks.payloads import EVENT_MODELS
from tests.factories import create_call, create_lead, create_member
from tests.webhooks.helpers import ALL_EVENT_TYPES, Hooks, ok

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
CONTACT = {"id", "email", "full_name", "phone", "time_zone"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def at(days: int) -> str:
    return isoformat_z((utcnow() + timedelta(days=days)).replace(microsecond=0, second=0))


async def scenario(hooks: Hooks, session: AsyncSession) -> dict[str, Any]:
    """Every operation that fires a webhook, once (twice where it has two paths)."""
    client, org = hooks.client, hooks.org
    h = org.headers
    alice = await create_member(session, org, name="Alice Moreno", email="alice@acme.test")
    bruno = await create_member(session, org, name="Bruno Keller", email="bruno@acme.test")
    chloe = await create_member(session, org, name="Chloe Park", email="chloe@acme.test")
    ctx: dict[str, Any] = {"alice": alice, "bruno": bruno, "chloe": chloe}

    lead = ok(
        await client.post(
            "/v1/leads",
            headers=h,
            json={
                "email": "dana@example.com",
                "full_name": "Dana Whitfield",
                "phone": "+13125550101",
                "time_zone": "America/Chicago",
                "metadata": {"utm_source": "newsletter"},
            },
        ),
        201,
    )
    ctx["lead"] = ok(
        await client.patch(
            f"/v1/leads/{lead['id']}", headers=h, json={"company": "Whitfield Dental"}
        )
    )
    ctx["booked"] = ok(
        await client.post(
            "/v1/calls",
            headers=h,
            json={
                "lead_id": lead["id"],
                "closer_id": alice.id,
                "scheduled_at": at(3),
                "duration_minutes": 45,
                "time_zone": "America/Chicago",
            },
        ),
        201,
    )
    call_id = ctx["booked"]["id"]
    ctx["updated"] = ok(
        await client.patch(
            f"/v1/calls/{call_id}",
            headers=h,
            json={"notes": "Wants the premium plan", "expected_deal_value": 500000},
        )
    )
    ctx["rescheduled"] = ok(
        await client.post(
            f"/v1/calls/{call_id}/reschedule",
            headers=h,
            json={
                "scheduled_at": at(4),
                "reason": "Lead asked for Thursday",
                "reason_code": "lead_requested",
            },
        )
    )
    ctx["reassigned"] = ok(
        await client.post(
            f"/v1/calls/{call_id}/reassign-closer",
            headers=h,
            json={
                "new_closer_id": bruno.id,
                "reason": "Alice is out sick",
                "reason_code": "closer_unavailable",
            },
        )
    )
    ctx["after_reassign"] = ok(await client.get(f"/v1/calls/{call_id}", headers=h))
    ctx["rescheduled_to_chloe"] = ok(
        await client.post(
            f"/v1/calls/{call_id}/reschedule",
            headers=h,
            json={
                "scheduled_at": at(5),
                "new_closer_id": chloe.id,
                "reason": "Chloe speaks German",
            },
        )
    )
    ctx["cancelled"] = ok(
        await client.post(
            f"/v1/calls/{call_id}/cancel",
            headers=h,
            json={"reason": "Lead bought elsewhere", "reason_code": "lead_requested"},
        )
    )
    other = await create_lead(session, org, email="eli@example.com", full_name="Eli Brandt")
    past_call = await create_call(
        session, org, lead=other, closer=alice, scheduled_at=utcnow() - timedelta(hours=2)
    )
    ctx["no_show"] = ok(
        await client.post(
            f"/v1/calls/{past_call.id}/outcome",
            headers=h,
            json={"status": "no_show", "notes": "Did not join"},
        )
    )
    ctx["payment"] = ok(
        await client.post(
            "/v1/payments",
            headers=h,
            json={
                "amount": 250000,
                "currency": "USD",
                "provider": "stripe",
                "provider_payment_id": "pi_123",
                "lead_id": other.id,
                "call_id": past_call.id,
            },
        ),
        201,
    )
    ctx["other_lead"] = other
    ctx["past_call_id"] = past_call.id
    missed = await create_call(
        session, org, lead=other, closer=bruno, scheduled_at=utcnow() - timedelta(hours=3)
    )
    ctx["absence"] = ok(
        await client.post(
            f"/v1/calls/{missed.id}/absence",
            headers=h,
            json={"host": True, "lead": True, "notes": "Neither joined"},
        )
    )
    # Confirmation (docs/sales-floor.md): two pending calls, one confirmed, one declined.
    link = ok(
        await client.post(
            "/v1/booking-links",
            headers=h,
            json={
                "slug": "discovery-call",
                "title": "Discovery call",
                "duration_minutes": 30,
                "requires_confirmation": True,
                "hosts": [{"member_id": bruno.id, "schedule": {"time_zone": "UTC"}}],
            },
        ),
        201,
    )
    for days, action, body in (
        (6, "confirm", {}),
        (7, "decline", {"reason": "Outside our market", "reason_code": "not_qualified"}),
    ):
        pending = ok(
            await client.post(
                "/v1/calls",
                headers=h,
                json={
                    "lead_id": lead["id"],
                    "closer_id": bruno.id,
                    "booking_link_id": link["id"],
                    "scheduled_at": at(days),
                },
            ),
            201,
        )
        ctx[action] = ok(
            await client.post(f"/v1/calls/{pending['id']}/{action}", headers=h, json=body)
        )
    return ctx


async def admin_key_id(session: AsyncSession, org_id: str) -> str:
    key_id = await session.scalar(
        select(ApiKey.id).where(ApiKey.organization_id == org_id, ApiKey.scope == "admin")
    )
    assert key_id is not None
    return key_id


def shape(value: Any) -> Any:
    """The keys of a JSON value, recursively (lists by their first item; a lead's free-form
    ``metadata`` as a whole)."""
    if isinstance(value, dict):
        return {k: None if k == "metadata" else shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


async def test_every_change_fires_its_event_with_the_specified_body(
    hooks: Hooks, session: AsyncSession
) -> None:
    sub = await hooks.subscribe(event_types=ALL_EVENT_TYPES)
    ctx = await scenario(hooks, session)
    ping = ok(await hooks.client.post(f"/v1/webhooks/{sub['id']}/test", headers=hooks.org.headers))
    assert ping["success"] is True
    await hooks.dispatcher().drain()

    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payload in sorted(hooks.payloads(sub["name"]), key=lambda p: p["id"]):
        assert payload["organization_id"] == hooks.org.id
        assert RFC3339_Z.match(payload["created_at"]), payload["created_at"]
        by_type[payload["event"]].append(payload["data"])
        # exactly the published schema of its type (tests/webhooks/test_typed_events.py)
        model = EVENT_MODELS[EventType(payload["event"])]
        assert model.model_validate(payload).model_dump(mode="json") == payload
    assert {t: len(v) for t, v in by_type.items()} == {
        "lead.created": 1,
        "lead.updated": 2,
        "call.booked": 3,
        "call.updated": 2,
        "call.rescheduled": 2,
        "call.closer_reassigned": 2,
        "call.cancelled": 1,
        "call.outcome_set": 1,
        "call.no_show": 2,
        "call.absence_marked": 1,
        "payment.recorded": 1,
        "ping": 1,
        "call.confirmed": 1,
        "call.declined": 1,
    }
    # A refused calendar needs a real provider: tests/calendars/test_calls_on_caldav.py.
    # Webhook health events: tests/webhooks/test_health.py.
    elsewhere = {"calendar.connection_invalid", "webhook.failing", "webhook.disabled"}
    assert set(by_type) == {e.value for e in EventType} - elsewhere
    actor = {"type": "api_key", "id": await admin_key_id(session, hooks.org.id)}
    lead = ctx["lead"]
    contact = {k: lead[k] for k in CONTACT}

    # lead.created: the lead object; lead.updated: the lead, what changed and from what
    [created] = by_type["lead.created"]
    assert created["lead"]["id"] == lead["id"]
    assert created["lead"]["email"] == "dana@example.com"
    assert created["lead"]["metadata"] == {"utm_source": "newsletter"}
    company, status = by_type["lead.updated"]
    assert company["changed_fields"] == ["company"]
    assert company["previous"] == {"company": None}
    assert company["lead"]["company"] == "Whitfield Dental"
    assert status["changed_fields"] == ["status"]
    assert status["previous"] == {"status": "new"}
    assert status["lead"]["status"] == "booked"

    # call.booked (then the two pending calls of the confirmation below)
    booked, *pending = by_type["call.booked"]
    assert [p["call"]["status"] for p in pending] == ["pending", "pending"]
    assert set(booked) == {"call", "lead", "booked_by", "assignment"}
    assert booked["call"] == ctx["booked"]
    assert booked["lead"] == contact
    assert booked["booked_by"] == actor

    # call.updated: PATCH, and the payment linking itself to the call
    notes, linked = by_type["call.updated"]
    assert set(notes) == {"call", "changed_fields", "previous", "updated_by"}
    assert notes["changed_fields"] == ["expected_deal_value", "notes"]
    assert notes["previous"] == {"expected_deal_value": None, "notes": None}
    assert notes["call"] == ctx["updated"]
    assert notes["updated_by"] == actor
    assert linked["changed_fields"] == ["linked_payment_id"]
    assert linked["call"]["linked_payment_id"] == ctx["payment"]["id"]

    # call.rescheduled
    moved, moved_again = by_type["call.rescheduled"]
    assert set(moved) == {
        "call",
        "lead",
        "previous_scheduled_at",
        "scheduled_at",
        "reason",
        "reason_code",
        "rescheduled_by",
        "is_slot_free",
    }
    assert moved["previous_scheduled_at"] == ctx["booked"]["scheduled_at"]
    assert moved["scheduled_at"] == ctx["rescheduled"]["scheduled_at"] == at(4)
    assert moved["reason"] == "Lead asked for Thursday"
    assert moved["reason_code"] == moved["call"]["reason_code"] == "lead_requested"
    assert moved["rescheduled_by"] == actor
    assert moved["is_slot_free"] is True
    assert moved["lead"] == contact
    assert moved_again["call"]["closer_id"] == ctx["chloe"].id

    # call.closer_reassigned: all a partner needs to email the lead, without another request
    reassigned, via_reschedule = by_type["call.closer_reassigned"]
    result = ctx["reassigned"]
    for key, value in result.items():  # every field of the reassign response
        assert reassigned[key] == value, key
    after = ctx["after_reassign"]
    bruno = ctx["bruno"]
    assert reassigned["new_closer_id"] == bruno.id
    assert reassigned["new_closer_name"] == "Bruno Keller"
    assert reassigned["new_closer_email"] == "bruno@acme.test"
    assert reassigned["previous_closer_id"] == ctx["alice"].id
    assert reassigned["previous_closer_name"] == "Alice Moreno"
    assert reassigned["conferencing_link"] == after["conferencing_link"]
    assert reassigned["conferencing_link"] != ctx["rescheduled"]["conferencing_link"]
    assert reassigned["scheduled_at"] == after["scheduled_at"] == at(4)
    assert reassigned["duration_minutes"] == 45
    assert reassigned["time_zone"] == "America/Chicago"
    assert reassigned["reason"] == "Alice is out sick"
    assert reassigned["reason_code"] == "closer_unavailable"
    assert reassigned["lead"] == contact
    assert set(reassigned["lead"]) == CONTACT
    assert reassigned["reassigned_by"] == actor
    assert reassigned["call"] == after
    assert via_reschedule["new_closer_id"] == ctx["chloe"].id
    assert via_reschedule["previous_closer_id"] == bruno.id
    assert via_reschedule["reason"] == "Chloe speaks German"
    assert via_reschedule["reason_code"] is None
    assert via_reschedule["scheduled_at"] == at(5)

    # call.cancelled
    [cancelled] = by_type["call.cancelled"]
    assert set(cancelled) == {"call", "lead", "reason", "reason_code", "cancelled_by"}
    assert cancelled["call"] == ctx["cancelled"]
    assert cancelled["call"]["status"] == "cancelled"
    assert cancelled["reason"] == "Lead bought elsewhere"
    assert cancelled["reason_code"] == cancelled["call"]["reason_code"] == "lead_requested"
    assert cancelled["cancelled_by"] == actor

    # call.outcome_set and call.no_show carry the same data
    [outcome] = by_type["call.outcome_set"]
    no_show, absent = by_type["call.no_show"]
    assert outcome == no_show
    assert set(outcome) == {"call", "lead", "previous_status", "loss_reason", "set_by"}
    assert outcome["loss_reason"] is None
    assert outcome["call"] == ctx["no_show"]
    assert outcome["call"]["status"] == "no_show"
    assert outcome["previous_status"] == "scheduled"
    assert outcome["lead"]["email"] == "eli@example.com"
    assert outcome["set_by"] == actor

    # call.absence_marked, and call.no_show as the lead was absent too
    [marked] = by_type["call.absence_marked"]
    assert set(marked) == {"call", "lead", "absence", "previous_status", "marked_by"}
    assert marked["absence"] == {"host": True, "lead": True, "notes": "Neither joined"}
    assert marked["call"] == ctx["absence"]
    assert (marked["call"]["status"], marked["call"]["host_no_show"]) == ("no_show", True)
    assert marked["previous_status"] == "scheduled"
    assert marked["lead"]["email"] == "eli@example.com"
    assert marked["marked_by"] == actor
    assert absent["call"] == ctx["absence"]
    assert absent["set_by"] == actor

    # payment.recorded
    [payment] = by_type["payment.recorded"]
    assert set(payment) == {"payment", "lead", "call"}
    assert payment["payment"] == ctx["payment"]
    assert payment["lead"]["id"] == ctx["other_lead"].id
    assert payment["call"]["id"] == ctx["past_call_id"]
    assert payment["call"]["linked_payment_id"] == ctx["payment"]["id"]

    # call.confirmed and call.declined
    [confirmed] = by_type["call.confirmed"]
    assert set(confirmed) == {"call", "lead", "confirmed_by"}
    assert confirmed["call"] == ctx["confirm"]
    assert confirmed["call"]["status"] == "scheduled"
    assert confirmed["lead"] == contact
    assert confirmed["confirmed_by"] == actor
    [declined] = by_type["call.declined"]
    assert set(declined) == {"call", "lead", "reason", "reason_code", "declined_by"}
    assert declined["call"] == ctx["decline"]
    assert declined["call"]["status"] == "declined"
    assert (declined["reason"], declined["reason_code"]) == ("Outside our market", "not_qualified")
    assert declined["declined_by"] == actor

    [pinged] = by_type["ping"]
    assert pinged == {"webhook_id": sub["id"], "message": "closerdesk test ping"}

    # docs/webhooks.md shows one example per event type, with exactly this shape
    documented = documented_examples()
    assert sorted(documented) == sorted(e.value for e in EventType)
    for event_type, examples in by_type.items():
        example = documented[event_type]
        assert example["event"] == event_type
        assert list(example) == ["id", "event", "created_at", "organization_id", "data"]
        assert shape(example["data"]) in [shape(data) for data in examples], event_type


def documented_examples() -> dict[str, dict[str, Any]]:
    """The generated examples of docs/webhooks.md (fenced ``json`` blocks between the markers)."""
    text = DOCS.read_text(encoding="utf-8")
    text = text.split("<!-- examples:begin -->", 1)[1].split("<!-- examples:end -->", 1)[0]
    examples: dict[str, dict[str, Any]] = {}
    for block in re.findall(r"```json\n(.*?)\n```", text, flags=re.DOTALL):
        value = json.loads(block)
        if isinstance(value, dict) and "event" in value and "data" in value:
            assert value["event"] not in examples, f"two examples of {value['event']}"
            examples[value["event"]] = value
    return examples
