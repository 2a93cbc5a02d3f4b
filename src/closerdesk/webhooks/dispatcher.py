"""The webhook dispatcher: at-least-once delivery from the outbox (docs/webhooks.md).

A pipeline of three steps, so that one slow target never holds up the others:

* **Claim** (one short transaction, whenever sending capacity is free): due ``pending``
  deliveries are selected ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; any number of dispatchers
  share the work) and leased by moving their ``next_attempt_at`` one lease ahead
  (``CLOSERDESK_WEBHOOK_LEASE_SECONDS``, 60 s). A dispatcher that dies mid-attempt only delays
  them: the lease runs out and the next claim takes them again (at-least-once: the receiver
  may see such a delivery twice, with the same ``webhook-id``). On SQLite the claim transaction
  begins ``IMMEDIATE``, which serialises claims just as well.
* **Attempt** (each delivery its own task, at most ``concurrency`` at once): signed per
  Standard Webhooks, 15 s in all, redirects not followed, 2xx is success, the target re-checked
  and pinned to its resolved IP on every attempt.
* **Record** (one transaction for whatever results are ready): an attempt row each; success →
  ``succeeded``; 410 → subscription disabled; otherwise the next attempt after roughly 5 s,
  5 min, 30 min, 2 h, 5 h, 10 h, 10 h (±10 % jitter; ``Retry-After`` on 429/503 can only
  lengthen a wait), then ``failed``. A subscription failing without a break for 5 days is
  disabled, with the reason recorded; its pending deliveries are then marked ``failed``
  without being sent.

Waking up (docs/webhooks.md, "How fast a delivery leaves"): an idle dispatcher issues no
statement. It sleeps until a transaction that wrote deliveries commits (``wakeup.py``:
``NOTIFY`` on PostgreSQL, heard on a dedicated ``LISTEN`` connection; a direct call within this
process on every database), until the earliest retry it scheduled itself is due, or until the
sweep (``CLOSERDESK_WEBHOOK_SWEEP_SECONDS``, 30 s; while not listening, and always on SQLite,
``CLOSERDESK_WEBHOOK_POLL_SECONDS``, 1 s), which finds whatever no wake-up announced: retries
scheduled by other processes, leases run out, notifications lost while the connection was down.

Health (docs/webhooks.md, "Webhook health"): when a run of failures has lasted an hour,
``webhook.failing`` is recorded once for that run, and when closerdesk disables a subscription,
``webhook.disabled``; both go to the organization's other subscriptions that ask for them, in
the transaction that records the failure.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.secrets import SecretBox, UndecryptableSecret, secret_box
from closerdesk.kit.time import utcnow
from closerdesk.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from closerdesk.webhooks.payloads import EventData, WebhookDisabledData, WebhookFailingData
from closerdesk.webhooks.schemas import WebhookSubscription as SubscriptionSchema
from closerdesk.webhooks.service import (
    fail_pending_deliveries,
    not_sent_reason,
    record_event,
    signing_secrets,
)
from closerdesk.webhooks.signing import signed_headers
from closerdesk.webhooks.targets import TargetNotAllowed, resolve_target
from closerdesk.webhooks.wakeup import OutboxListener, local_wakeups

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
JITTER = 0.1
DISABLE_AFTER = timedelta(days=5)
FAILING_AFTER = timedelta(hours=1)
"""A run of failures this long is announced with ``webhook.failing`` (once per run)."""
STREAK_GAP = sum(RETRY_SCHEDULE, timedelta(hours=1))
"""Failures further apart than a delivery's whole retry schedule are not one unbroken run."""
TIMEOUT_SECONDS = 15.0
EXCERPT_BYTES = 2048
MAX_RETRY_AFTER = timedelta(hours=24)
RECORD_TRIES = 4
ENVELOPE_ORDER = ("id", "event", "created_at", "organization_id", "data")

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
    secret_error: str | None = None
    """Why the signing secrets could not be opened (then nothing is sent; the attempt fails
    with this error and is retried on the usual schedule, so fixing the keys recovers it)."""


