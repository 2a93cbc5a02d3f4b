"""``/v1/payments`` (SPEC §4): record (links the call), get, list."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import CallEvent, Payment, WebhookEvent
from tests.factories import Org, create_call, create_lead, create_member

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == code
    assert body["requestId"] == r.headers["X-Request-Id"]
    return body


async def _events(database: Database, org_id: str) -> list[WebhookEvent]:
    async with database.reader() as s:
        rows = await s.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.organization_id == org_id)
            .order_by(WebhookEvent.id)
        )
        return list(rows)


async def _count(database: Database, model: Any, org_id: str) -> int:
    async with database.reader() as s:
        value = await s.scalar(
            select(func.count()).select_from(model).where(model.organization_id == org_id)
        )
        return int(value or 0)


async def _product(client: httpx.AsyncClient, org: Org) -> dict[str, Any]:
    r = await client.post("/v1/products", headers=org.headers, json={"name": "P", "price": 9_900})
    assert r.status_code == 201
    data: dict[str, Any] = r.json()["data"]
    return data


async def _pay(client: httpx.AsyncClient, org: Org, **body: Any) -> httpx.Response:
    body.setdefault("amount", 250_000)
    body.setdefault("provider", "stripe")
    return await client.post("/v1/payments", headers=org.auth("write"), json=body)


async def test_record_payment_for_a_lead(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    lead = await create_lead(session, org)
    before = utcnow()
    r = await _pay(client, org, lead_id=lead.id, currency="EUR", provider_payment_id="pi_123")
    assert r.status_code == 201, r.text
    payment = r.json()["data"]
    assert payment["id"].startswith("pay_")
    assert payment["lead_id"] == lead.id
    assert payment["call_id"] is None
    assert payment["product_id"] is None
    assert payment["amount"] == 250_000
    assert payment["currency"] == "EUR"
    assert payment["provider"] == "stripe"
    assert payment["provider_payment_id"] == "pi_123"
    assert RFC3339_Z.match(payment["paid_at"])
    paid_at = datetime.fromisoformat(payment["paid_at"].replace("Z", "+00:00"))
    assert before <= paid_at <= utcnow()
    got = await client.get(f"/v1/payments/{payment['id']}", headers=org.auth("read"))
    assert got.status_code == 200
    assert got.json()["data"] == payment

    events = await _events(database, org.id)
    assert [e.type for e in events] == ["payment.recorded"]
    body = events[0].payload
    assert set(body) == {"id", "event", "created_at", "organization_id", "data"}
    assert body["id"] == events[0].id
    assert body["id"].startswith("msg_")
    assert body["event"] == "payment.recorded"
    assert body["organization_id"] == org.id
    assert RFC3339_Z.match(body["created_at"])
    assert body["data"]["payment"] == payment
    assert body["data"]["lead"]["id"] == lead.id
    assert body["data"]["lead"]["email"] == lead.email
    assert body["data"]["call"] is None


async def test_record_payment_links_the_call(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=utcnow() - timedelta(hours=2)
    )
    product = await _product(client, org)
    paid_at = "2026-01-20T10:00:00-05:00"
    r = await _pay(
        client, org, lead_id=lead.id, call_id=call.id, product_id=product["id"], paid_at=paid_at
    )
    assert r.status_code == 201, r.text
    payment = r.json()["data"]
    assert payment["call_id"] == call.id
    assert payment["product_id"] == product["id"]
    assert payment["paid_at"] == "2026-01-20T15:00:00Z"

    got = (await client.get(f"/v1/calls/{call.id}", headers=org.headers)).json()["data"]
    assert got["linked_payment_id"] == payment["id"]

    events = await _events(database, org.id)
    by_type = {e.type: e.payload for e in events}
    assert sorted(by_type) == ["call.updated", "payment.recorded"]
    updated = by_type["call.updated"]
    assert updated["id"].startswith("msg_")
    assert updated["organization_id"] == org.id
    assert updated["data"]["call"]["id"] == call.id
    assert updated["data"]["call"]["linked_payment_id"] == payment["id"]
    assert updated["data"]["changed_fields"] == ["linked_payment_id"]
    assert updated["data"]["previous"] == {"linked_payment_id": None}
    recorded = by_type["payment.recorded"]
    assert recorded["data"]["payment"]["id"] == payment["id"]
    assert recorded["data"]["call"]["id"] == call.id
    assert recorded["data"]["call"]["linked_payment_id"] == payment["id"]

    history = (await client.get(f"/v1/calls/{call.id}/history", headers=org.headers)).json()
    assert history["data"][-1]["type"] == "updated"
    assert history["data"][-1]["after"] == {"linked_payment_id": payment["id"]}

    r = await client.get("/v1/payments", headers=org.headers, params={"call_id": call.id})
    assert [p["id"] for p in r.json()["data"]] == [payment["id"]]


@pytest.mark.parametrize("missing", ["lead_id", "call_id", "product_id"])
async def test_record_payment_unknown_references_are_404(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    database: Database,
    missing: str,
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    product = await _product(client, org)
    body = {"lead_id": lead.id, "call_id": call.id, "product_id": product["id"]}
    body[missing] = new_id({"lead_id": "lead", "call_id": "call", "product_id": "prod"}[missing])
    code = {"lead_id": "LEAD", "call_id": "CALL", "product_id": "PRODUCT"}[missing]
    _assert_error(await _pay(client, org, **body), 404, f"{code}_NOT_FOUND")
    assert await _count(database, Payment, org.id) == 0
    assert await _events(database, org.id) == []
    got = (await client.get(f"/v1/calls/{call.id}", headers=org.headers)).json()["data"]
    assert got["linked_payment_id"] is None


async def test_record_payment_call_of_another_lead_is_409(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    other_lead = await create_lead(session, org)
    call = await create_call(session, org, lead=other_lead, closer=closer)
    r = await _pay(client, org, lead_id=lead.id, call_id=call.id)
    _assert_error(r, 409, "CALL_LEAD_MISMATCH")
    assert await _count(database, Payment, org.id) == 0
    assert await _count(database, CallEvent, org.id) == 0
    assert await _events(database, org.id) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 0, "provider": "stripe"}, "amount"),
        ({"amount": -100, "provider": "stripe"}, "amount"),
        ({"amount": 10.5, "provider": "stripe"}, "amount"),
        ({"provider": "stripe"}, "amount"),
        ({"amount": 100}, "provider"),
        ({"amount": 100, "provider": ""}, "provider"),
        ({"amount": 100, "provider": "stripe", "currency": "usd"}, "currency"),
        ({"amount": 100, "provider": "stripe", "paid_at": "2026-01-20T10:00:00"}, "paid_at"),
        ({"amount": 100, "provider": "stripe", "status": "paid"}, "status"),
    ],
)
async def test_record_payment_validation(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    body: dict[str, Any],
    field: str,
) -> None:
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/payments", headers=org.auth("write"), json={"lead_id": lead.id, **body}
    )
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert field in [d["field"] for d in err["details"]]


async def test_record_payment_needs_lead_id_and_write_scope(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/payments", headers=org.auth("write"), json={"amount": 1, "provider": "stripe"}
    )
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert err["details"][0]["field"] == "lead_id"
    r = await client.post(
        "/v1/payments",
        headers=org.auth("read"),
        json={"lead_id": lead.id, "amount": 1, "provider": "stripe"},
    )
    _assert_error(r, 403, "FORBIDDEN")


async def test_get_missing_payment_is_404(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.get(f"/v1/payments/{new_id('pay')}", headers=org.auth("read"))
    _assert_error(r, 404, "PAYMENT_NOT_FOUND")


async def test_list_payments_pages_and_filters(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    lead_a = await create_lead(session, org)
    lead_b = await create_lead(session, org)
    ids_a = [(await _pay(client, org, lead_id=lead_a.id)).json()["data"]["id"] for _ in range(3)]
    ids_b = [(await _pay(client, org, lead_id=lead_b.id)).json()["data"]["id"] for _ in range(2)]
    foreign_lead = await create_lead(session, other_org)
    r = await client.post(
        "/v1/payments",
        headers=other_org.headers,
        json={"lead_id": foreign_lead.id, "amount": 1, "provider": "x"},
    )
    assert r.status_code == 201

    async def walk(params: dict[str, Any]) -> list[list[str]]:
        pages: list[list[str]] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            r = await client.get("/v1/payments", headers=org.auth("read"), params=query)
            assert r.status_code == 200, r.text
            body = r.json()
            pages.append([p["id"] for p in body["data"]])
            cursor = body["pagination"]["next_cursor"]
            assert body["pagination"]["has_more"] is (cursor is not None)
            if cursor is None:
                return pages
            assert len(pages) < 20

    pages = await walk({"limit": 2})
    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [i for page in pages for i in page]
    assert len(set(flat)) == len(flat)
    assert flat == ids_a + ids_b
    assert [i for p in await walk({"lead_id": lead_a.id, "limit": 2}) for i in p] == ids_a
    assert [i for p in await walk({"lead_id": lead_b.id}) for i in p] == ids_b
    assert await walk({"lead_id": foreign_lead.id}) == [[]]
    assert await walk({"call_id": new_id("call")}) == [[]]


async def test_a_new_payment_for_a_call_releases_the_previous_one(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=await create_member(session, org))
    body = {"amount": 100_000, "currency": "USD", "provider": "stripe", "lead_id": lead.id}
    first = (
        await client.post("/v1/payments", headers=org.headers, json={**body, "call_id": call.id})
    ).json()["data"]
    second = (
        await client.post("/v1/payments", headers=org.headers, json={**body, "call_id": call.id})
    ).json()["data"]
    got = (await client.get(f"/v1/calls/{call.id}", headers=org.headers)).json()["data"]
    assert got["linked_payment_id"] == second["id"]
    released = (await client.get(f"/v1/payments/{first['id']}", headers=org.headers)).json()
    assert released["data"]["call_id"] is None
