"""Wire conventions (SPEC §2): the error envelope, request ids, size and media-type guards,
the OpenAPI document, and the public ``/meet/{token}`` links."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.app import create_app
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.leads import service as leads_service
from closerdesk.models import Lead
from tests.factories import Org, create_call, create_lead, create_member

try:  # FastAPI ≥ 0.120 keeps included routers lazily; this walks into them.
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI lists flat routes
    iter_route_contexts = None

REQUEST_ID = re.compile(r"^req_[0-9A-Z]{26}$")
CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
MIB = 1024 * 1024


def _assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str)
    assert body["error"]
    assert REQUEST_ID.match(body["requestId"])
    assert r.headers["X-Request-Id"] == body["requestId"]
    assert set(body) <= {"success", "error", "code", "requestId", "details"}
    return body


def _api_routes(app: FastAPI) -> list[tuple[str, str]]:
    routes: list[tuple[str, str]] = []
    flat = iter_route_contexts(app.routes) if iter_route_contexts else app.routes
    for route in flat:
        if isinstance(getattr(route, "original_route", route), APIRoute):
            routes += [(m, route.path) for m in sorted(route.methods or ())]
    return routes


# --- routing errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/nope", "/nope", "/v1/calls/x/y/z", "/v1"])
async def test_unknown_route_is_404_not_found(
    client: httpx.AsyncClient, org: Org, path: str
) -> None:
    _assert_error(await client.get(path, headers=org.headers), 404, "NOT_FOUND")
    _assert_error(await client.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/leads", {"GET", "POST"}),
        ("PUT", "/v1/leads/lead_x", {"GET", "PATCH"}),
        ("POST", "/v1/calls/call_x", {"GET", "PATCH"}),
        ("POST", "/health", {"GET"}),
        # A path written out in full owns it, although ``/v1/calls/{call_id}`` matches it too.
        ("OPTIONS", "/v1/calls/bulk-reassign", {"POST"}),
    ],
)
async def test_wrong_method_is_405(
    client: httpx.AsyncClient, org: Org, method: str, path: str, allowed: set[str]
) -> None:
    r = await client.request(method, path, headers=org.headers)
    _assert_error(r, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in r.headers["Allow"].split(",")} == allowed


# --- body guards ---------------------------------------------------------------------------------
def _big_body(size: int) -> bytes:
    head, tail = b'{"email": "big@example.com", "metadata": {"x": "', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_body_over_1_mib_with_content_length_is_413(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    body = _big_body(MIB + 1)
    r = await client.post(
        "/v1/leads",
        headers={**org.headers, "Content-Type": "application/json"},
        content=body,
    )
    assert r.request.headers["Content-Length"] == str(MIB + 1)
    _assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    # A lying, huge Content-Length is refused before anything is read.
    r = await client.patch(
        "/v1/leads/lead_x",
        headers={**org.headers, "Content-Type": "application/json"},
        content=b"{}" + b" " * MIB,
    )
    _assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Lead)) == 0


async def test_body_over_1_mib_streamed_chunked_is_413(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    body = _big_body(MIB + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    r = await client.post(
        "/v1/leads",
        headers={**org.headers, "Content-Type": "application/json"},
        content=chunks(),
    )
    assert "Content-Length" not in r.request.headers
    assert r.request.headers["Transfer-Encoding"] == "chunked"
    _assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Lead)) == 0


async def test_streamed_body_under_the_limit_is_accepted(
    client: httpx.AsyncClient, org: Org
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "stream'
        yield b'ed@example.com"}'

    r = await client.post(
        "/v1/leads",
        headers={**org.headers, "Content-Type": "application/json"},
        content=chunks(),
    )
    assert r.status_code == 201, r.text


async def test_body_of_exactly_1_mib_is_not_413(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post(
        "/v1/leads",
        headers={**org.headers, "Content-Type": "application/json"},
        content=_big_body(MIB),
    )
    # It is read and judged on its content (metadata over 16 KiB), not on its size.
    _assert_error(r, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        None,
    ],
)
async def test_non_json_body_is_415(
    client: httpx.AsyncClient, org: Org, content_type: str | None
) -> None:
    headers = dict(org.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await client.post("/v1/leads", headers=headers, content=b'{"email": "a@example.com"}')
    _assert_error(r, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd+json"]
)
async def test_json_media_types_are_accepted(
    client: httpx.AsyncClient, org: Org, content_type: str
) -> None:
    r = await client.post(
        "/v1/leads",
        headers={**org.headers, "Content-Type": content_type},
        content=b'{"email": "typed@example.com"}',
    )
    assert r.status_code == 201, r.text


# --- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content", [b'{"email": ', b"{'email': 'a@example.com'}", b"not json", b"\xff\xfe"]
)
async def test_invalid_json_is_400_validation_error(
    client: httpx.AsyncClient, org: Org, content: bytes
) -> None:
    r = await client.post(
        "/v1/leads", headers={**org.headers, "Content-Type": "application/json"}, content=content
    )
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert body["details"] == [{"field": "body", "message": "the body is not valid JSON"}]


async def test_missing_body_is_400(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post("/v1/leads", headers=org.headers)
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "body"


async def test_validation_details_name_every_field(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post(
        "/v1/team", headers=org.headers, json={"name": "A", "email": "bad", "role": "ceo"}
    )
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert isinstance(body["details"], list)
    for detail in body["details"]:
        assert set(detail) == {"field", "message"}
        assert isinstance(detail["message"], str)
        assert detail["message"]
    assert {d["field"] for d in body["details"]} == {"email", "role"}
    assert body["error"].startswith(body["details"][0]["field"])


async def test_nested_field_paths_are_dotted(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    lead = await create_lead(session, org)
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={"lead_id": lead.id, "call_kind": "intent", "form_data": [{"label": "Budget"}]},
    )
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert "form_data.0.field_id" in [d["field"] for d in body["details"]]


async def test_new_closer_id_pattern_is_400_with_field(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post(
        "/v1/calls/call_x/reassign-closer", headers=org.headers, json={"new_closer_id": "bob"}
    )
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "new_closer_id"


async def test_naive_timestamps_are_400(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    member = await create_member(session, org)
    r = await client.post(
        f"/v1/team/{member.id}/busy-blocks",
        headers=org.headers,
        json={"start": "2030-01-20T15:00:00", "end": "2030-01-20T16:00:00Z"},
    )
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "start"
    assert "offset" in body["details"][0]["message"]
    r = await client.get(
        "/v1/calls", headers=org.headers, params={"scheduled_after": "2030-01-20T15:00:00"}
    )
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "scheduled_after"
    # With an offset it is accepted and normalised.
    r = await client.post(
        f"/v1/team/{member.id}/busy-blocks",
        headers=org.headers,
        json={"start": "2030-01-20T15:00:00+01:00", "end": "2030-01-20T16:00:00Z"},
    )
    assert r.status_code == 201
    assert r.json()["data"]["start"] == "2030-01-20T14:00:00Z"


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("stauts=new", "stauts", "unknown query parameter"),
        ("status=new&limit=2&x=1", "x", "unknown query parameter"),
        ("status=new&status=won", "status", "given more than once"),
    ],
)
async def test_unknown_or_repeated_query_parameters_are_400(
    client: httpx.AsyncClient, org: Org, query: str, field: str, message: str
) -> None:
    """Like unknown body fields: a misspelt filter must not silently answer everything."""
    r = await client.get(f"/v1/leads?{query}", headers=org.headers)
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert {"field": field, "message": message} in body["details"]
    # Without a key, the key is what is missing.
    _assert_error(await client.get(f"/v1/leads?{query}"), 401, "UNAUTHORIZED")


async def test_known_query_parameters_pass(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.get("/v1/leads?status=new&email=a@example.com&limit=5", headers=org.headers)
    assert r.status_code == 200, r.text
    # Public links may carry whatever a mail client appends.
    assert (await client.get("/health?utm_source=mail")).status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("GET", "/v1/leads/lead%00x", "path"),
        ("GET", "/v1/leads?email=a%00b", "query"),
        ("GET", "/meet/tok%00en", "path"),
        ("PATCH", "/v1/team/user_a%00", "path"),
    ],
)
async def test_nul_in_path_or_query_is_400(
    client: httpx.AsyncClient, org: Org, method: str, url: str, field: str
) -> None:
    """PostgreSQL cannot hold NUL in text: an id or filter with one is a 400, never a 500."""
    r = await client.request(method, url, headers=org.headers, json={} if method != "GET" else None)
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"email": "a@example.com", "full_name": "a\\\\u0000b"}', None),  # an escaped backslash
        (rb'{"email": "a@example.com", "full_name": "a\u0000b"}', "full_name"),
        (rb'{"email": "a@example.com", "metadata": {"k": [1, {"z": "\u0000"}]}}', "metadata.k.1.z"),
        (rb'{"email": "a@example.com", "metadata": {"k\u0000": 1}}', "metadata"),
        (rb'{"email": "a@example.com", "full_name": "x\ud800y"}', "full_name"),
        (rb'{"email": "a@example.com", "metadata": {"k": "\udfff"}}', "metadata.k"),
    ],
)
async def test_unstorable_text_in_a_body_is_400(
    client: httpx.AsyncClient, org: Org, database: Database, content: bytes, field: str | None
) -> None:
    """NUL and lone surrogates, anywhere in the body (free JSON too): 400, never a 500."""
    r = await client.post(
        "/v1/leads", headers={**org.headers, "Content-Type": "application/json"}, content=content
    )
    if field is None:
        assert r.status_code == 201, r.text
        assert r.json()["data"]["full_name"] == "a\\u0000b"
        return
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Lead)) == 0


@pytest.mark.parametrize(
    "value", [0, 1767225600, "1767225600", "2030-01-20", "20300120T150000Z", "tomorrow", None]
)
async def test_timestamps_are_rfc3339_only(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, value: Any
) -> None:
    """Not a Unix time, not a bare date (SPEC §1: RFC 3339)."""
    member = await create_member(session, org)
    r = await client.post(
        f"/v1/team/{member.id}/busy-blocks",
        headers=org.headers,
        json={"start": value, "end": "2030-01-20T16:00:00Z"},
    )
    body = _assert_error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "start"
    if value is not None:
        r = await client.get(
            "/v1/calls", headers=org.headers, params={"scheduled_after": str(value)}
        )
        _assert_error(r, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/v1/products", {"name": "P", "price": 100, "is_active": 0}, "is_active"),
        ("/v1/products", {"name": "P", "price": 100, "is_active": "false"}, "is_active"),
        ("/v1/products", {"name": "P", "price": True}, "price"),
        ("/v1/products", {"name": "P", "price": "100"}, "price"),
        ("/v1/products", {"name": "P", "price": 100.0}, "price"),
        ("/v1/products", {"name": 5, "price": 100}, "name"),
        ("/v1/leads", {"email": "a@example.com", "metadata": "{}"}, "metadata"),
    ],
)
async def test_json_types_are_strict(
    client: httpx.AsyncClient, org: Org, url: str, body: dict[str, Any], field: str
) -> None:
    """The body's JSON types are the documented ones: ``0`` is not ``false``, ``true`` is not
    a number of cents."""
    r = await client.post(url, headers=org.headers, json=body)
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert field in [d["field"] for d in err["details"]]


# --- 500 -----------------------------------------------------------------------------------------
SECRET = "s3cr3t-internal-detail /srv/closerdesk/leads/service.py"


async def test_unhandled_error_is_500_without_traceback(
    client: httpx.AsyncClient, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(leads_service, "get_lead", explode)
    r = await client.get("/v1/leads/lead_x", headers=org.headers)
    body = _assert_error(r, 500, "INTERNAL_ERROR")
    assert "details" not in body
    for leak in (SECRET, "Traceback", "RuntimeError", "File ", "line "):
        assert leak not in r.text


@pytest.mark.parametrize(
    "orig",
    [
        sqlite3.OperationalError("database is locked"),
        type("DeadlockDetectedError", (Exception,), {"sqlstate": "40P01"})("deadlock detected"),
    ],
)
async def test_a_busy_database_is_503_with_retry_after(
    client: httpx.AsyncClient, org: Org, monkeypatch: pytest.MonkeyPatch, orig: Exception
) -> None:
    """Lock contention a retry can clear is a declared 503, not an opaque 500."""
    from sqlalchemy.exc import OperationalError

    async def busy(*_args: Any, **_kwargs: Any) -> Any:
        raise OperationalError("SELECT 1", {}, orig)

    monkeypatch.setattr(leads_service, "get_lead", busy)
    r = await client.get("/v1/leads/lead_x", headers=org.headers)
    _assert_error(r, 503, "SERVICE_UNAVAILABLE")
    assert r.headers["retry-after"] == "1"
    assert "SELECT" not in r.text


async def test_operations_with_a_body_declare_413_and_415(app: FastAPI) -> None:
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            declared = operation["responses"]
            has_body = "requestBody" in operation
            assert ("413" in declared) == has_body, (method, path)
            assert ("415" in declared) == has_body, (method, path)


async def test_unhandled_error_in_a_write_rolls_back(
    client: httpx.AsyncClient, org: Org, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise ZeroDivisionError(SECRET)

    monkeypatch.setattr(leads_service, "record_event", explode)
    r = await client.post("/v1/leads", headers=org.headers, json={"email": "gone@example.com"})
    _assert_error(r, 500, "INTERNAL_ERROR")
    assert SECRET not in r.text
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Lead)) == 0


async def test_500_from_an_added_route_of_a_fresh_app(
    settings: Settings, database: Database
) -> None:
    app = create_app(settings, database=database)

    @app.get("/boom")
    async def boom() -> None:
        raise KeyError(SECRET)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get("/boom")
    _assert_error(r, 500, "INTERNAL_ERROR")
    assert SECRET not in r.text
    assert "Traceback" not in r.text


# --- request ids ---------------------------------------------------------------------------------
async def test_every_response_carries_its_request_id(
    client: httpx.AsyncClient, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("x")

    json_headers = {**org.headers, "Content-Type": "application/json"}
    responses = [
        await client.get("/health"),
        await client.get("/openapi.json"),
        await client.get("/v1/leads", headers=org.headers),
        await client.post("/v1/leads", headers=org.headers, json={"email": "id@example.com"}),
        await client.post("/v1/leads", headers=org.headers, json={"email": "nope"}),
        await client.get("/v1/leads"),
        await client.post("/v1/team", headers=org.auth("read"), json={}),
        await client.get("/v1/leads/lead_nope", headers=org.headers),
        await client.get("/v1/unknown"),
        await client.delete("/v1/leads", headers=org.headers),
        await client.post("/v1/leads", headers=json_headers, content=b"x" * (MIB + 1)),
        await client.post(
            "/v1/leads", headers={**org.headers, "Content-Type": "text/plain"}, content=b"{}"
        ),
        await client.get("/meet/unknown-token"),
    ]
    monkeypatch.setattr(leads_service, "get_lead", explode)
    responses.append(await client.get("/v1/leads/lead_x", headers=org.headers))
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 201, 400, 401, 403, 404, 404, 405, 413, 415, 404, 500]
    ids = [r.headers["X-Request-Id"] for r in responses]
    assert all(REQUEST_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    for r in responses:
        if r.status_code >= 400:
            assert r.json()["requestId"] == r.headers["X-Request-Id"]


async def test_a_client_request_id_is_not_echoed(client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers={"X-Request-Id": "req_forged"})
    assert r.headers["X-Request-Id"] != "req_forged"
    assert REQUEST_ID.match(r.headers["X-Request-Id"])


# --- health --------------------------------------------------------------------------------------
async def test_health_needs_no_key(client: httpx.AsyncClient, database: Database) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True
    assert body["data"]["status"] == "ok"
    assert body["data"]["database"] == database.dialect
    assert body["data"]["version"]


# --- OpenAPI -------------------------------------------------------------------------------------
# The codes each operation must declare beyond the shared 400/401/403/500 (SPEC §3, §4, §6).
SPECIFIC_CODES: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/calls"): {
        "BOOKING_LINK_NOT_FOUND",
        "SLOT_IN_PAST",
        "LEAD_NOT_FOUND",
        "SETTER_NOT_FOUND",
        "PRODUCT_NOT_FOUND",
        "CLOSER_NOT_FOUND",
        "PRODUCT_INACTIVE",
        "CALENDAR_NOT_CONNECTED",
        "CLOSER_CONFLICT",
        "CALENDAR_PROVIDER_ERROR",
    },
    ("GET", "/v1/calls/{call_id}"): {"CALL_NOT_FOUND"},
    ("PATCH", "/v1/calls/{call_id}"): {
        "CALL_NOT_FOUND",
        "PRODUCT_NOT_FOUND",
        "SETTER_NOT_FOUND",
        "PAYMENT_NOT_FOUND",
        "PAYMENT_ALREADY_LINKED",
    },
    ("POST", "/v1/calls/{call_id}/outcome"): {
        "CALL_NOT_FOUND",
        "CALL_CANCELLED",
        "CALL_NOT_STARTED",
    },
    ("POST", "/v1/calls/{call_id}/reassign-closer"): {
        "CALL_NOT_FOUND",
        "CALL_NOT_REASSIGNABLE",
        "CALL_CANCELLED",
        "CALL_IN_PAST",
        "CLOSER_NOT_FOUND",
        "SAME_CLOSER",
        "CALENDAR_NOT_CONNECTED",
        "CLOSER_CONFLICT",
        "CALENDAR_PROVIDER_ERROR",
    },
    ("POST", "/v1/calls/{call_id}/reschedule"): {
        "SLOT_IN_PAST",
        "CALL_NOT_FOUND",
        "CALL_NOT_REASSIGNABLE",
        "CALL_CANCELLED",
        "CALL_IN_PAST",
        "CLOSER_NOT_FOUND",
        "CALENDAR_NOT_CONNECTED",
        "CLOSER_CONFLICT",
        "CALENDAR_PROVIDER_ERROR",
    },
    ("POST", "/v1/calls/{call_id}/cancel"): {"CALL_NOT_FOUND", "CALL_CANCELLED", "CALL_IN_PAST"},
    ("GET", "/v1/calls/{call_id}/history"): {"CALL_NOT_FOUND"},
    ("POST", "/v1/calls/{call_id}/auto-reassign"): {
        "CALL_NOT_FOUND",
        "CALL_NOT_REASSIGNABLE",
        "CALL_CANCELLED",
        "CALL_IN_PAST",
        "NO_HOST_AVAILABLE",
    },
    ("POST", "/v1/calls/{call_id}/absence"): {
        "CALL_NOT_FOUND",
        "CALL_CANCELLED",
        "CALL_NOT_SCHEDULED",
        "CALL_NOT_STARTED",
    },
    ("GET", "/v1/calls/{call_id}/calendar-links"): {"CALL_NOT_FOUND"},
    ("GET", "/v1/calls/{call_id}/ics"): {"CALL_NOT_FOUND"},
    ("POST", "/v1/booking-links"): {"CLOSER_NOT_FOUND", "BOOKING_LINK_SLUG_TAKEN"},
    ("GET", "/v1/booking-links/{link_id}"): {"BOOKING_LINK_NOT_FOUND"},
    ("PATCH", "/v1/booking-links/{link_id}"): {
        "BOOKING_LINK_NOT_FOUND",
        "CLOSER_NOT_FOUND",
        "BOOKING_LINK_SLUG_TAKEN",
    },
    ("GET", "/v1/booking-links/{link_id}/slots"): {"BOOKING_LINK_NOT_FOUND"},
    ("POST", "/v1/leads"): {"LEAD_EMAIL_TAKEN"},
    ("GET", "/v1/leads/{lead_id}"): {"LEAD_NOT_FOUND"},
    ("PATCH", "/v1/leads/{lead_id}"): {"LEAD_NOT_FOUND", "LEAD_EMAIL_TAKEN"},
    ("POST", "/v1/team"): {"MEMBER_ID_TAKEN", "MEMBER_EMAIL_TAKEN"},
    ("GET", "/v1/team/{member_id}"): {"MEMBER_NOT_FOUND"},
    ("PATCH", "/v1/team/{member_id}"): {
        "MEMBER_NOT_FOUND",
        "MEMBER_EMAIL_TAKEN",
        "MEMBER_HAS_UPCOMING_CALLS",
    },
    ("PUT", "/v1/team/{member_id}/calendar"): {"MEMBER_NOT_FOUND"},
    ("DELETE", "/v1/team/{member_id}/calendar"): {"MEMBER_NOT_FOUND", "CALENDAR_NOT_FOUND"},
    ("GET", "/v1/team/{member_id}/busy"): {"MEMBER_NOT_FOUND"},
    ("GET", "/v1/team/{member_id}/busy-blocks"): {"MEMBER_NOT_FOUND"},
    ("POST", "/v1/team/{member_id}/busy-blocks"): {"MEMBER_NOT_FOUND"},
    ("DELETE", "/v1/team/{member_id}/busy-blocks/{block_id}"): {
        "MEMBER_NOT_FOUND",
        "BUSY_BLOCK_NOT_FOUND",
    },
    ("GET", "/v1/products/{product_id}"): {"PRODUCT_NOT_FOUND"},
    ("PATCH", "/v1/products/{product_id}"): {"PRODUCT_NOT_FOUND"},
    ("POST", "/v1/payments"): {
        "LEAD_NOT_FOUND",
        "CALL_NOT_FOUND",
        "PRODUCT_NOT_FOUND",
        "CALL_LEAD_MISMATCH",
    },
    ("GET", "/v1/payments/{payment_id}"): {"PAYMENT_NOT_FOUND"},
    ("POST", "/v1/webhooks"): {"WEBHOOK_TARGET_NOT_ALLOWED"},
    ("GET", "/v1/webhooks/{webhook_id}"): {"WEBHOOK_NOT_FOUND"},
    ("PATCH", "/v1/webhooks/{webhook_id}"): {"WEBHOOK_NOT_FOUND", "WEBHOOK_TARGET_NOT_ALLOWED"},
    ("DELETE", "/v1/webhooks/{webhook_id}"): {"WEBHOOK_NOT_FOUND"},
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"): {"WEBHOOK_NOT_FOUND"},
    ("POST", "/v1/webhooks/{webhook_id}/test"): {"WEBHOOK_NOT_FOUND"},
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): {"WEBHOOK_NOT_FOUND"},
    ("POST", "/v1/webhooks/deliveries/{delivery_id}/redeliver"): {"DELIVERY_NOT_FOUND"},
    ("POST", "/v1/webhooks/{webhook_id}/recover"): {"WEBHOOK_NOT_FOUND"},
    ("GET", "/meet/{token}"): {"LINK_NOT_FOUND", "LINK_REVOKED"},
    ("GET", "/ics/{token}"): {"LINK_NOT_FOUND"},
}


def _declared_codes(operation: dict[str, Any]) -> dict[str, set[str]]:
    """status → the error codes its description lists (``Error: `A`, `B```)."""
    out: dict[str, set[str]] = {}
    for status, response in operation["responses"].items():
        if status.startswith(("4", "5")):
            out[status] = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", response.get("description", "")))
    return out


def _error_schema_ref(response: dict[str, Any]) -> str:
    return str(response["content"]["application/json"]["schema"]["$ref"])


async def test_openapi_is_3_1_and_every_error_is_declared(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert "ErrorEnvelope" in doc["components"]["schemas"]
    operations = {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }
    served = {(m, p) for m, p in _api_routes(app) if not p.startswith(("/docs", "/redoc"))}
    # HEAD on the public links is GET without the body (docs/links.md): the GET documents it.
    heads = {(m, p) for m, p in served if m == "HEAD" and ("GET", p) in served}
    assert served - heads - {("GET", "/openapi.json")} <= set(operations)

    for (method, path), op in operations.items():
        where = f"{method} {path}"
        declared = _declared_codes(op)
        # The API answers 400 for validation: FastAPI's default 422 would be a lie. The only
        # 422 is a reused Idempotency-Key (docs/idempotency.md).
        assert declared.get("422", {"IDEMPOTENCY_KEY_REUSED"}) == {"IDEMPOTENCY_KEY_REUSED"}, where
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                assert _error_schema_ref(response).endswith("/ErrorEnvelope"), where
                assert declared[status], f"{where} {status} names no code"
                assert all(CODE.match(c) for c in declared[status])
        assert "500" in declared, where
        assert "INTERNAL_ERROR" in declared["500"], where
        if path.startswith("/v1/"):
            assert "VALIDATION_ERROR" in declared.get("400", set()), where
            assert declared.get("401") == {"UNAUTHORIZED"}, where
            assert declared.get("403") == {"FORBIDDEN"}, where
            assert op.get("security"), f"{where} declares no API key security"
        if "{" in path:
            assert "404" in declared, f"{where} takes an id but declares no 404"
        all_codes = set().union(*declared.values())
        missing = SPECIFIC_CODES.get((method, path), set()) - all_codes
        assert not missing, f"{where} does not declare {sorted(missing)}"
        for code in SPECIFIC_CODES.get((method, path), set()):
            status = next(s for s, codes in declared.items() if code in codes)
            assert status[0] in "45", where
    assert set(SPECIFIC_CODES) <= set(operations), "SPECIFIC_CODES names a route that is gone"


async def test_openapi_statuses_match_the_error_classes(client: httpx.AsyncClient) -> None:
    """Each declared code sits under the status its error class answers with."""
    from closerdesk import errors

    status_of: dict[str, int] = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.ApiError):
            status_of[value.code] = value.status
    doc = (await client.get("/openapi.json")).json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, codes in _declared_codes(op).items():
                for code in codes:
                    if code in status_of:
                        assert status_of[code] == int(status), f"{method} {path} {code}"


# --- /meet/{token} -------------------------------------------------------------------------------
async def test_meet_link_redirects_then_is_gone_once_revoked(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    assert call.conferencing_link is not None
    path = call.conferencing_link.replace("http://closerdesk.test", "")
    r = await client.get(path)  # no API key: this is the link the lead clicks
    assert r.status_code == 302
    assert r.headers["Location"].startswith("https://meet.example.test/")
    assert REQUEST_ID.match(r.headers["X-Request-Id"])

    cancelled = await client.post(f"/v1/calls/{call.id}/cancel", headers=org.headers, json={})
    assert cancelled.status_code == 200, cancelled.text
    _assert_error(await client.get(path), 410, "LINK_REVOKED")


async def test_unknown_meet_token_is_404(client: httpx.AsyncClient) -> None:
    _assert_error(await client.get("/meet/no-such-token"), 404, "LINK_NOT_FOUND")