@dataclass(frozen=True)
class AttemptResult:
    job: Job
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None
    retry_after: timedelta | None
    sent: bool = True

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_http_client(max_connections: int = 200) -> httpx.AsyncClient:
    """The client webhooks go out with: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(TIMEOUT_SECONDS),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
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


def body_of(payload: dict[str, Any]) -> str:
    """The exact bytes (as text) partners receive: the stored payload, envelope keys first in
    their documented order (PostgreSQL's JSONB does not keep key order), compact JSON."""
    ordered = {key: payload[key] for key in ENVELOPE_ORDER if key in payload}
    ordered.update((key, value) for key, value in payload.items() if key not in ordered)
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)


class Dispatcher:
    """Delivers due webhook deliveries. Safe to run any number of them on one PostgreSQL.

    ``clock`` decides what is due, leases, retries and the rotation overlap (tests move it
    forward); signatures always carry the real time, as receivers check it against theirs.
    ``box`` opens the stored signing secrets (default: ``secret_box(settings)``).
    ``run`` is the long-running pipeline; ``run_once``/``drain`` handle one batch at a time
    (tests, and anything that wants a deterministic step).

    ``listen`` (default: on PostgreSQL) wakes ``run`` by ``LISTEN``/``NOTIFY``;
    ``poll_interval`` is the longest idle wait in seconds (default: the sweep,
    ``settings.webhook_sweep_seconds``, when listening; ``settings.webhook_poll_seconds``
    otherwise, and while the listening connection is down). ``wake_ups=False`` turns every
    wake-up off (no listening, no in-process wake-up, no retry timer): ``run`` then only polls,
    as before docs/performance.md's "Waking up" (the bench's baseline).
    """

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Clock = utcnow,
        batch_size: int = 100,
        concurrency: int = 50,
        poll_interval: float | None = None,
        listen: bool | None = None,
        wake_ups: bool = True,
        lease: timedelta | None = None,
        rng: random.Random | None = None,
        box: SecretBox | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.box = box or secret_box(settings)
        self.http = http or new_http_client(max(concurrency, 10))
        self._owns_http = http is None
        self.clock = clock
        self.batch_size = max(1, batch_size)
        self.concurrency = max(1, concurrency)
        self.wake_ups = wake_ups
        self.listen = wake_ups and (database.dialect == "postgresql" if listen is None else listen)
        self.poll_seconds = settings.webhook_poll_seconds
        if poll_interval is not None:
            self.poll_seconds = min(self.poll_seconds, poll_interval)
        default_wait = settings.webhook_sweep_seconds if self.listen else self.poll_seconds
        self.poll_interval = default_wait if poll_interval is None else poll_interval
        self.listener: OutboxListener | None = None
        self.idle = False
        """True while ``run`` sleeps, nothing being due, until a wake-up (tests look)."""
        self._wake = asyncio.Event()
        self._claim_now = False
        self._next_due: datetime | None = None
        self.lease = lease or timedelta(seconds=settings.webhook_lease_seconds)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    # --- waking up -------------------------------------------------------------------------------
    def wake_up(self) -> None:
        """Claim again now (the outbox was written): the ``LISTEN`` callback and tests."""
        self._claim_now = True
        self._wake.set()

    def _local_wake_up(self) -> None:
        # A commit in this process; when listening, its NOTIFY wakes us just as well.
        if self.wake_ups and (self.listener is None or not self.listener.listening):
            self.wake_up()

    def _note_due(self, when: datetime) -> None:
        """A delivery becomes due at ``when`` (a retry or a lease): wake up then."""
        if self.wake_ups and (self._next_due is None or when < self._next_due):
            self._next_due = when
            self._wake.set()  # recompute the wait, no claim

    async def _sleep_until_due(self, stop: asyncio.Event) -> None:
        """Until a wake-up, the earliest known due time, the sweep, or ``stop``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.idle = True
        try:
            while not stop.is_set() and not self._claim_now:
                listening = self.listener is not None and self.listener.listening
                limit = self.poll_interval if listening or not self.listen else self.poll_seconds
                timeout = started + limit - loop.time()
                if self._next_due is not None:
                    timeout = min(timeout, (self._next_due - self.clock()).total_seconds())
                if timeout <= 0:
                    return
                self._wake.clear()
                await _wait(self._wake, timeout)
        finally:
            self.idle = False

    # --- the pipeline ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set (or the task is cancelled).

        Claims whenever at least a quarter of the sending slots are free (or all of them are),
        sends each delivery in its own task, and records results as they come in. When nothing
        is due it sleeps, issuing no statement, until woken (see the module's docstring). On
        stop, the deliveries in flight are finished and recorded first.
        """
        stop = stop or asyncio.Event()
        results: asyncio.Queue[AttemptResult | None] = asyncio.Queue()
        recorder = asyncio.create_task(self._record_loop(results))
        in_flight: set[asyncio.Task[None]] = set()
        slot_freed = asyncio.Event()
        threshold = max(1, min(self.batch_size, self.concurrency) // 4)

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            slot_freed.set()

        stop_watch = asyncio.create_task(stop.wait())
        stop_watch.add_done_callback(lambda _task: self._wake.set())
        local_wakeups.add(self._local_wake_up)
        listening: asyncio.Task[None] | None = None
        if self.listen:
            self.listener = OutboxListener(self.database.engine.url, self.wake_up)
            listening = asyncio.create_task(self.listener.run(stop))
        log.info("webhooks.dispatcher_started", concurrency=self.concurrency, listen=self.listen)
        try:
            while not stop.is_set():
                slot_freed.clear()
                free = self.concurrency - len(in_flight)
                wanted = min(free, self.batch_size)
                busy = free < threshold and bool(in_flight)
                if not busy:
                    self._claim_now = False
                    claimed_at = self.clock()
                    try:
                        jobs = await self.claim(limit=wanted)
                    except Exception:
                        log.exception("webhooks.claim_failed")
                        await _wait(stop, 1.0)
                        continue
                    for job in jobs:
                        task = asyncio.create_task(self._attempt_into(job, results))
                        in_flight.add(task)
                        task.add_done_callback(finished)
                    if len(jobs) == wanted:  # more may be due right now
                        if len(in_flight) < self.concurrency:
                            continue
                        busy = True
                    elif self._next_due is not None and self._next_due <= claimed_at:
                        self._next_due = None  # what was due then has just been claimed
                if busy:  # every slot taken: wait for one to free (no statement meanwhile)
                    await _wait(slot_freed, 1.0)
                else:  # nothing more due now
                    await self._sleep_until_due(stop)
        finally:
            local_wakeups.discard(self._local_wake_up)
            if in_flight:
                await asyncio.wait(set(in_flight))
            results.put_nowait(None)
            await recorder
            stop_watch.cancel()
            if listening is not None:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
            self.listener = None

    async def _attempt_into(self, job: Job, results: asyncio.Queue[AttemptResult | None]) -> None:
        results.put_nowait(await self.attempt(job))

    async def _record_loop(self, results: asyncio.Queue[AttemptResult | None]) -> None:
        """Record whatever results are ready in one transaction, until ``None`` arrives."""
        done = False
        while not done:
            item = await results.get()
            batch = [] if item is None else [item]
            done = item is None
            while not done and not results.empty() and len(batch) < 1000:
                item = results.get_nowait()
                if item is None:
                    done = True
                else:
                    batch.append(item)
            if batch:
                await self._record_with_retries(batch)

    async def _record_with_retries(self, batch: list[AttemptResult]) -> None:
        for attempt in range(1, RECORD_TRIES + 1):
            try:
                await self.record(batch)
                return
            except Exception:
                if attempt == RECORD_TRIES:
                    # Not lost: the deliveries are still pending under a lease that runs out,
                    # so they are sent again (at-least-once).
                    log.exception("webhooks.record_failed", deliveries=len(batch))
                    self._note_due(self.clock() + self.lease)
                    return
                log.warning("webhooks.record_retry", attempt=attempt, exc_info=True)
                await asyncio.sleep(0.2 * 2**attempt)

    # --- one step at a time ----------------------------------------------------------------------
    async def run_once(self) -> int:
        """Claim one batch, send it, record it; returns how many deliveries were handled."""
        jobs = await self.claim()
        if not jobs:
            return 0
        semaphore = asyncio.Semaphore(self.concurrency)

        async def limited(job: Job) -> AttemptResult:
            async with semaphore:
                return await self.attempt(job)

        results = await asyncio.gather(*(limited(job) for job in jobs))
        await self.record(list(results))
        return len(jobs)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Run batches until nothing is due (by ``clock``); returns how many were handled."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            if handled == 0:
                break
            total += handled
        return total

    async def deliver_now(self, delivery_id: str) -> AttemptResult | None:
        """Claim and attempt one pending delivery right away, due or not
        (``POST /v1/webhooks/{id}/test``). None when it is not pending."""
        jobs = await self.claim(only_delivery_id=delivery_id)
        if not jobs:
            return None
        result = await self.attempt(jobs[0])
        await self.record([result])
        return result

    # --- claim -----------------------------------------------------------------------------------
    async def claim(
        self, *, limit: int | None = None, only_delivery_id: str | None = None
    ) -> list[Job]:
        """Lease up to ``limit`` (default ``batch_size``) due deliveries, oldest due first.

        One transaction of two statements: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
        LOCKED) RETURNING id`` moves the lease, then one join reads what sending needs.
        """
        now = self.clock()
        due = select(WebhookDelivery.id).where(WebhookDelivery.status == "pending")
        if only_delivery_id is not None:
            due = due.where(WebhookDelivery.id == only_delivery_id)
        else:
            due = due.where(WebhookDelivery.next_attempt_at <= now)
        due = (
            due.order_by(WebhookDelivery.next_attempt_at)
            .limit(limit or self.batch_size)
            .with_for_update(skip_locked=True)
        )
        async with self.database.writer() as session:
            ids = list(
                await session.scalars(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(due))
                    .values(next_attempt_at=now + self.lease)
                    .returning(WebhookDelivery.id)
                    .execution_options(synchronize_session=False)
                )
            )
            if not ids:
                await session.rollback()
                return []
            rows = await session.execute(
                select(
                    WebhookDelivery.id,
                    WebhookDelivery.organization_id,
                    WebhookDelivery.subscription_id,
                    WebhookDelivery.event_id,
                    WebhookDelivery.event_type,
                    WebhookDelivery.attempt_count,
                    WebhookEvent.payload,
                    WebhookSubscription.target_url,
                    WebhookSubscription.secret,
                    WebhookSubscription.previous_secret,
                    WebhookSubscription.previous_secret_expires_at,
                    WebhookSubscription.is_active,
                )
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .join(
                    WebhookSubscription,
                    WebhookSubscription.id == WebhookDelivery.subscription_id,
                )
                .where(WebhookDelivery.id.in_(ids))
                .order_by(WebhookDelivery.id)
            )
            jobs = []
            for row in rows:
                secret_error: str | None = None
                try:
                    secrets = tuple(
                        signing_secrets(
                            self.box,
                            row.secret,
                            row.previous_secret,
                            row.previous_secret_expires_at,
                            now,
                        )
                    )
                except UndecryptableSecret as exc:
                    log.error("webhooks.secret_undecryptable", subscription_id=row.subscription_id)
                    secrets, secret_error = (), f"not sent: {exc}"
                jobs.append(
                    Job(
                        delivery_id=row.id,
                        organization_id=row.organization_id,
                        subscription_id=row.subscription_id,
                        event_id=row.event_id,
                        event_type=row.event_type,
                        attempt_number=row.attempt_count + 1,
                        target_url=row.target_url,
                        secrets=secrets,
                        body=body_of(row.payload),
                        active=row.is_active,
                        secret_error=secret_error,
                    )
                )
            await session.commit()
        return jobs

    # --- attempt ---------------------------------------------------------------------------------
    async def attempt(self, job: Job) -> AttemptResult:
        """One HTTP POST of the job. Never raises: failures become the result."""
        attempted_at = self.clock()
        started = time.perf_counter()
        status_code: int | None = None
        excerpt: str | None = None
        error: str | None = None
        retry_after: timedelta | None = None
        if not job.active:
            return AttemptResult(job, attempted_at, None, 0, None, None, None, sent=False)
        if job.secret_error is not None:
            return AttemptResult(job, attempted_at, None, 0, None, job.secret_error, None)
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
        except (
            Exception
        ) as exc:  # never let one delivery kill the loop (it would be leased forever)
            log.exception("webhooks.attempt_error", delivery_id=job.delivery_id)
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = round((time.perf_counter() - started) * 1000)
        return AttemptResult(
            job, attempted_at, status_code, latency_ms, excerpt, error, retry_after
        )

    async def _post(self, job: Job) -> tuple[int, str, str | None]:
        target = await resolve_target(
            job.target_url, allow_private=self.settings.webhook_allow_private_targets
        )
        headers = signed_headers(job.secrets, job.event_id, utcnow(), job.body)
        extensions: dict[str, Any] = {}
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
    async def record(self, results: Sequence[AttemptResult]) -> None:
        """Write every attempt and the consequences for its delivery and subscription
        (one transaction). Successes, the common case, take three set-based statements;
        failures go through the per-delivery rules of ``_settle``."""
        now = self.clock()
        successes = [r for r in results if r.sent and r.succeeded]
        others = [r for r in results if not (r.sent and r.succeeded)]
        async with self.database.writer() as session:
            if successes:
                await self._record_successes(session, successes, now)
            if others:
                await self._record_others(session, others, now)
            await session.commit()

    async def _record_successes(
        self, session: AsyncSession, results: Sequence[AttemptResult], now: datetime
    ) -> None:
        by_code: dict[int, list[str]] = {}
        for result in results:
            by_code.setdefault(result.status_code or 200, []).append(result.job.delivery_id)
        existing: set[str] = set()  # a delivery deleted meanwhile (with its subscription) is gone
        for code, ids in by_code.items():
            existing.update(
                await session.scalars(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(ids))
                    .values(
                        status="succeeded",
                        attempt_count=WebhookDelivery.attempt_count + 1,
                        # a duplicate attempt (lease ran out meanwhile) keeps the first time
                        delivered_at=case(
                            (WebhookDelivery.status == "succeeded", WebhookDelivery.delivered_at),
                            else_=now,
                        ),
                        last_status_code=code,
                        last_error=None,
                    )
                    .returning(WebhookDelivery.id)
                    .execution_options(synchronize_session=False)
                )
            )
        kept = [r for r in results if r.job.delivery_id in existing]
        if not kept:
            return
        await session.execute(insert(WebhookAttempt), [_attempt_row(r) for r in kept])
        await session.execute(
            update(WebhookSubscription)
            .where(
                WebhookSubscription.id.in_({r.job.subscription_id for r in kept}),
                WebhookSubscription.failing_since.is_not(None),
            )
            .values(failing_since=None)
            .execution_options(synchronize_session=False)
        )

    async def _record_others(
        self, session: AsyncSession, results: Sequence[AttemptResult], now: datetime
    ) -> None:
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
                select(WebhookSubscription)
                .where(WebhookSubscription.id.in_({r.job.subscription_id for r in results}))
                .order_by(WebhookSubscription.id)
            )
        }
        disabled: dict[str, WebhookSubscription] = {}
        announcements: list[tuple[WebhookSubscription, EventData]] = []
        for result in results:
            job = result.job
            delivery = deliveries.get(job.delivery_id)
            if delivery is None:  # the subscription was deleted meanwhile
                continue
            subscription = subscriptions.get(job.subscription_id)
            if not result.sent:
                if delivery.status == "pending" and subscription is not None:
                    delivery.status = "failed"
                    delivery.last_error = not_sent_reason(subscription)
                continue
            session.add(WebhookAttempt(**_attempt_row(result)))
            delivery.attempt_count += 1
            if delivery.status == "succeeded":
                continue  # a duplicate attempt (lease ran out meanwhile): keep the success
            delivery.last_status_code = result.status_code
            delivery.last_error = result.error
            was_active = subscription is not None and subscription.is_active
            announced = subscription is not None and _announced(subscription)
            if self._settle(delivery, subscription, result, now) and subscription:
                disabled[subscription.id] = subscription
            if subscription is None or not was_active:
                continue
            # Built now, before a query autoflushes the subscription (and expires updated_at).
            if not subscription.is_active:
                announcements.append((subscription, _disabled_data(subscription)))
            elif not announced and _failing_for_an_hour(subscription, result.attempted_at):
                subscription.failing_notified_at = now
                announcements.append((subscription, _failing_data(subscription, result)))
        for subscription in disabled.values():
            await fail_pending_deliveries(session, subscription)
        for subscription, data in announcements:
            await record_event(
                session,
                subscription.organization_id,
                data,
                except_subscription_id=subscription.id,
            )

    def _settle(
        self,
        delivery: WebhookDelivery,
        subscription: WebhookSubscription | None,
        result: AttemptResult,
        now: datetime,
    ) -> bool:
        """Decide the delivery's next state; True when the subscription was just disabled."""
        if result.succeeded:
            delivery.status, delivery.delivered_at = "succeeded", now
            if subscription is not None and subscription.failing_since is not None:
                subscription.failing_since = None
            return False
        if subscription is None or not subscription.is_active:
            delivery.status = "failed"
            delivery.last_error = (result.error or f"HTTP {result.status_code}") + (
                "; the subscription is disabled"
            )
            return False
        if result.status_code == 410:
            delivery.status = "failed"
            _disable(subscription, now, "the target answered 410 Gone")
            return True
        last = subscription.last_failed_at
        if subscription.failing_since is None or (
            last is not None and result.attempted_at - last > STREAK_GAP
        ):
            subscription.failing_since = result.attempted_at  # a new run of failures
        subscription.last_failed_at = result.attempted_at
        if now - subscription.failing_since >= DISABLE_AFTER:
            delivery.status = "failed"
            _disable(subscription, now, "every delivery failed for 5 days")
            return True
        retries_done = delivery.attempt_count - 1
        if retries_done >= len(RETRY_SCHEDULE):
            delivery.status = "failed"
            delivery.last_error = (result.error or f"HTTP {result.status_code}") + (
                f"; gave up after {delivery.attempt_count} attempts"
            )
            return False
        # Retry-After is a floor: a target asking for 1 s cannot burn the schedule in seconds.
        delay = max(
            result.retry_after or timedelta(0), self._jittered(RETRY_SCHEDULE[retries_done])
        )
        delivery.status = "pending"
        delivery.next_attempt_at = now + delay
        self._note_due(delivery.next_attempt_at)
        return False

    def _jittered(self, delay: timedelta) -> timedelta:
        return delay * self.rng.uniform(1 - JITTER, 1 + JITTER)


