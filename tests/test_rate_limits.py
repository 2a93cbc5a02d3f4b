"""Rate limits (docs/rate-limits.md): per API key, per organization, per client address for
failed authentication and for requests without a key; headers on every response; 429 envelope
with ``Retry-After``; in memory and in Redis (127.0.0.1:6379, skipped only when unreachable)."""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from closerdesk.app import create_app
from closerdesk.config import Settings
from closerdesk.db import Database
from tests.factories import Org

REDIS_URL = "redis://127.0.0.1:6379/0"
HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str | None:
    """Each test runs on the in-process memory storage and on Redis."""
    if request.param == "memory":
        return None
    if not _redis_reachable():
        pytest.skip("no Redis at 127.0.0.1:6379")
    return REDIS_URL


def _address() -> str:
    """A client address of its own per test: Redis counters outlive a test and are shared with
    any other run on this machine."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


MakeApp = Callable[..., FastAPI]
MakeClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
def make_app(settings: Settings, database: Database, redis_url: str | None) -> MakeApp:
    def make(**limits: str) -> FastAPI:
        values: dict[str, Any] = {
            "rate_limit_per_key": "600/minute",
            "rate_limit_per_org": "3000/minute",
            "rate_limit_auth_failures": "60/minute",
            "rate_limit_per_address": "600/minute",
            "redis_url": redis_url,
        }
        values.update(limits)
        return create_app(settings.model_copy(update=values), database=database)

    return make


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[httpx.AsyncClient] = []

    def make(app: FastAPI, address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=app, raise_app_exceptions=False, client=(address, 40000)
        )
        client = httpx.AsyncClient(transport=transport, base_url="http://test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def _limits(response: httpx.Response) -> tuple[int, int, int]:
    return tuple(int(response.headers[name]) for name in HEADERS)  # type: ignore[return-value]


def _assert_refused(response: httpx.Response, *, window: int = 60) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "RATE_LIMITED"
    assert body["requestId"] == response.headers["X-Request-Id"]
    assert 1 <= int(response.headers["Retry-After"]) <= window
    _, remaining, reset = _limits(response)
    assert remaining == 0
    assert 0 <= reset <= window


def _random_key() -> dict[str, str]:
    return {"Authorization": f"Bearer cdk_{secrets.token_urlsafe(32)}"}


async def test_per_key_limit(make_app: MakeApp, make_client: MakeClient, org: Org) -> None:
    client = make_client(make_app(rate_limit_per_key="3/minute"), _address())
    seen = []
    for _ in range(3):
        response = await client.get("/v1/calls", headers=org.headers)
        assert response.status_code == 200, response.text
        assert "Retry-After" not in response.headers
        seen.append(_limits(response))
    assert [(limit, remaining) for limit, remaining, _ in seen] == [(3, 2), (3, 1), (3, 0)]
    assert all(0 <= reset <= 60 for _, _, reset in seen)

    _assert_refused(await client.get("/v1/calls", headers=org.headers))
    # Refused before the endpoint: a write is refused the same way, and nothing is created.
    refused = await client.post(
        "/v1/leads", headers=org.headers, json={"email": "a@example.com", "name": "A"}
    )
    _assert_refused(refused)
    # Another key of the same organization has its own budget.
    other_key = await client.get("/v1/leads", headers=org.auth("read"))
    assert other_key.status_code == 200
    assert other_key.json()["data"] == []


async def test_per_org_limit(
    make_app: MakeApp, make_client: MakeClient, org: Org, other_org: Org
) -> None:
    client = make_client(
        make_app(rate_limit_per_key="100/minute", rate_limit_per_org="4/minute"), _address()
    )
    for scope in ("admin", "write", "read", "admin"):
        response = await client.get("/v1/calls", headers=org.auth(scope))
        assert response.status_code == 200
    # The organization's budget is the tighter one: it is the one reported.
    assert _limits(response)[:2] == (4, 0)
    _assert_refused(await client.get("/v1/calls", headers=org.auth("write")))
    # Another organization is not affected.
    assert (await client.get("/v1/calls", headers=other_org.headers)).status_code == 200


async def test_failed_authentication_is_limited_per_address(
    make_app: MakeApp, make_client: MakeClient, org: Org
) -> None:
    app = make_app(rate_limit_auth_failures="5/minute")
    attacker = make_client(app, _address())
    statuses = []
    for attempt in range(8):
        headers = _random_key() if attempt != 1 else {}  # no header at all counts too
        response = await attacker.get("/v1/calls", headers=headers)
        statuses.append(response.status_code)
        assert response.headers["RateLimit-Limit"] == "5"
    assert statuses == [401] * 5 + [429] * 3
    _assert_refused(response)
    # Past the budget the key is not even looked at: a valid one is refused from that address…
    _assert_refused(await attacker.get("/v1/calls", headers=org.headers))
    # … and works from any other.
    elsewhere = make_client(app, _address())
    assert (await elsewhere.get("/v1/calls", headers=org.headers)).status_code == 200


async def test_burst_of_random_keys_answers_429_past_the_default(
    make_app: MakeApp, make_client: MakeClient
) -> None:
    """The outside check: 2,000 requests with random keys all answered 401. With the default
    ``60/minute`` of failed authentications, the 61st and later answer 429."""
    client = make_client(make_app(), _address())
    responses = await asyncio.gather(
        *(client.get("/v1/leads", headers=_random_key()) for _ in range(100))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [401] * 60 + [429] * 40


async def test_requests_without_a_key_are_limited_per_address(
    make_app: MakeApp, make_client: MakeClient, org: Org
) -> None:
    app = make_app(rate_limit_per_address="3/minute")
    address = _address()
    client = make_client(app, address)
    first = await client.get("/health")
    assert first.status_code == 200
    assert _limits(first)[:2] == (3, 2)
    link = await client.get("/meet/unknown-token")  # a lead-facing link, counted the same way
    assert link.status_code == 404
    assert _limits(link)[:2] == (3, 1)
    assert (await client.get("/health")).status_code == 200
    _assert_refused(await client.get("/health"))
    _assert_refused(await client.get("/meet/unknown-token"))
    # Routes that are counted but not refused (documents, unknown routes) answer as usual, and a
    # Retry-After only ever comes with a 429.
    unknown = await client.get("/no-such-page")
    assert unknown.status_code == 404
    assert unknown.headers["RateLimit-Remaining"] == "0"
    assert "Retry-After" not in unknown.headers
    # Requests with a key are counted per key, not against the address.
    keyed = await client.get("/v1/calls", headers=org.headers)
    assert keyed.status_code == 200
    assert keyed.headers["RateLimit-Limit"] == "600"
    # Another address has its own budget.
    assert (await make_client(app, _address()).get("/health")).status_code == 200


async def test_every_response_carries_the_headers(
    make_app: MakeApp, make_client: MakeClient, org: Org
) -> None:
    client = make_client(make_app(), _address())
    answers = [
        await client.get("/v1/calls", headers=org.headers),  # 200, per key
        await client.get("/v1/calls/call_nope", headers=org.headers),  # 404 of the endpoint
        await client.get("/v1/no-such-route", headers=org.headers),  # 404 without a route
        await client.put("/v1/calls", headers=org.headers),  # 405
        await client.post(
            "/v1/leads", headers={**org.headers, "Content-Type": "text/plain"}, content="x"
        ),  # 415, refused before the app
        await client.get("/v1/calls", headers=org.headers, params={"limit": "0"}),  # 400
        await client.get("/v1/calls"),  # 401
        await client.get("/v1/calls", headers=org.auth("read"), params={"x": "1"}),  # 400
        await client.get("/health"),
        await client.get("/openapi.json"),
    ]
    assert [a.status_code for a in answers] == [200, 404, 404, 405, 415, 400, 401, 400, 200, 200]
    for answer in answers:
        limit, remaining, reset = _limits(answer)
        assert limit >= remaining >= 0
        assert 0 <= reset <= 60
        assert "Retry-After" not in answer.headers


async def test_the_window_resets(make_app: MakeApp, make_client: MakeClient, org: Org) -> None:
    client = make_client(make_app(rate_limit_per_key="2/second"), _address())
    while True:  # start at the beginning of a window, so that two requests fit in it
        response = await client.get("/v1/calls", headers=org.headers)
        if response.status_code == 429:
            break
    refused = response
    _assert_refused(refused, window=1)
    await asyncio.sleep(int(refused.headers["Retry-After"]) + 0.05)
    again = await client.get("/v1/calls", headers=org.headers)
    assert again.status_code == 200
    assert _limits(again)[:2] == (2, 1)


async def test_processes_share_limits_only_through_redis(
    make_app: MakeApp, make_client: MakeClient, org: Org, redis_url: str | None
) -> None:
    """Two apps stand for two processes: with Redis they spend one budget; in memory each
    process counts its own."""
    address = _address()
    one = make_client(make_app(rate_limit_per_key="3/minute"), address)
    two = make_client(make_app(rate_limit_per_key="3/minute"), address)
    for client in (one, two, one):
        assert (await client.get("/v1/calls", headers=org.headers)).status_code == 200
    last = await two.get("/v1/calls", headers=org.headers)
    if redis_url is None:
        assert last.status_code == 200
        assert _limits(last)[:2] == (3, 1)
    else:
        _assert_refused(last)


async def test_unreachable_redis_lets_requests_through(
    settings: Settings, database: Database, make_client: MakeClient, org: Org
) -> None:
    """Fail open: the API stays up when Redis does not answer (a warning is logged)."""
    app = create_app(
        settings.model_copy(
            update={"redis_url": "redis://127.0.0.1:1/0", "rate_limit_per_key": "5/minute"}
        ),
        database=database,
    )
    response = await make_client(app, _address()).get("/v1/calls", headers=org.headers)
    assert response.status_code == 200
    assert _limits(response)[:2] == (5, 5)


def test_openapi_declares_429_and_the_headers(settings: Settings) -> None:
    document = create_app(settings).openapi()
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) > 30
    for path, method, operation in operations:
        responses = operation["responses"]
        assert "429" in responses, (method, path)
        assert "RATE_LIMITED" in responses["429"]["description"]
        assert responses["429"]["headers"]["Retry-After"]["required"] is True
        for status, response in responses.items():
            for name in HEADERS:
                header = response["headers"][name]
                assert header["required"] is (not status.startswith("5")), (path, status, name)


@pytest.mark.parametrize("text", ["lots", "0/minute/x", "", "600 per fortnight"])
def test_a_limit_that_does_not_parse_is_refused_at_startup(text: str) -> None:
    with pytest.raises(ValidationError, match="rate limit"):
        Settings(rate_limit_per_key=text)
