"""HTTP to the cloud calendars (Google, Microsoft Graph, Nylas): bounded, retried, classified.

``docs/calendars.md`` (failures) is the contract every cloud provider shares:

* each request is bounded by ``CLOSERDESK_CALENDAR_TIMEOUT_SECONDS``;
* 429 and 5xx answers (and Google's 403 rate-limit reasons, via ``retryable``) are retried with
  exponential backoff (``stamina``), honouring ``Retry-After``, for at most
  ``CLOSERDESK_CALENDAR_RETRY_SECONDS`` in all; a ``Retry-After`` longer than that fails at once;
* a connection that could not be opened is retried; a request that timed out or lost its
  connection is retried only when it is idempotent (a read, or a create the provider
  deduplicates), so no event is made twice;
* a 401 asks the token source for a fresh access token once, then counts as a refusal;
* what is left becomes ``CalendarAuthError`` (refused credentials, a revoked grant) or
  ``CalendarError``, with the provider's own reason and never a credential.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import stamina
import structlog

from closerdesk.calendars.provider import CalendarAuthError, CalendarError

log = structlog.get_logger(__name__)

TokenGetter = Callable[[bool], Awaitable[str]]
"""``token(force)`` → an access token; ``force`` asks for a fresh one (after a 401)."""


class _Retryable(Exception):
    """A response (or transport failure) worth another attempt; ``wait`` from ``Retry-After``."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


@dataclass(frozen=True)
class RetryPolicy:
    """How long one logical request may take: ``budget`` seconds in all, ``attempts`` at most,
    backoff from ``wait_initial`` doubling to ``wait_max`` (seconds)."""

    budget: float = 20.0
    attempts: int = 5
    wait_initial: float = 0.5
    wait_max: float = 8.0


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Seconds the provider asks to wait (RFC 9110 ``Retry-After``: delta-seconds or an
    HTTP-date); None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def provider_reason(response: httpx.Response) -> str:
    """The provider's own words for a failed response, from the error bodies of Google
    (``error.message``), Microsoft Graph (``error.code``/``error.message``), Nylas
    (``error.type``/``error.message``) and OAuth 2.0 token endpoints (RFC 6749 §5.2
    ``error``/``error_description``); the status line when the body says nothing."""
    try:
        body = response.json()
    except ValueError:
        body = None
    parts: list[str] = []
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            for key in ("code", "type", "message"):
                if isinstance(error.get(key), str | int) and str(error[key]) not in parts:
                    parts.append(str(error[key]))
        elif isinstance(error, str):
            parts.append(error)
            if isinstance(body.get("error_description"), str):
                parts.append(body["error_description"])
    text = ": ".join(parts) if parts else response.reason_phrase
    return f"HTTP {response.status_code} {text}"[:480]


def _default_retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


class ProviderHttp:
    """One cloud provider's API over a shared ``httpx.AsyncClient``.

    ``retryable(response)`` says which failed answers deserve another attempt (default: 429
    and 5xx); ``refused(response)`` which ones mean the credentials or grant are refused
    (default: 401 and 403). ``transport`` lets a test route requests elsewhere.
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: float,
        policy: RetryPolicy,
        retryable: Callable[[httpx.Response], bool] = _default_retryable,
        refused: Callable[[httpx.Response], bool] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self._retryable = retryable
        self._refused = refused or (lambda r: r.status_code in (401, 403))
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        token: TokenGetter | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send the request until it succeeds, retrying what ``docs/calendars.md`` says.

        ``token`` supplies the bearer token (refreshed once on a 401). ``idempotent`` (default:
        every method but POST) allows retrying a timed-out request. ``accept`` lists failure
        statuses the caller handles itself (a 404 on delete, a 410 on sync), returned as is.
        Raises ``CalendarAuthError`` when refused, ``CalendarError`` otherwise.
        """
        safe = idempotent if idempotent is not None else method.upper() != "POST"
        refreshed = False
        policy = self.policy
        deadline = time.monotonic() + policy.budget

        def backoff(exc: Exception) -> bool | float:
            if not isinstance(exc, _Retryable):
                return False
            if exc.wait is None:
                return True
            if exc.wait > deadline - time.monotonic():
                return False  # waiting that long would outlast what is left of the budget
            return exc.wait

        try:
            async for attempt in stamina.retry_context(
                on=backoff,
                attempts=policy.attempts,
                timeout=policy.budget,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=min(1.0, policy.wait_initial),
            ):
                with attempt:
                    # The cached token (fresh after a refresh): a refresh is forced only
                    # right after a 401, never again on a retry for a 429 or a 5xx.
                    response = await self._send(
                        method, url, token, False, params, json, data, headers, safe
                    )
                    if response.status_code == 401 and token is not None and not refreshed:
                        refreshed = True  # a stale access token: one fresh one, then retry
                        response = await self._send(
                            method, url, token, True, params, json, data, headers, safe
                        )
                    if response.is_success or response.status_code in accept:
                        return response
                    if self._retryable(response):
                        raise _Retryable(provider_reason(response), retry_after(response))
                    if self._refused(response):
                        raise CalendarAuthError(f"{self.name} refused: {provider_reason(response)}")
                    raise CalendarError(f"{self.name}: {provider_reason(response)}")
        except _Retryable as exc:
            raise CalendarError(f"{self.name} did not answer in time: {exc.reason}") from None
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _send(
        self,
        method: str,
        url: str,
        token: TokenGetter | None,
        fresh: bool,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        safe: bool,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {await token(fresh)}"
        try:
            return await self._client.request(
                method, url, params=params, json=json, data=data, headers=sent
            )
        except httpx.ConnectError as exc:  # nothing was sent: always safe to try again
            raise _Retryable(f"could not connect ({type(exc).__name__})") from None
        except httpx.TimeoutException as exc:
            if safe:
                raise _Retryable(f"timed out ({type(exc).__name__})") from None
            raise CalendarError(f"{self.name} timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:  # a dropped keep-alive connection, a reset…
            if safe:
                raise _Retryable(f"the connection failed ({type(exc).__name__})") from None
            raise CalendarError(f"{self.name} failed: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise CalendarError(f"{self.name} failed: {type(exc).__name__}") from None
