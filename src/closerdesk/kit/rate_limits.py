"""The rate limiter (docs/rate-limits.md): fixed windows counted with the ``limits`` library.

Four budgets, each a ``limits`` string such as ``600/minute``:

- per API key (``CLOSERDESK_RATE_LIMIT_PER_KEY``) and per organization
  (``CLOSERDESK_RATE_LIMIT_PER_ORG``), for requests that authenticate with a key;
- per client address for failed authentication (``CLOSERDESK_RATE_LIMIT_AUTH_FAILURES``): once
  spent, the address's requests to ``/v1`` answer 429 before their key is looked at;
- per client address for requests without a key (``CLOSERDESK_RATE_LIMIT_PER_ADDRESS``): health,
  the lead-facing links, OAuth callbacks, provider notifications.

Counters live in process memory, or in Redis with ``CLOSERDESK_REDIS_URL`` (shared by every
process). If Redis cannot be reached the request is let through (fail open) and a warning logged:
a rate limiter must not take the API down with it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError

log = structlog.get_logger(__name__)

_NAMESPACE = "closerdesk"


@dataclass(frozen=True)
class Decision:
    """One budget after a request: ``limit`` requests per window, ``remaining`` left in it, the
    window over in ``reset_seconds`` (whole seconds, rounded up). ``allowed`` is False when the
    request went over the budget (then it answers 429 with ``Retry-After``)."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self, *, status: int) -> dict[str, str]:
        """``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds); and
        ``Retry-After`` (seconds, ≥ 1) on a response of ``status`` 429."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if status == 429:
            out["Retry-After"] = str(max(1, self.reset_seconds))
        return out


def parse_limit(text: str) -> RateLimitItem:
    """``"600/minute"`` → a ``limits`` item. Raises ``ValueError`` naming the text."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"not a rate limit like '600/minute': {text!r}") from exc


def _storage(redis_url: str | None) -> Storage:
    if not redis_url:
        return MemoryStorage()
    # limits' asynchronous Redis storage takes ``async+redis://`` (or ``async+rediss://``).
    uri = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
    return RedisStorage(uri, wrap_exceptions=True)


class RateLimiter:
    """Counts requests against the four budgets; one per app (``app.state.rate_limiter``)."""

    def __init__(
        self,
        *,
        per_key: str,
        per_org: str,
        auth_failures: str,
        per_address: str,
        redis_url: str | None = None,
    ) -> None:
        self.per_key = parse_limit(per_key)
        self.per_org = parse_limit(per_org)
        self.auth_failures = parse_limit(auth_failures)
        self.per_address = parse_limit(per_address)
        self.storage = _storage(redis_url)

    async def hit_key(self, api_key_id: str, organization_id: str) -> Decision:
        """Count an authenticated request against its key, then its organization. Answers the
        refused budget, else the one with the fewest requests left."""
        key = await self._hit(self.per_key, "key", api_key_id)
        if not key.allowed:
            return key
        org = await self._hit(self.per_org, "org", organization_id)
        if not org.allowed or org.remaining < key.remaining:
            return org
        return key

    async def auth_blocked(self, address: str) -> Decision | None:
        """The refusal for an address that has spent its failed-authentication budget, else
        None. Counts nothing."""
        decision = await self._peek(self.auth_failures, "auth-failures", address)
        return decision if decision.remaining <= 0 else None

    async def hit_auth_failure(self, address: str) -> Decision:
        """Count a failed authentication (a 401) of a client address."""
        return await self._hit(self.auth_failures, "auth-failures", address)

    async def hit_address(self, address: str) -> Decision:
        """Count a request made without an API key from a client address."""
        return await self._hit(self.per_address, "address", address)

    # The fixed-window strategy of ``limits`` (``FixedWindowRateLimiter``), on its storage
    # directly: the count ``incr`` answers gives what is left, so a budget costs two Redis round
    # trips (INCR, TTL) instead of three, and a check that finds budget left costs one (GET).
    async def _hit(self, item: RateLimitItem, kind: str, identity: str) -> Decision:
        key = item.key_for(_NAMESPACE, kind, identity)
        try:
            count = await self.storage.incr(key, item.get_expiry())
            reset = await self.storage.get_expiry(key)
        except StorageError as exc:
            return self._unavailable(item, exc)
        allowed = count <= item.amount
        return _decision(item, allowed=allowed, remaining=item.amount - count, reset=reset)

    async def _peek(self, item: RateLimitItem, kind: str, identity: str) -> Decision:
        key = item.key_for(_NAMESPACE, kind, identity)
        try:
            count = await self.storage.get(key)
            reset = await self.storage.get_expiry(key) if count >= item.amount else time.time()
        except StorageError as exc:
            return self._unavailable(item, exc)
        allowed = count < item.amount
        return _decision(item, allowed=allowed, remaining=item.amount - count, reset=reset)

    @staticmethod
    def _unavailable(item: RateLimitItem, exc: StorageError) -> Decision:
        log.warning("rate_limit_storage_unavailable", error=str(exc.storage_error or exc))
        return Decision(True, item.amount, item.amount, item.get_expiry())


def _decision(item: RateLimitItem, *, allowed: bool, remaining: int, reset: float) -> Decision:
    seconds = max(0, math.ceil(reset - time.time()))
    return Decision(allowed, item.amount, max(0, remaining), min(seconds, item.get_expiry()))
