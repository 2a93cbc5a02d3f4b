"""``/v1/products`` (SPEC §4): price in integer cents."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.kit.ids import new_id
from closerdesk.kit.time import isoformat_z, utcnow
from tests.factories import Org, create_lead, create_member


def _assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == code
    assert body["requestId"] == r.headers["X-Request-Id"]
    return body


async def _create(client: httpx.AsyncClient, org: Org, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Coaching program")
    body.setdefault("price", 500_000)
    r = await client.post("/v1/products", headers=org.auth("write"), json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def test_create_product(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post(
        "/v1/products",
        headers=org.auth("write"),
        json={"name": "Mastermind", "description": "12 weeks", "price": 500_000, "currency": "EUR"},
    )
    assert r.status_code == 201, r.text
    product = r.json()["data"]
    assert product["id"].startswith("prod_")
    assert product["name"] == "Mastermind"
    assert product["description"] == "12 weeks"
    assert product["price"] == 500_000
    assert isinstance(product["price"], int)
    assert product["currency"] == "EUR"
    assert product["is_active"] is True
    assert product["created_at"].endswith("Z")
    got = await client.get(f"/v1/products/{product['id']}", headers=org.auth("read"))
    assert got.status_code == 200
    assert got.json()["data"] == product


async def test_create_product_defaults(client: httpx.AsyncClient, org: Org) -> None:
    product = await _create(client, org, name="Basic", price=0)
    assert product["currency"] == "USD"
    assert product["description"] is None
    assert product["price"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price": 100}, "name"),
        ({"name": "", "price": 100}, "name"),
        ({"name": "x" * 201, "price": 100}, "name"),
        ({"name": "A"}, "price"),
        ({"name": "A", "price": -1}, "price"),
        ({"name": "A", "price": 19.99}, "price"),
        ({"name": "A", "price": "100"}, "price"),
        ({"name": "A", "price": 10**13 + 1}, "price"),
        ({"name": "A", "price": 100, "currency": "usd"}, "currency"),
        ({"name": "A", "price": 100, "currency": "DOLLARS"}, "currency"),
        ({"name": "A", "price": 100, "sku": "x"}, "sku"),
    ],
)
async def test_create_product_validation(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], field: str
) -> None:
    r = await client.post("/v1/products", headers=org.auth("write"), json=body)
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert field in [d["field"] for d in err["details"]]


async def test_create_product_needs_write_scope(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post("/v1/products", headers=org.auth("read"), json={"name": "A", "price": 1})
    _assert_error(r, 403, "FORBIDDEN")


async def test_get_missing_product_is_404(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.get(f"/v1/products/{new_id('prod')}", headers=org.auth("read"))
    _assert_error(r, 404, "PRODUCT_NOT_FOUND")


async def test_list_products_pages_and_filters(
    client: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    created = [await _create(client, org, name=f"P{i}", is_active=i % 2 == 0) for i in range(5)]
    await _create(client, other_org, name="Elsewhere")

    async def walk(params: dict[str, Any]) -> list[list[str]]:
        pages: list[list[str]] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            r = await client.get("/v1/products", headers=org.auth("read"), params=query)
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
    assert len(flat) == len(set(flat))
    assert flat == [p["id"] for p in created]
    active = [i for page in await walk({"limit": 2, "is_active": "true"}) for i in page]
    assert active == [p["id"] for p in created if p["is_active"]]
    inactive = [i for page in await walk({"is_active": "false"}) for i in page]
    assert inactive == [p["id"] for p in created if not p["is_active"]]
    r = await client.get("/v1/products", headers=org.headers, params={"is_active": "maybe"})
    _assert_error(r, 400, "VALIDATION_ERROR")


async def test_patch_product(client: httpx.AsyncClient, org: Org) -> None:
    product = await _create(client, org, description="old")
    r = await client.patch(
        f"/v1/products/{product['id']}",
        headers=org.auth("write"),
        json={"price": 750_000, "is_active": False, "description": None},
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["price"] == 750_000
    assert data["is_active"] is False
    assert data["description"] is None
    assert data["name"] == product["name"]
    assert data["currency"] == product["currency"]
    got = (await client.get(f"/v1/products/{product['id']}", headers=org.headers)).json()
    assert got["data"] == data
    r = await client.patch(f"/v1/products/{product['id']}", headers=org.auth("write"), json={})
    assert r.status_code == 200
    assert r.json()["data"]["price"] == 750_000


@pytest.mark.parametrize(
    "body",
    [
        {"name": None},
        {"price": None},
        {"currency": None},
        {"is_active": None},
        {"price": -5},
        {"currency": "eur"},
        {"id": "prod_x"},
    ],
)
async def test_patch_product_validation(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any]
) -> None:
    product = await _create(client, org)
    r = await client.patch(f"/v1/products/{product['id']}", headers=org.auth("write"), json=body)
    _assert_error(r, 400, "VALIDATION_ERROR")
    got = (await client.get(f"/v1/products/{product['id']}", headers=org.headers)).json()
    assert got["data"] == product


async def test_patch_missing_product_is_404(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.patch(
        f"/v1/products/{new_id('prod')}", headers=org.auth("write"), json={"price": 1}
    )
    _assert_error(r, 404, "PRODUCT_NOT_FOUND")


async def test_patch_product_needs_write_scope(client: httpx.AsyncClient, org: Org) -> None:
    product = await _create(client, org)
    r = await client.patch(
        f"/v1/products/{product['id']}", headers=org.auth("read"), json={"price": 1}
    )
    _assert_error(r, 403, "FORBIDDEN")


async def test_inactive_product_cannot_be_booked(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    product = await _create(client, org, is_active=False)
    r = await client.post(
        "/v1/calls",
        headers=org.auth("write"),
        json={
            "lead_id": lead.id,
            "closer_id": closer.id,
            "product_id": product["id"],
            "scheduled_at": isoformat_z((utcnow() + timedelta(days=2)).replace(microsecond=0)),
            "duration_minutes": 30,
        },
    )
    _assert_error(r, 409, "PRODUCT_INACTIVE")
