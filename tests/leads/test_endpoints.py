"""``/v1/leads`` (SPEC §4): create, get, list (filters, cursor pages), patch, webhook rows."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.models import WebhookEvent
from tests.factories import Org

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def _events(database: Database, org_id: str, event_type: str) -> list[WebhookEvent]:
    async with database.reader() as s:
        rows = await s.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.organization_id == org_id, WebhookEvent.type == event_type)
            .order_by(WebhookEvent.id)
        )
        return list(rows)


def _assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == code
    assert body["requestId"] == r.headers["X-Request-Id"]
    return body


async def _create(client: httpx.AsyncClient, org: Org, **body: Any) -> dict[str, Any]:
    body.setdefault("email", f"{new_id('x').lower()}@example.com")
    r = await client.post("/v1/leads", headers=org.auth("write"), json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def _all_pages(
    client: httpx.AsyncClient, org: Org, params: dict[str, Any]
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = dict(params)
        if cursor is not None:
            query["cursor"] = cursor
        r = await client.get("/v1/leads", headers=org.auth("read"), params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["data"])
        assert body["pagination"]["has_more"] is (body["pagination"]["next_cursor"] is not None)
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not terminate"


# --- create --------------------------------------------------------------------------------------
async def test_create_lead_returns_the_lead(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    r = await client.post(
        "/v1/leads",
        headers=org.auth("write"),
        json={
            "email": "  Jane.Doe@Example.COM ",
            "full_name": "Jane Doe",
            "phone": "+14155550123",
            "company": "Doe Inc",
            "time_zone": "Europe/Berlin",
            "metadata": {"utm_source": "ads", "crm_id": 42},
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["success"] is True
    lead = body["data"]
    assert lead["id"].startswith("lead_")
    assert lead["email"] == "jane.doe@example.com"
    assert lead["full_name"] == "Jane Doe"
    assert lead["phone"] == "+14155550123"
    assert lead["company"] == "Doe Inc"
    assert lead["time_zone"] == "Europe/Berlin"
    assert lead["status"] == "new"
    assert lead["metadata"] == {"utm_source": "ads", "crm_id": 42}
    assert RFC3339_Z.match(lead["created_at"])
    assert RFC3339_Z.match(lead["updated_at"])

    got = await client.get(f"/v1/leads/{lead['id']}", headers=org.auth("read"))
    assert got.status_code == 200
    assert got.json()["data"] == lead


async def test_create_lead_minimal_defaults(client: httpx.AsyncClient, org: Org) -> None:
    lead = await _create(client, org, email="min@example.com")
    assert lead["full_name"] is None
    assert lead["phone"] is None
    assert lead["company"] is None
    assert lead["time_zone"] is None
    assert lead["status"] == "new"
    assert lead["metadata"] == {}


async def test_create_lead_fires_lead_created_with_the_partner_payload(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    lead = await _create(client, org, email="hook@example.com", full_name="Hook")
    rows = await _events(database, org.id, "lead.created")
    assert len(rows) == 1
    payload = rows[0].payload
    assert set(payload) == {"id", "event", "created_at", "organization_id", "data"}
    assert payload["id"] == rows[0].id
    assert payload["id"].startswith("msg_")
    assert payload["event"] == "lead.created"
    assert payload["organization_id"] == org.id
    assert RFC3339_Z.match(payload["created_at"])
    assert payload["data"]["lead"]["id"] == lead["id"]
    assert payload["data"]["lead"]["email"] == "hook@example.com"
    assert payload["data"]["lead"]["full_name"] == "Hook"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({}, "email"),
        ({"email": "a@example.com", "phone": "555-0123"}, "phone"),
        ({"email": "a@example.com", "phone": "+0123456"}, "phone"),
        ({"email": "a@example.com", "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"email": "a@example.com", "status": "hot"}, "status"),
        ({"email": "a@example.com", "full_name": "x" * 256}, "full_name"),
        ({"email": "a@example.com", "metadata": ["not", "an", "object"]}, "metadata"),
        ({"email": "a@example.com", "unknown_field": 1}, "unknown_field"),
    ],
)
async def test_create_lead_validation(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], field: str
) -> None:
    r = await client.post("/v1/leads", headers=org.auth("write"), json=body)
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert field in [d["field"] for d in err["details"]]
    assert all(set(d) == {"field", "message"} for d in err["details"])


async def test_create_lead_metadata_over_16_kib_is_400(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post(
        "/v1/leads",
        headers=org.auth("write"),
        json={"email": "big@example.com", "metadata": {"blob": "x" * 17_000}},
    )
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert err["details"][0]["field"] == "metadata"


async def test_lead_name_and_company_at_the_limit_are_stored(
    client: httpx.AsyncClient, org: Org
) -> None:
    """The longest accepted values round-trip on every database (no 500 from a column limit)."""
    r = await client.post("/v1/leads", headers=org.auth("write"), json={"email": "probe@x.io"})
    assert r.status_code == 201
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["LeadCreate"]
    for name in ("full_name", "company"):
        limit = next(
            option["maxLength"]
            for option in schema["properties"][name]["anyOf"]
            if option.get("type") == "string"
        )
        lead = await _create(client, org, **{name: "y" * limit})
        assert lead[name] == "y" * limit


async def test_create_lead_email_taken_is_409(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    await _create(client, org, email="dup@example.com")
    r = await client.post("/v1/leads", headers=org.auth("write"), json={"email": "DUP@example.com"})
    _assert_error(r, 409, "LEAD_EMAIL_TAKEN")
    assert len(await _events(database, org.id, "lead.created")) == 1


async def test_same_email_in_another_organization_is_allowed(
    client: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    await _create(client, org, email="shared@example.com")
    await _create(client, other_org, email="shared@example.com")


async def test_create_lead_needs_write_scope(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post("/v1/leads", headers=org.auth("read"), json={"email": "r@example.com"})
    _assert_error(r, 403, "FORBIDDEN")


# --- get -----------------------------------------------------------------------------------------
async def test_get_missing_lead_is_404(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.get(f"/v1/leads/{new_id('lead')}", headers=org.auth("read"))
    _assert_error(r, 404, "LEAD_NOT_FOUND")


# --- list ----------------------------------------------------------------------------------------
async def test_list_pages_with_limit_2_without_duplicates(
    client: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    created = [(await _create(client, org, email=f"p{i}@example.com"))["id"] for i in range(5)]
    await _create(client, other_org, email="elsewhere@example.com")
    pages = await _all_pages(client, org, {"limit": 2})
    assert [len(p) for p in pages] == [2, 2, 1]
    ids = [lead["id"] for page in pages for lead in page]
    assert len(ids) == len(set(ids))
    assert ids == created  # oldest first, stable


async def test_list_exact_page_boundary_has_no_empty_tail(
    client: httpx.AsyncClient, org: Org
) -> None:
    for i in range(4):
        await _create(client, org, email=f"b{i}@example.com")
    pages = await _all_pages(client, org, {"limit": 2})
    assert [len(p) for p in pages] == [2, 2]


async def test_list_default_envelope(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.get("/v1/leads", headers=org.auth("read"))
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "data": [],
        "pagination": {"next_cursor": None, "has_more": False},
    }


async def test_list_filters_by_status_and_email(client: httpx.AsyncClient, org: Org) -> None:
    a = await _create(client, org, email="a@example.com", status="qualified")
    b = await _create(client, org, email="b@example.com", status="qualified")
    await _create(client, org, email="c@example.com")
    qualified = [
        x["id"]
        for page in await _all_pages(client, org, {"status": "qualified", "limit": 1})
        for x in page
    ]
    assert qualified == [a["id"], b["id"]]
    r = await client.get("/v1/leads", headers=org.auth("read"), params={"email": " B@Example.com "})
    assert [x["id"] for x in r.json()["data"]] == [b["id"]]
    r = await client.get(
        "/v1/leads", headers=org.auth("read"), params={"email": "b@example.com", "status": "new"}
    )
    assert r.json()["data"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "hot"}, "status"),
        ({"cursor": "not-a-cursor!"}, "cursor"),
        ({"cursor": "WzFd"}, "cursor"),  # base64 of [1]: not one of ours
    ],
)
async def test_list_rejects_bad_parameters(
    client: httpx.AsyncClient, org: Org, params: dict[str, Any], field: str
) -> None:
    r = await client.get("/v1/leads", headers=org.auth("read"), params=params)
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert err["details"][0]["field"] == field


# --- patch ---------------------------------------------------------------------------------------
async def test_patch_lead_changes_only_given_fields(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    lead = await _create(
        client, org, email="patch@example.com", full_name="Old Name", company="Old Co"
    )
    r = await client.patch(
        f"/v1/leads/{lead['id']}",
        headers=org.auth("write"),
        json={"full_name": "New Name", "company": None, "status": "qualified"},
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["full_name"] == "New Name"
    assert data["company"] is None
    assert data["status"] == "qualified"
    assert data["email"] == "patch@example.com"
    assert data["created_at"] == lead["created_at"]
    got = (await client.get(f"/v1/leads/{lead['id']}", headers=org.headers)).json()["data"]
    assert got == data

    rows = await _events(database, org.id, "lead.updated")
    assert len(rows) == 1
    payload = rows[0].payload
    assert set(payload) == {"id", "event", "created_at", "organization_id", "data"}
    assert payload["id"] == rows[0].id
    assert payload["id"].startswith("msg_")
    assert payload["event"] == "lead.updated"
    assert payload["organization_id"] == org.id
    assert RFC3339_Z.match(payload["created_at"])
    assert payload["data"]["lead"]["id"] == lead["id"]
    assert payload["data"]["lead"]["full_name"] == "New Name"
    assert payload["data"]["changed_fields"] == ["company", "full_name", "status"]
    assert payload["data"]["previous"] == {
        "company": "Old Co",
        "full_name": "Old Name",
        "status": "new",
    }


async def test_patch_without_change_fires_nothing(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    lead = await _create(client, org, email="same@example.com", full_name="Same")
    r = await client.patch(
        f"/v1/leads/{lead['id']}", headers=org.auth("write"), json={"full_name": "Same"}
    )
    assert r.status_code == 200
    r = await client.patch(f"/v1/leads/{lead['id']}", headers=org.auth("write"), json={})
    assert r.status_code == 200
    assert r.json()["data"]["full_name"] == "Same"
    assert await _events(database, org.id, "lead.updated") == []


async def test_patch_email_to_a_taken_one_is_409(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    await _create(client, org, email="first@example.com")
    second = await _create(client, org, email="second@example.com")
    r = await client.patch(
        f"/v1/leads/{second['id']}", headers=org.auth("write"), json={"email": "FIRST@example.com"}
    )
    _assert_error(r, 409, "LEAD_EMAIL_TAKEN")
    got = (await client.get(f"/v1/leads/{second['id']}", headers=org.headers)).json()["data"]
    assert got["email"] == "second@example.com"
    assert await _events(database, org.id, "lead.updated") == []
    # Its own email (in any case) is not "taken".
    r = await client.patch(
        f"/v1/leads/{second['id']}", headers=org.auth("write"), json={"email": "Second@Example.com"}
    )
    assert r.status_code == 200
    assert r.json()["data"]["email"] == "second@example.com"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": None}, "email"),
        ({"status": None}, "status"),
        ({"metadata": None}, "metadata"),
        ({"phone": "12345"}, "phone"),
        ({"time_zone": "Nowhere"}, "time_zone"),
        ({"id": "lead_other"}, "id"),
        ({"metadata": {"blob": "x" * 17_000}}, "metadata"),
    ],
)
async def test_patch_lead_validation(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], field: str
) -> None:
    lead = await _create(client, org, email="v@example.com")
    r = await client.patch(f"/v1/leads/{lead['id']}", headers=org.auth("write"), json=body)
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert field in [d["field"] for d in err["details"]]


async def test_patch_missing_lead_is_404(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.patch(
        f"/v1/leads/{new_id('lead')}", headers=org.auth("write"), json={"full_name": "X"}
    )
    _assert_error(r, 404, "LEAD_NOT_FOUND")


async def test_patch_lead_needs_write_scope(client: httpx.AsyncClient, org: Org) -> None:
    lead = await _create(client, org, email="scope@example.com")
    r = await client.patch(
        f"/v1/leads/{lead['id']}", headers=org.auth("read"), json={"full_name": "X"}
    )
    _assert_error(r, 403, "FORBIDDEN")
