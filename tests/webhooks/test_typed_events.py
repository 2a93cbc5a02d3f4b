"""Typed webhook payloads (docs/webhooks.md, "Event types"): one model per event type builds
every event and is published in the OpenAPI ``webhooks`` section; readable ``operationId``s and
schema names; ``event_types: ["*"]``."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import select

from closerdesk.models import WebhookEvent
from closerdesk.webhooks.events import SUBSCRIBABLE, EventType, subscribed
from closerdesk.webhooks.payloads import DATA_MODELS, EVENT_MODELS, LeadCreatedData
from tests.factories import Org
from tests.webhooks.helpers import Hooks, a_lead, error, ok

PUBLIC = "https://1.1.1.1/hooks/closerdesk"
CAMEL = re.compile(r"^[a-z]+(?:[A-Z][a-z0-9]*)*$")


@pytest.fixture
def document(private_app: FastAPI) -> dict[str, Any]:
    return private_app.openapi()


# --- the models ----------------------------------------------------------------------------------
def test_every_event_type_has_its_model() -> None:
    assert set(DATA_MODELS) == set(EventType)
    assert set(EVENT_MODELS) == set(EventType)
    for event_type, data in DATA_MODELS.items():
        assert data.event_type is event_type


def test_a_payload_that_does_not_fit_its_model_is_refused() -> None:
    with pytest.raises(ValidationError):
        LeadCreatedData(lead={"id": "lead_1"})  # the lead object is incomplete
    with pytest.raises(ValidationError):
        LeadCreatedData(lead=a_lead(), extra="not part of v1")


async def test_every_stored_event_validates_against_its_published_model(
    hooks: Hooks, private_client: httpx.AsyncClient, org: Org
) -> None:
    """Real changes through the API: each stored body parses with its type's model."""
    await hooks.subscribe(event_types=["*"])
    r = await private_client.post(
        "/v1/leads", headers=org.headers, json={"email": "typed@example.com"}
    )
    lead = ok(r, 201)
    ok(
        await private_client.patch(
            f"/v1/leads/{lead['id']}", headers=org.headers, json={"full_name": "Typed Lead"}
        )
    )
    async with hooks.database.writer() as s:
        events = list(
            await s.scalars(select(WebhookEvent).where(WebhookEvent.organization_id == org.id))
        )
    assert {e.type for e in events} >= {"lead.created", "lead.updated"}
    for event in events:
        model = EVENT_MODELS[EventType(event.type)]
        assert model.model_validate(event.payload).model_dump(mode="json") == event.payload


# --- "*" -----------------------------------------------------------------------------------------
def test_star_means_every_type_but_ping() -> None:
    for event_type in EventType:
        assert subscribed(["*"], event_type) is (event_type is not EventType.ping)
    assert subscribed(["lead.created"], EventType.lead_created)
    assert not subscribed(["lead.created"], EventType.lead_updated)


async def test_a_star_subscription_receives_every_event(hooks: Hooks) -> None:
    everything = await hooks.subscribe(event_types=["*"])
    assert everything["event_types"] == ["*"]
    only_calls = await hooks.subscribe(event_types=["call.booked"])
    r = await hooks.client.post(
        "/v1/leads", headers=hooks.org.headers, json={"email": "star@example.com"}
    )
    ok(r, 201)
    await hooks.dispatcher().drain()
    assert [p["event"] for p in hooks.payloads(everything["name"])] == ["lead.created"]
    assert hooks.payloads(only_calls["name"]) == []
    shown = await hooks.get(everything["id"])
    assert shown["event_types"] == ["*"]


@pytest.mark.parametrize(
    ("event_types", "message"),
    [
        ([], 'list at least one event type, or ["*"] for every type'),
        (["*", "call.booked"], '"*" already means every type'),
        (["*", "*"], '"*" already means every type'),
        (["ping"], "event_types"),
    ],
)
async def test_event_types_that_say_nothing_clear_are_refused(
    private_client: httpx.AsyncClient, org: Org, event_types: list[str], message: str
) -> None:
    body = {"target_url": PUBLIC, "event_types": event_types}
    r = await private_client.post("/v1/webhooks", headers=org.headers, json=body)
    problem = error(r, 400, "VALIDATION_ERROR")
    assert message in problem["error"], problem


