"""``calendars/http.py``: the rules every cloud calendar request follows (docs/calendars.md,
failures), against a local server: RFC 9110 ``Retry-After`` (delta-seconds and HTTP-date),
429/5xx retried within the budget, a timed-out request retried only when idempotent, a 401
answered by one fresh token, refusals and errors carrying the provider's own words."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from closerdesk.calendars.http import ProviderHttp, RetryPolicy, provider_reason, retry_after
from closerdesk.calendars.provider import CalendarAuthError, CalendarError
from tests.calendars.fakes.base import FakeApi


class Echo(FakeApi):
    """Answers 200 ``{"ok": true, "auth": <Authorization header>}`` on any path; a bearer
    token named in ``refused`` gets a 401."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: set[str] = set()

    def routes(self) -> list[BaseRoute]:
        async def any_path(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            if auth.removeprefix("Bearer ") in self.refused:
                return JSONResponse({"error": {"code": 401, "message": "expired"}}, 401)
            if request.url.path == "/moved":
                return Response(status_code=302, headers={"Location": "/events"})
            return JSONResponse({"ok": True, "auth": auth})

        return [Route("/{path:path}", any_path, methods=["GET", "POST", "DELETE"])]


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    server = Echo()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh(echo: Echo) -> None:
    echo.reset()
    echo.refused.clear()


def client(timeout: float = 1.0, budget: float = 3.0) -> ProviderHttp:
    return ProviderHttp(
        "Acme Calendar",
        timeout=timeout,
        policy=RetryPolicy(budget=budget, attempts=4, wait_initial=0.05, wait_max=0.2),
    )


def answer(status: int, body: object = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


# --- the pure readers ----------------------------------------------------------------------------
def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert retry_after(answer(429, **{"Retry-After": "7"})) == 7.0
    assert retry_after(answer(429, **{"Retry-After": " 0 "})) == 0.0
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after(answer(503, **{"Retry-After": later}), now) == 30.0
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert retry_after(answer(503, **{"Retry-After": earlier}), now) == 0.0
    naive = "Thu, 03 Dec 2026 12:00:10 -0000"  # RFC 2822 "-0000": parsed without a zone
    assert retry_after(answer(503, **{"Retry-After": naive}), now) == 10.0
    assert retry_after(answer(429)) is None
    assert retry_after(answer(429, **{"Retry-After": "soon"})) is None


def test_provider_reason_speaks_each_providers_error_body() -> None:
    google = {"error": {"code": 403, "message": "Rate Limit Exceeded"}}
    assert provider_reason(answer(403, google)) == "HTTP 403 403: Rate Limit Exceeded"
    graph = {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}
    assert provider_reason(answer(403, graph)) == "HTTP 403 ErrorAccessDenied: Access is denied."
    nylas = {"request_id": "r1", "error": {"type": "grant.expired", "message": "Grant expired"}}
    assert provider_reason(answer(401, nylas)) == "HTTP 401 grant.expired: Grant expired"
    oauth = {"error": "invalid_grant", "error_description": "Token has been revoked."}
    assert provider_reason(answer(400, oauth)) == "HTTP 400 invalid_grant: Token has been revoked."
    assert provider_reason(answer(400, {"error": "invalid_client"})) == "HTTP 400 invalid_client"
    same = {"error": {"code": "notFound", "message": "notFound"}}  # said once, not twice
    assert provider_reason(answer(404, same)) == "HTTP 404 notFound"
    assert provider_reason(answer(404, {"error": {"code": None, "message": "gone"}})) == (
        "HTTP 404 gone"
    )
    assert provider_reason(httpx.Response(502, text="<html>")) == "HTTP 502 Bad Gateway"
    long = {"error": {"message": "x" * 1000}}
    assert len(provider_reason(answer(500, long))) == 480


# --- retries -------------------------------------------------------------------------------------
async def test_a_429_waits_what_retry_after_asks_then_succeeds(echo: Echo) -> None:
    echo.fail("GET /events", 429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
    http = client()
    began = time.monotonic()
    response = await http.request("GET", f"{echo.url}/events")
    assert response.json()["ok"] is True
    assert time.monotonic() - began >= 1.0
    assert len(echo.received("GET /events")) == 2
    await http.aclose()


async def test_a_retry_after_beyond_the_budget_fails_at_once(echo: Echo) -> None:
    echo.fail("GET /events", 429, {"error": {"message": "later"}}, headers={"Retry-After": "60"})
    http = client(budget=3.0)
    began = time.monotonic()
    with pytest.raises(CalendarError, match="did not answer in time: HTTP 429 later"):
        await http.request("GET", f"{echo.url}/events")
    assert time.monotonic() - began < 1.0
    assert len(echo.received("GET /events")) == 1
    await http.aclose()


async def test_5xx_are_retried_until_the_attempts_run_out(echo: Echo) -> None:
    echo.fail("GET /events", 503, times=2)
    http = client()
    assert (await http.request("GET", f"{echo.url}/events")).status_code == 200
    assert len(echo.received("GET /events")) == 3
    echo.reset()
    echo.fail("GET /events", 500, times=10)
    with pytest.raises(CalendarError, match="did not answer in time") as raised:
        await http.request("GET", f"{echo.url}/events")
    assert not isinstance(raised.value, CalendarAuthError)
    assert len(echo.received("GET /events")) == 4  # RetryPolicy.attempts
    await http.aclose()


async def test_other_4xx_are_not_retried_and_carry_the_providers_words(echo: Echo) -> None:
    echo.fail("POST /events", 400, {"error": {"message": "bad time range"}})
    http = client()
    with pytest.raises(CalendarError, match=r"^Acme Calendar: HTTP 400 bad time range$") as raised:
        await http.request("POST", f"{echo.url}/events", json={})
    assert not isinstance(raised.value, CalendarAuthError)
    assert len(echo.received("POST /events")) == 1
    await http.aclose()


async def test_accepted_statuses_are_returned_as_they_are(echo: Echo) -> None:
    echo.fail("DELETE /events/1", 404, {"error": {"message": "gone"}})
    http = client()
    response = await http.request("DELETE", f"{echo.url}/events/1", accept=(404,))
    assert response.status_code == 404
    await http.aclose()


# --- timeouts ------------------------------------------------------------------------------------
async def test_a_timed_out_post_is_not_repeated(echo: Echo) -> None:
    echo.fail("POST /events", 200, delay=0.8, then_pass=True)
    http = client(timeout=0.3)
    with pytest.raises(CalendarError, match="timed out"):
        await http.request("POST", f"{echo.url}/events", json={})
    assert len(echo.received("POST /events")) == 1
    await http.aclose()


async def test_a_timed_out_idempotent_request_is_tried_again(echo: Echo) -> None:
    echo.fail("POST /events", 200, delay=0.8, then_pass=True)
    http = client(timeout=0.3)
    response = await http.request("POST", f"{echo.url}/events", json={}, idempotent=True)
    assert response.status_code == 200
    assert len(echo.received("POST /events")) == 2
    echo.reset()
    echo.fail("GET /events", 200, delay=0.8, then_pass=True)
    assert (await http.request("GET", f"{echo.url}/events")).status_code == 200  # GET: safe
    assert len(echo.received("GET /events")) == 2
    await http.aclose()


async def test_a_server_that_is_not_there_is_a_calendar_error() -> None:
    http = client(budget=0.5)
    with pytest.raises(CalendarError, match="could not connect"):
        await http.request("POST", "http://127.0.0.1:9/events", json={})
    await http.aclose()


# --- tokens and refusals -------------------------------------------------------------------------
async def test_a_401_asks_for_one_fresh_token_then_succeeds(echo: Echo) -> None:
    asked: list[bool] = []

    async def token(force: bool) -> str:
        asked.append(force)
        return "fresh" if force else "stale"

    echo.refused.add("stale")
    http = client()
    response = await http.request("GET", f"{echo.url}/events", token=token)
    assert response.json()["auth"] == "Bearer fresh"
    assert asked == [False, True]
    await http.aclose()


async def test_a_401_with_the_fresh_token_too_is_a_refusal(echo: Echo) -> None:
    forced: list[bool] = []

    async def token(force: bool) -> str:
        forced.append(force)
        return "always-refused"

    echo.refused.add("always-refused")
    http = client()
    with pytest.raises(CalendarAuthError, match="Acme Calendar refused: HTTP 401 401: expired"):
        await http.request("GET", f"{echo.url}/events", token=token)
    assert forced == [False, True]  # one refresh, not a loop
    assert len(echo.received("GET /events")) == 2
    await http.aclose()


async def test_a_403_is_a_refusal_unless_the_provider_says_otherwise(echo: Echo) -> None:
    echo.fail("GET /events", 403, {"error": {"message": "no access"}})
    http = client()
    with pytest.raises(CalendarAuthError, match="no access"):
        await http.request("GET", f"{echo.url}/events")
    lenient = ProviderHttp(
        "Acme Calendar",
        timeout=1.0,
        policy=RetryPolicy(budget=3.0, wait_initial=0.05, wait_max=0.2),
        retryable=lambda r: r.status_code == 403,
        refused=lambda r: False,
    )
    echo.fail("GET /events", 403, {"error": {"message": "rateLimitExceeded"}})
    assert (await lenient.request("GET", f"{echo.url}/events")).status_code == 200
    await http.aclose()
    await lenient.aclose()


async def test_what_is_sent_reaches_the_provider_on_every_attempt(echo: Echo) -> None:
    """Query, JSON body, form body and headers go out as given, again after a refresh."""

    async def token(force: bool) -> str:
        return "fresh" if force else "stale"

    echo.refused.add("stale")
    http = client()
    await http.request(
        "POST",
        f"{echo.url}/events",
        token=token,
        params={"sendUpdates": "none"},
        json={"summary": "Call"},
        headers={"Prefer": 'outlook.timezone="UTC"'},
    )
    first, second = echo.received("POST /events")
    for sent in (first, second):
        assert sent.query == {"sendUpdates": "none"}
        assert sent.json() == {"summary": "Call"}
        assert sent.headers["prefer"] == 'outlook.timezone="UTC"'
    assert (first.headers["authorization"], second.headers["authorization"]) == (
        "Bearer stale",
        "Bearer fresh",
    )
    await http.request("POST", f"{echo.url}/token", data={"grant_type": "refresh_token"})
    (form,) = echo.received("POST /token")
    assert form.form == {"grant_type": "refresh_token"}
    await http.aclose()


async def test_a_401_without_a_token_source_is_a_refusal_at_once(echo: Echo) -> None:
    echo.fail("GET /events", 401, {"error": {"message": "no key"}})
    http = client()
    with pytest.raises(CalendarAuthError, match="no key"):
        await http.request("GET", f"{echo.url}/events")
    assert len(echo.received("GET /events")) == 1
    await http.aclose()


async def test_failures_name_what_went_wrong(echo: Echo) -> None:
    echo.fail("POST /events", 200, delay=0.8, then_pass=True)
    http = client(timeout=0.3)
    with pytest.raises(CalendarError, match=r"^Acme Calendar timed out \(ReadTimeout\)$"):
        await http.request("POST", f"{echo.url}/events", json={})
    with pytest.raises(CalendarError, match=r"could not connect \(ConnectError\)"):
        await client(budget=0.3).request("GET", "http://127.0.0.1:9/events")
    echo.fail("GET /events", 200, delay=0.8, then_pass=True, times=10)
    with pytest.raises(CalendarError, match=r"did not answer in time: timed out \(ReadTimeout\)"):
        await client(timeout=0.3, budget=1.0).request("GET", f"{echo.url}/events")
    await http.aclose()


async def test_the_budget_bounds_the_retries_whatever_the_attempts(echo: Echo) -> None:
    echo.fail("GET /events", 503, times=1000)
    http = ProviderHttp(
        "Acme Calendar",
        timeout=1.0,
        policy=RetryPolicy(budget=1.0, attempts=1000, wait_initial=0.05, wait_max=0.1),
    )
    began = time.monotonic()
    with pytest.raises(CalendarError, match="did not answer in time"):
        await http.request("GET", f"{echo.url}/events")
    assert time.monotonic() - began < 2.0
    assert len(echo.received("GET /events")) > 3
    await http.aclose()


async def test_redirects_are_not_followed_and_the_transport_is_the_one_given(echo: Echo) -> None:
    http = client()
    with pytest.raises(CalendarError, match="HTTP 302"):
        await http.request("GET", f"{echo.url}/moved")
    assert echo.received("GET /events") == []
    await http.aclose()

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"routed": True})

    routed = ProviderHttp(
        "Acme Calendar", timeout=1.0, policy=RetryPolicy(), transport=httpx.MockTransport(handler)
    )
    response = await routed.request("GET", "https://calendar.example.test/events")
    assert response.json() == {"routed": True}
    assert seen == ["https://calendar.example.test/events"]
    await routed.aclose()
