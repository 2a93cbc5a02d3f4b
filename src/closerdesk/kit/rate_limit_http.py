"""Rate limits on the wire (docs/rate-limits.md): headers on every response, the per-address
budget of requests without a key, and their declaration in OpenAPI.

``/v1`` requests are counted by the API-key dependency (``closerdesk.auth.dependencies``), which
leaves its ``Decision`` in the request state under ``STATE_KEY``; every other request is counted
here against its client address. ``RateLimitMiddleware`` writes the decision's headers on the
response.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from closerdesk.errors import RateLimited
from closerdesk.kit.rate_limits import Decision, RateLimiter

STATE_KEY = "rate_limit"
KEYED_PREFIX = "/v1/"  # routes that authenticate with an API key, counted per key


def client_address(scope: Scope) -> str:
    """The peer address of the connection (behind a proxy: ``closerdesk serve
    --forwarded-allow-ips …`` makes it the client's, docs/rate-limits.md)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def decision_of(scope: Scope) -> Decision | None:
    """The decision taken for this request, if one was."""
    decision = scope.get("state", {}).get(STATE_KEY)
    return decision if isinstance(decision, Decision) else None


def remember(scope: Scope, decision: Decision) -> None:
    scope.setdefault("state", {})[STATE_KEY] = decision


class RateLimitMiddleware:
    """Counts a request without an API key against its client address (``/v1`` requests are
    counted by the key dependency), and writes ``RateLimit-Limit``, ``RateLimit-Remaining``,
    ``RateLimit-Reset`` (and ``Retry-After`` on a 429) on every response.

    It never answers by itself: an over-budget public request is refused with the 429 envelope by
    ``refuse_over_address_limit``; a ``/v1`` request that no key decision reached (an unknown
    route, a refused body) is counted against its address when its answer starts."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        if not scope["path"].startswith(KEYED_PREFIX):
            remember(scope, await self.limiter.hit_address(address))

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = decision_of(scope)
                if decision is None:
                    decision = await self.limiter.hit_address(address)
                    remember(scope, decision)
                headers = MutableHeaders(scope=message)
                for name, value in decision.headers(status=message["status"]).items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_limits)


async def refuse_over_address_limit(request: Request) -> None:
    """Dependency of the routes without an API key: 429 ``RATE_LIMITED`` once the client address
    has spent its budget (``CLOSERDESK_RATE_LIMIT_PER_ADDRESS``)."""
    decision = decision_of(request.scope)
    if decision is not None and not decision.allowed:
        raise RateLimited()


_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Limit": {
        "description": "Requests allowed in the current window (docs/rate-limits.md).",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "RateLimit-Remaining": {
        "description": "Requests left in the current window.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the current window ends.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}
_RETRY_AFTER: dict[str, Any] = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}


def document_rate_limits(app: FastAPI) -> None:
    """Declare the ``RateLimit-*`` headers on every response of every operation (``required``
    except on 5xx, which an unhandled error may answer before any count) and ``Retry-After`` on
    every 429."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                for status, response in operation.get("responses", {}).items():
                    headers = response.setdefault("headers", {})
                    required = not str(status).startswith("5")
                    for name, header in _HEADERS.items():
                        headers[name] = {**header, "required": required}
                    if str(status) == "429":
                        headers["Retry-After"] = {**_RETRY_AFTER, "required": True}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