async def test_patch_to_star_and_empty(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    url = f"/v1/webhooks/{sub['id']}"
    patched = ok(
        await hooks.client.patch(url, headers=hooks.org.headers, json={"event_types": ["*"]})
    )
    assert patched["event_types"] == ["*"]
    r = await hooks.client.patch(url, headers=hooks.org.headers, json={"event_types": []})
    assert "at least one event type" in error(r, 400, "VALIDATION_ERROR")["error"]


def test_subscribable_types_are_published() -> None:
    assert {"webhook.failing", "webhook.disabled"} <= SUBSCRIBABLE


# --- the OpenAPI document ------------------------------------------------------------------------
def test_the_document_has_one_webhook_per_event_type(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    webhooks = document["webhooks"]
    assert set(webhooks) == {e.value for e in EventType}
    schemas = document["components"]["schemas"]
    for event_type in EventType:
        operation = webhooks[event_type.value]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        body = schemas[name]
        assert body["properties"]["event"]["const"] == event_type.value
        assert set(body["required"]) == {"id", "event", "created_at", "organization_id", "data"}
        data_ref = body["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        assert data_ref in schemas
        assert {p["name"] for p in operation["parameters"]} == {
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }
        assert CAMEL.match(operation["operationId"])
    booked = schemas["CallBookedData"]["properties"]
    assert booked["call"] == {"$ref": "#/components/schemas/Call"}
    assert booked["assignment"]["enum"] == ["manual", "round_robin"]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for section in ("paths", "webhooks")
        for path, item in document.get(section, {}).items()
        for method, operation in item.items()
    ]


def test_operation_ids_are_readable_and_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert CAMEL.match(operation_id), operation_id
    by_route = {(m, p): op["operationId"] for m, p, op in _operations(document)}
    assert by_route[("get", "/v1/calls/{call_id}")] == "getCall"
    assert by_route[("get", "/v1/calls")] == "listCalls"
    assert by_route[("post", "/v1/calls")] == "bookCall"
    assert by_route[("post", "/v1/calls/{call_id}/reassign-closer")] == "reassignCloser"
    assert by_route[("get", "/v1/calls/{call_id}/history")] == "getCallHistory"
    assert by_route[("get", "/health")] == "getHealth"


def test_schema_names_are_readable(document: dict[str, Any]) -> None:
    names = set(document["components"]["schemas"])
    for name in names:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", name), name
    assert {"CallEnvelope", "CallPage", "StringMapEnvelope", "SlotListEnvelope"} <= names
    text = str(document)
    for ref in re.findall(r"#/components/schemas/([^'\"]+)", text):
        assert ref in names, ref


def test_lost_enums_and_formats_are_back(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    rsvp = schemas["Call"]["properties"]["guest_rsvp_status"]["anyOf"]
    assert {"type": "string", "enum": ["yes", "no", "maybe", "pending"]} in rsvp
    history = schemas["CallHistoryEntry"]["properties"]
    assert set(history["type"]["enum"]) == {
        "booked",
        "rescheduled",
        "closer_reassigned",
        "cancelled",
        "outcome_set",
        "updated",
        "absence_marked",
        "confirmed",
        "declined",
    }
    assert history["actor_type"]["enum"] == ["api_key", "member"]
    assert schemas["Slot"]["properties"]["local_start"]["format"] == "date-time"
    delivered = schemas["WebhookDelivery"]["properties"]["event_type"]["enum"]
    assert set(delivered) == {e.value for e in EventType}
    listed = schemas["WebhookSubscription"]["properties"]["event_types"]["items"]["enum"]
    assert set(listed) == SUBSCRIBABLE | {"*"}
