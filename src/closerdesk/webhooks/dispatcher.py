"""The webhook dispatcher: at-least-once delivery from the outbox (SPEC §6).

Loop: claim due deliveries → POST them concurrently → record every attempt → repeat.

* **Claim** (one short transaction): due ``pending`` deliveries are selected ``FOR UPDATE SKIP
  LOCKED`` (PostgreSQL; any number of dispatchers share the work) and leased by moving their
  ``next_attempt_at`` one lease ahead. A dispatcher that dies mid-attempt only delays them:
  the lease runs out and the next claim takes them again. On SQLite the claim transaction
  begins ``IMMEDIATE``, which serialises claims just as well.
* **Attempt**: signed per Standard Webhooks, 15 s in all, redirects not followed, 2xx is success,
  the target re-checked and pinned to its resolved IP on every attempt.
* **Record** (one transaction per batch): an attempt row each; success → ``succeeded``; 410 →
  subscription disabled; otherwise the next attempt after roughly 5 s, 5 min, 30 min, 2 h, 5 h,
  10 h, 10 h (±10 % jitter; ``Retry-After`` on 429/503 wins), then ``failed``. A subscription
  failing without a break for 5 days is disabled, with the reason recorded.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy import select, update

from closerdesk.calendars.cleanup import retry_due_cleanups
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from closerdesk.providers import Providers, default_providers
from closerdesk.webhooks.service import signing_secrets
from closerdesk.webhooks.signing import signed_headers
from closerdesk.webhooks.targets import TargetNotAllowed, resolve_target

log = structlog.get_logger(__name__)

RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
"""Delay before retry n (after attempt n). Attempt 1 + 7 retries = 8 attempts, ~27.6 h."""
DISABLE_AFTER = timedelta(days=5)
LEASE = timedelta(seconds=60)
TIMEOUT_SECONDS = 15.0
EXCERPT_BYTES = 2048
MAX_RETRY_AFTER = timedelta(hours=24)
CLEANUP_EVERY_SECONDS = 30.0

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Job:
    """A claimed delivery with everything needed to send it."""

    delivery_id: str
    organization_id: str
    subscription_id: str
    event_id: str
    event_type: str
    attempt_number: int
    target_url: str
    secrets: tuple[str, ...]
    body: str
    active: bool


@dataclass(frozen=True)
class AttemptResult:
    job: Job
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None
    retry_after: timedelta | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_http_client() -> httpx.AsyncClient:
    """The client webhooks go out with: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(TIMEOUT_SECONDS),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    )


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` as seconds or an HTTP date; clamped to [1 s, 24 h]; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    delay: timedelta | None
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - now
    return max(timedelta(seconds=1), min(delay, MAX_RETRY_AFTER))


class Dispatcher:
    """Delivers due webhook deliveries. Safe to run any number of them on one PostgreSQL.

    ``clock`` decides what is due and when retries happen (tests move it forward);
    signatures always carry the real time, as receivers check it against theirs.
    """

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        providers: Providers | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Clock = utcnow,
        batch_size: int = 100,
        concurrency: int = 50,
        poll_interval: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.providers = providers or default_providers(settings)
        self.http = http or new_http_client()
        self._owns_http = http is None
        self.clock = clock
        self.batch_size = batch_size
        self.semaphore = asyncio.Semaphore(concurrency)
        self.poll_interval = poll_interval
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._last_cleanup = 0.0

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    # --- the loop --------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        log.info("webhooks.dispatcher_started")
        while not stop.is_set():
            try:
                sent = await self.run_once()
                await self._maybe_clean_calendars()
            except Exception:
                log.exception("webhooks.dispatcher_error")
                sent = 0
            if sent == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_interval)
                except TimeoutError:
                    pass

    async def run_once(self) -> int:
        """Claim one batch, send it, record it; returns how many deliveries were handled."""
        jobs = await self.claim()
        if not jobs:
            return 0
        results = await asyncio.gather(*(self._attempt_limited(job) for job in jobs))
        await self.record(results)
        return len(jobs)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Run batches until nothing is due (tests and ``deliver_now``)."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            if handled == 0:
                break
            total += handled
        return total

    async def deliver_now(self, delivery_id: str) -> AttemptResult | None:
        """Claim and attempt one delivery right away (``POST /v1/webhooks/{id}/test``)."""
        jobs = await self.claim(only_delivery_id=delivery_id)
        if not jobs:
            return None
        result = await self._attempt_limited(jobs[0])
        await self.record([result])
        return result

    async def _maybe_clean_calendars(self) -> None:
        if time.monotonic() - self._last_cleanup < CLEANUP_EVERY_SECONDS:
            return
        self._last_cleanup = time.monotonic()
        await retry_due_cleanups(self.database, self.providers)

    # --- claim -----------------------------------------------------------------------------------
    async def claim(self, *, only_delivery_id: str | None = None) -> list[Job]:
        """Lease up to ``batch_size`` due deliveries (one transaction)."""
        now = self.clock()
        async with self.database.writer() as session:
            stmt = select(WebhookDelivery.id).where(WebhookDelivery.status == "pending")
            if only_delivery_id is not None:
                stmt = stmt.where(WebhookDelivery.id == only_delivery_id)
            else:
                stmt = stmt.where(WebhookDelivery.next_attempt_at <= now)
            ids = list(
                await session.scalars(
                    stmt.order_by(WebhookDelivery.next_attempt_at)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            if not ids:
                await session.rollback()
                return []
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(next_attempt_at=now + LEASE)
                .execution_options(synchronize_session=False)
            )
            rows = await session.execute(
                select(WebhookDelivery, WebhookEvent.payload, WebhookSubscription)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .join(
                    WebhookSubscription,
                    WebhookSubscription.id == WebhookDelivery.subscription_id,
                )
                .where(WebhookDelivery.id.in_(ids))
            )
            jobs = [
                Job(
                    delivery_id=delivery.id,
                    organization_id=delivery.organization_id,
                    subscription_id=subscription.id,
                    event_id=delivery.event_id,
                    event_type=delivery.event_type,
                    attempt_number=delivery.attempt_count + 1,
                    target_url=subscription.target_url,
                    secrets=tuple(signing_secrets(subscription, utcnow())),
                    body=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
                    active=subscription.is_active,
                )
                for delivery, payload, subscription in rows.tuples()
            ]
            await session.commit()
        return jobs

    # --- attempt ---------------------------------------------------------------------------------
    async def _attempt_limited(self, job: Job) -> AttemptResult:
        async with self.semaphore:
            return await self.attempt(job)

    async def attempt(self, job: Job) -> AttemptResult:
        """One HTTP POST of the job. Never raises: failures become the result."""
        attempted_at = self.clock()
        started = time.perf_counter()
        status_code: int | None = None
        excerpt: str | None = None
        error: str | None = None
        retry_after: timedelta | None = None
        if not job.active:
            error = "subscription disabled; not sent"
        else:
            try:
                async with asyncio.timeout(TIMEOUT_SECONDS):
                    status_code, excerpt, retry_header = await self._post(job)
                if status_code in (429, 503):
                    retry_after = parse_retry_after(retry_header, attempted_at)
            except TargetNotAllowed as exc:
                error = f"target not allowed: {exc}"
            except TimeoutError:
                error = f"timed out after {TIMEOUT_SECONDS:.0f} s"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        latency_ms = round((time.perf_counter() - started) * 1000)
        return AttemptResult(
            job, attempted_at, status_code, latency_ms, excerpt, error, retry_after
        )

    async def _post(self, job: Job) -> tuple[int, str, str | None]:
        target = await resolve_target(
            job.target_url, allow_private=self.settings.webhook_allow_private_targets
        )
        headers = signed_headers(job.secrets, job.event_id, utcnow(), job.body)
        extensions = {}
        if target.pinned:
            port = httpx.URL(job.target_url).port
            headers["host"] = target.host + (f":{port}" if port else "")
            extensions["sni_hostname"] = target.host
        async with self.http.stream(
            "POST", target.url, content=job.body.encode(), headers=headers, extensions=extensions
        ) as response:
            received = bytearray()
            async for chunk in response.aiter_raw():
                received += chunk
                if len(received) >= EXCERPT_BYTES:
                    break
            excerpt = bytes(received[:EXCERPT_BYTES]).decode("utf-8", errors="replace")
            return response.status_code, excerpt, response.headers.get("retry-after")

    # --- record ----------------------------------------------------------------------------------
    async def record(self, results: list[AttemptResult]) -> None:
        """Write every attempt and the consequences for its delivery and subscription."""
        now = self.clock()
        async with self.database.writer() as session:
            deliveries = {
                d.id: d
                for d in await session.scalars(
                    select(WebhookDelivery).where(
                        WebhookDelivery.id.in_([r.job.delivery_id for r in results])
                    )
                )
            }
            subscriptions = {
                s.id: s
                for s in await session.scalars(
                    select(WebhookSubscription).where(
                        WebhookSubscription.id.in_({r.job.subscription_id for r in results})
                    )
                )
            }
            for result in results:
                job = result.job
                delivery = deliveries.get(job.delivery_id)
                if delivery is None:  # the subscription was deleted meanwhile
                    continue
                subscription = subscriptions.get(job.subscription_id)
                session.add(
                    WebhookAttempt(
                        id=new_id("att"),
                        organization_id=job.organization_id,
                        delivery_id=job.delivery_id,
                        subscription_id=job.subscription_id,
                        event_id=job.event_id,
                        event_type=job.event_type,
                        attempted_at=result.attempted_at,
                        status_code=result.status_code,
                        latency_ms=result.latency_ms,
                        succeeded=result.succeeded,
                        response_excerpt=result.excerpt,
                        error=result.error,
                    )
                )
                delivery.attempt_count += 1
                delivery.last_status_code = result.status_code
                delivery.last_error = result.error
                self._settle(delivery, subscription, result, now)
            await session.commit()

    def _settle(
        self,
        delivery: WebhookDelivery,
        subscription: WebhookSubscription | None,
        result: AttemptResult,
        now: datetime,
    ) -> None:
        if result.succeeded:
            delivery.status, delivery.delivered_at = "succeeded", now
            if subscription is not None:
                subscription.failing_since = None
            return
        if subscription is None or not subscription.is_active:
            delivery.status = "failed"
            delivery.last_error = result.error or "subscription disabled"
            return
        if result.status_code == 410:
            delivery.status = "failed"
            _disable(subscription, now, "the target answered 410 Gone")
            return
        subscription.failing_since = subscription.failing_since or result.attempted_at
        if now - subscription.failing_since >= DISABLE_AFTER:
            delivery.status = "failed"
            _disable(subscription, now, "every delivery failed for 5 days")
            return
        retries_done = delivery.attempt_count - 1
        if retries_done >= len(RETRY_SCHEDULE):
            delivery.status = "failed"
            delivery.last_error = (result.error or f"HTTP {result.status_code}") + (
                f"; gave up after {delivery.attempt_count} attempts"
            )
            return
        delay = result.retry_after or self._jittered(RETRY_SCHEDULE[retries_done])
        delivery.next_attempt_at = now + delay

    def _jittered(self, delay: timedelta) -> timedelta:
        return delay * self.rng.uniform(0.9, 1.1)


def _disable(subscription: WebhookSubscription, now: datetime, reason: str) -> None:
    subscription.is_active = False
    subscription.disabled_at = now
    subscription.disabled_reason = reason
    log.warning("webhooks.subscription_disabled", subscription_id=subscription.id, reason=reason)