def _attempt_row(result: AttemptResult) -> dict[str, Any]:
    job = result.job
    return {
        "id": new_id("att"),
        "organization_id": job.organization_id,
        "delivery_id": job.delivery_id,
        "subscription_id": job.subscription_id,
        "event_id": job.event_id,
        "event_type": job.event_type,
        "attempted_at": result.attempted_at,
        "status_code": result.status_code,
        "latency_ms": result.latency_ms,
        "succeeded": result.succeeded,
        "response_excerpt": result.excerpt,
        "error": result.error,
    }


def _announced(subscription: WebhookSubscription) -> bool:
    """Whether ``webhook.failing`` already announced the subscription's current run."""
    notified, since = subscription.failing_notified_at, subscription.failing_since
    return notified is not None and since is not None and notified >= since


def _failing_for_an_hour(subscription: WebhookSubscription, attempted_at: datetime) -> bool:
    since = subscription.failing_since
    return since is not None and attempted_at - since >= FAILING_AFTER


def _failing_data(subscription: WebhookSubscription, result: AttemptResult) -> EventData:
    assert subscription.failing_since is not None  # noqa: S101 - checked by the caller
    return WebhookFailingData(
        webhook=SubscriptionSchema.model_validate(subscription),
        failing_since=subscription.failing_since,
        last_error=result.error or f"HTTP {result.status_code}",
    )


def _disabled_data(subscription: WebhookSubscription) -> EventData:
    return WebhookDisabledData(
        webhook=SubscriptionSchema.model_validate(subscription),
        reason=subscription.disabled_reason or "disabled",
    )


def _disable(subscription: WebhookSubscription, now: datetime, reason: str) -> None:
    subscription.is_active = False
    subscription.disabled_at = now
    subscription.disabled_reason = reason
    log.warning("webhooks.subscription_disabled", subscription_id=subscription.id, reason=reason)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` pass."""
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        pass
