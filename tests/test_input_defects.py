"""Inputs that answered 500 (or were wrongly accepted) when the service was tried from the
outside: each is a 400 now, on SQLite and PostgreSQL alike (docs/architecture.md, "Request
bodies" and "Pagination")."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.app import create_app
from closerdesk.config import DEFAULT_SECRET_KEY, Settings
from closerdesk.db import Database
from closerdesk.errors import ValidationFailed
from closerdesk.leads.schemas import LeadCreate
from closerdesk.models import Lead
from tests.factories import Org, create_call, create_lead, create_member

LIST_PATHS = [
    "/v1/leads",
    "/v1/products",
    "/v1/webhooks",
    "/v1/team",
    "/v1/payments",
    "/v1/booking-links",
    "/v1/calls",
]


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Raw JSON (or not JSON at all) a forger can wrap in base64url.
FORGED = {
    "null": b"[null]",
    "null-null": b"[null,null]",
    "surrogate": b'["\\udc80"]',
    "surrogate-second": b'[{"t":"2026-01-01T00:00:00+00:00"},"\\udc80"]',
    "nul": b'["\\u0000"]',
    "nul-second": b'[{"t":"2026-01-01T00:00:00+00:00"},"a\\u0000"]',
    "time-underflows": b'[{"t":"0001-01-01T00:00:00+14:00"},"call_x"]',
    "time-overflows": b'[{"t":"9999-12-31T23:59:59-14:00"},"call_x"]',
    "time-naive": b'[{"t":"2026-01-01T00:00:00"},"call_x"]',
    "time-extra-key": b'[{"t":"2026-01-01T00:00:00+00:00","x":1},"call_x"]',
    "nan": b"[NaN]",
    "infinity": b'[Infinity,"x"]',
    "huge": b"[1e400]",
    "number": b"[1]",
    "not-utf8": b'["\xff"]',
    "deep": b"[" * 300 + b"]" * 300,
}


@pytest.mark.parametrize("path", LIST_PATHS)
@pytest.mark.parametrize("raw", list(FORGED.values()), ids=list(FORGED))
async def test_a_forged_cursor_is_a_400_on_every_list(
    client: httpx.AsyncClient, org: Org, path: str, raw: bytes
) -> None:
    r = await client.get(path, headers=org.headers, params={"cursor": _cursor(raw)})
    body = _validation_error(r)
    assert body["details"][0]["field"] == "cursor"


@pytest.mark.parametrize("cursor", ["é", "W251bGxd\u2028", "%%%"])
async def test_a_cursor_that_is_not_base64url_text_is_a_400(
    client: httpx.AsyncClient, org: Org, cursor: str
) -> None:
    _validation_error(await client.get("/v1/leads", headers=org.headers, params={"cursor": cursor}))


async def test_a_forged_cursor_is_a_400_on_deliveries(client: httpx.AsyncClient, org: Org) -> None:
    created = await client.post(
        "/v1/webhooks",
        headers=org.headers,
        json={"target_url": "https://1.1.1.1/hook", "event_types": ["call.booked"]},
    )
    assert created.status_code == 201, created.text
    hook = created.json()["data"]["id"]
    for raw in FORGED.values():
        r = await client.get(
            f"/v1/webhooks/{hook}/deliveries", headers=org.headers, params={"cursor": _cursor(raw)}
        )
        _validation_error(r)


async def test_real_cursors_still_page(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org, role="closer")
    for _ in range(3):
        lead = await create_lead(session, org)
        await create_call(session, org, lead=lead, closer=closer)
    await session.commit()
    seen: list[str] = []
    cursor = None
    for path in ("/v1/calls", "/v1/leads"):
        seen, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            r = await client.get(path, headers=org.headers, params=params)
            assert r.status_code == 200, r.text
            seen += [item["id"] for item in r.json()["data"]]
            cursor = r.json()["pagination"]["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 3


# --- free-form JSON ------------------------------------------------------------------------------
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


@pytest.mark.parametrize("number", NON_FINITE)
async def test_non_finite_numbers_in_lead_metadata_are_a_400(
    client: httpx.AsyncClient, org: Org, database: Database, number: str
) -> None:
    raw = '{"email": "nan@example.com", "metadata": {"score": [1, {"x": NUMBER}]}}'
    raw = raw.replace("NUMBER", number)
    r = await _post_raw(client, org, "/v1/leads", raw)
    body = _validation_error(r)
    assert body["details"][0]["field"] == "metadata.score.1.x"
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Lead)) == 0  # nothing stored


@pytest.mark.parametrize("number", NON_FINITE)
async def test_non_finite_numbers_in_call_json_are_a_400(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, number: str
) -> None:
    closer = await create_member(session, org, role="closer")
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    await session.commit()
    form = (
        f'{{"lead_id": "{lead.id}", "call_kind": "intent", '
        f'"form_data": [{{"field_id": "budget", "value": {number}}}]}}'
    )
    _validation_error(await _post_raw(client, org, "/v1/calls", form))
    transcript = f'{{"transcript_data": {{"duration_seconds": {number}, "segments": []}}}}'
    r = await client.patch(
        f"/v1/calls/{call.id}",
        headers={**org.headers, "Content-Type": "application/json"},
        content=transcript,
    )
    _validation_error(r)
    patch = f'{{"metadata": {{"x": {number}}}}}'
    r = await client.patch(
        f"/v1/leads/{lead.id}",
        headers={**org.headers, "Content-Type": "application/json"},
        content=patch,
    )
    _validation_error(r)


async def test_finite_numbers_in_metadata_are_kept(client: httpx.AsyncClient, org: Org) -> None:
    raw = '{"email": "ok@example.com", "metadata": {"score": 1.5e300, "n": -0.0}}'
    r = await _post_raw(client, org, "/v1/leads", raw)
    assert r.status_code == 201, r.text
    assert r.json()["data"]["metadata"] == {"score": 1.5e300, "n": -0.0}


# --- bodies --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["array", "object"])
async def test_a_json_body_nested_10000_deep_is_a_validation_error(
    client: httpx.AsyncClient, org: Org, shape: str
) -> None:
    raw = "[" * 10_000 + "]" * 10_000 if shape == "array" else '{"a":' * 10_000 + "1" + "}" * 10_000
    body = _validation_error(await _post_raw(client, org, "/v1/leads", raw))
    assert body["details"][0]["field"] == "body"


@pytest.mark.parametrize(
    "zone",
    ["localtime", "posix/America/New_York", "right/UTC", "Factory", "posixrules", "Mars/Olympus"],
)
async def test_only_iana_time_zones_are_accepted(
    client: httpx.AsyncClient, org: Org, zone: str
) -> None:
    body = {"call_kind": "intent", "lead": {"email": "tz@example.com", "time_zone": zone}}
    r = await client.post("/v1/calls", headers=org.headers, json=body)
    error = _validation_error(r)
    assert "time_zone" in error["details"][0]["field"]


@pytest.mark.parametrize("zone", ["America/New_York", "UTC", "Asia/Kolkata", "US/Eastern"])
async def test_iana_time_zones_are_still_accepted(
    client: httpx.AsyncClient, org: Org, zone: str
) -> None:
    body = {"call_kind": "intent", "lead": {"email": "tz@example.com", "time_zone": zone}}
    r = await client.post("/v1/calls", headers=org.headers, json=body)
    assert r.status_code == 201, r.text


async def test_an_email_local_part_over_64_characters_is_refused(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    too_long = "a" * 65 + "@example.com"
    body = _validation_error(
        await client.post("/v1/leads", headers=org.headers, json={"email": too_long})
    )
    assert body["details"][0]["field"] == "email"
    inline = {"call_kind": "intent", "lead": {"email": too_long}}
    refused = [await client.post("/v1/calls", headers=org.headers, json=inline)]
    lead = await create_lead(session, org)
    await session.commit()
    refused.append(
        await client.patch(f"/v1/leads/{lead.id}", headers=org.headers, json={"email": too_long})
    )
    member = {"id": "user_long", "name": "Long", "email": too_long, "role": "closer"}
    refused.append(await client.post("/v1/team", headers=org.headers, json=member))
    for r in refused:
        assert _validation_error(r)["details"][0]["field"] == "email"
    fits = "a" * 64 + "@example.com"
    r = await client.post("/v1/leads", headers=org.headers, json={"email": fits})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("port", [0, 22, 25, 79, 81, 442, 444, 1023])
async def test_webhook_targets_on_non_web_ports_are_refused(
    client: httpx.AsyncClient, org: Org, port: int
) -> None:
    body = {"target_url": f"https://1.1.1.1:{port}/hook", "event_types": ["call.booked"]}
    r = await client.post("/v1/webhooks", headers=org.headers, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"
    assert (f"port {port}") in r.json()["error"]


@pytest.mark.parametrize("port", [443, 1024, 8443, 65535])
async def test_webhook_targets_on_web_and_unprivileged_ports_are_accepted(
    client: httpx.AsyncClient, org: Org, port: int
) -> None:
    body = {"target_url": f"https://1.1.1.1:{port}/hook", "event_types": ["call.booked"]}
    r = await client.post("/v1/webhooks", headers=org.headers, json=body)
    assert r.status_code == 201, r.text
    hook = r.json()["data"]["id"]
    r = await client.patch(
        f"/v1/webhooks/{hook}", headers=org.headers, json={"target_url": "https://1.1.1.1:22/h"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "WEBHOOK_TARGET_NOT_ALLOWED"


# --- a 500 is a complete answer ------------------------------------------------------------------
async def test_a_500_is_a_complete_response_and_the_connection_stays_usable(
    app: FastAPI,
) -> None:
    """Before: Starlette's error middleware sent the 500 and raised the exception again, so the
    server dropped the keep-alive connection without ``Connection: close``."""

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/boom",
        "raw_path": b"/boom",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
        "state": {},
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)  # does not raise: the server keeps the connection
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 500
    headers = dict(sent[0]["headers"])
    assert int(headers[b"content-length"]) == len(sent[1]["body"])
    body = json.loads(sent[1]["body"])
    assert body["code"] == "INTERNAL_ERROR"
    assert body["requestId"] == headers[b"x-request-id"].decode()
    assert not sent[1].get("more_body", False)


async def test_a_500_over_http_keeps_the_connection(app: FastAPI) -> None:
    """A real keep-alive connection (uvicorn): the request after a 500 goes through on the same
    connection, and the 500 does not ask to close it."""
    import asyncio
    import socket

    import uvicorn

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to await
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for path in ("/boom", "/health"):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            await writer.drain()
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode().lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            await reader.readexactly(length)
            answers.append(head)
        writer.close()
        assert answers[0].startswith("http/1.1 500")
        assert "connection: close" not in answers[0]
        assert answers[1].startswith("http/1.1 200")
    finally:
        server.should_exit = True
        await task


# --- production secrets --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "secret",
    [DEFAULT_SECRET_KEY, "x", "s" * 64, "0123456789abcdef" * 2, "correct horse battery staple"],
)
def test_production_refuses_a_weak_secret_key(database_url: str, secret: str) -> None:
    settings = _production(database_url, secret)
    with pytest.raises(RuntimeError, match="CLOSERDESK_SECRET_KEY"):
        settings.check_production_ready()
    with pytest.raises(RuntimeError, match="CLOSERDESK_SECRET_KEY"):
        create_app(settings)


@pytest.mark.parametrize(
    "secret",
    [
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # openssl rand -hex 32
        "Yq3vX0b2m1K8tZr4wP9sN6cL7hJ5gF2dA0eU3iO8yT1",  # secrets.token_urlsafe(32)
    ],
)
def test_production_accepts_a_random_32_byte_secret_key(database_url: str, secret: str) -> None:
    _production(database_url, secret).check_production_ready()


def _production(database_url: str, secret: str) -> Settings:
    from cryptography.fernet import Fernet
    from pydantic import SecretStr

    return Settings(
        database_url=database_url,
        env="production",
        secret_key=secret,
        encryption_keys=SecretStr(Fernet.generate_key().decode()),
    )


# --- helpers -------------------------------------------------------------------------------------
async def _post_raw(client: httpx.AsyncClient, org: Org, path: str, raw: str) -> httpx.Response:
    return await client.post(
        path, headers={**org.headers, "Content-Type": "application/json"}, content=raw
    )


def _validation_error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body: dict[str, Any] = r.json()
    assert body["success"] is False
    assert body["code"] == "VALIDATION_ERROR", body
    assert body["details"], body
    assert r.headers["X-Request-Id"] == body["requestId"]
    return body


@pytest.mark.parametrize(("port", "allowed"), [(0, False), (9, True), (22, True)])
async def test_private_targets_allow_any_port_but_0(
    database: Database, settings: Settings, org: Org, port: int, allowed: bool
) -> None:
    """Local development (private targets allowed) may use a receiver on any port but 0."""
    app = create_app(
        settings.model_copy(update={"webhook_allow_private_targets": True}), database=database
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        body = {"target_url": f"http://127.0.0.1:{port}/hook", "event_types": ["call.booked"]}
        r = await client.post("/v1/webhooks", headers=org.headers, json=body)
    assert r.status_code == (201 if allowed else 400), r.text


@pytest.mark.parametrize("shape", ["array", "object"])
def test_the_storable_text_check_walks_any_depth_without_recursing(shape: str) -> None:
    """The request-body check walks a body as deep as any JSON parser hands over (here 5,000
    levels; CPython's parser stops near 1,000) with its own stack: a recursive walk answered
    500 with a ``RecursionError`` when the server's stack was already deep."""
    body: Any = "\x00"
    for _ in range(5_000):
        body = [body] if shape == "array" else {"a": body}
    with pytest.raises(ValidationFailed) as refused:
        LeadCreate.model_validate({"email": "deep@example.com", "metadata": {"a": body}})
    assert refused.value.details[0]["field"].startswith("metadata.a.")
