"""Retention (docs/idempotency.md, "Retention"): delivered webhook deliveries and their
attempts older than ``CLOSERDESK_RETENTION_DAYS`` and expired idempotency keys are pruned in
bounded batches; a pending or failed delivery never is. Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import select

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import (
    IdempotencyKey,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from closerdesk.providers import Providers
from closerdesk.retention import prune
from closerdesk.webhooks.dispatcher import Dispatcher
from closerdesk.worker import CalendarWorker, RetentionWorker, run_background
from tests.factories import Org

DAY = timedelta(days=1)


async def _subscription(database: Database, org: Org) -> str:
    sub_id = new_id("wh")
    async with database.writer() as s:
        s.add(
            WebhookSubscription(
                id=sub_id,
                organization_id=org.id,
                target_url="https://hooks.example.com/in",
                event_types=["call.booked"],
                secret="not-used",
                is_active=True,
            )
        )
        await s.commit()
    return sub_id


async def _delivery(
    database: Database,
    org: Org,
    sub_id: str,
    *,
    status: str,
    age: timedelta,
    attempts: int = 2,
) -> str:
    """A delivery (and its attempts) whose last attempt was ``age`` ago."""
    at = utcnow() - age
    event_id, delivery_id = new_id("evt"), new_id("dlv")
    async with database.writer() as s:
        s.add(
            WebhookEvent(
                id=event_id, organization_id=org.id, type="call.booked", payload={}, created_at=at
            )
        )
        await s.flush()
        s.add(
            WebhookDelivery(
                id=delivery_id,
                organization_id=org.id,
                subscription_id=sub_id,
                event_id=event_id,
                event_type="call.booked",
                status=status,
                attempt_count=attempts,
                next_attempt_at=at,
                delivered_at=at if status == "succeeded" else None,
            )
        )
        await s.flush()
        for _ in range(attempts):
            s.add(
                WebhookAttempt(
                    id=new_id("att"),
                    organization_id=org.id,
                    delivery_id=delivery_id,
                    subscription_id=sub_id,
                    event_id=event_id,
                    event_type="call.booked",
                    attempted_at=at,
                    status_code=200,
                    latency_ms=5,
                    succeeded=status == "succeeded",
                )
            )
        await s.commit()
    return delivery_id


async def _key(database: Database, org: Org, key: str, expires_at: datetime) -> None:
    async with database.writer() as s:
        s.add(
            IdempotencyKey(
                id=new_id("idem"),
                organization_id=org.id,
                key=key,
                fingerprint="0" * 64,
                applied=True,
                locked_until=expires_at - timedelta(hours=24),
                response_status=201,
                response_body="{}",
                created_at=expires_at - timedelta(hours=24),
                expires_at=expires_at,
            )
        )
        await s.commit()


async def _ids(database: Database, column: object) -> set[str]:
    async with database.reader() as s:
        return set(await s.scalars(select(column)))  # type: ignore[call-overload]


async def test_old_delivered_deliveries_and_their_attempts_go_undelivered_ones_stay(
    database: Database, settings: Settings, org: Org
) -> None:
    sub = await _subscription(database, org)
    old = [await _delivery(database, org, sub, status="succeeded", age=31 * DAY) for _ in range(5)]
    recent = await _delivery(database, org, sub, status="succeeded", age=29 * DAY)
    pending = await _delivery(database, org, sub, status="pending", age=90 * DAY)
    failed = await _delivery(database, org, sub, status="failed", age=90 * DAY)

    pruned = await prune(database, settings, batch=2)  # three batches: 2, 2, 1

    assert (pruned.deliveries, pruned.attempts) == (5, 10)
    assert await _ids(database, WebhookDelivery.id) == {recent, pending, failed}
    async with database.reader() as s:
        left = set(await s.scalars(select(WebhookAttempt.delivery_id)))
    assert left == {recent, pending, failed}
    assert not set(old) & left
    assert (await prune(database, settings)).deliveries == 0


async def test_the_retention_days_setting_is_honoured(
    database: Database, settings: Settings, org: Org
) -> None:
    sub = await _subscription(database, org)
    kept = await _delivery(database, org, sub, status="succeeded", age=5 * DAY)
    short = settings.model_copy(update={"retention_days": 3})
    assert (await prune(database, settings)).deliveries == 0
    assert (await prune(database, short)).deliveries == 1
    assert kept not in await _ids(database, WebhookDelivery.id)


async def test_a_round_is_bounded(database: Database, settings: Settings, org: Org) -> None:
    sub = await _subscription(database, org)
    for _ in range(5):
        await _delivery(database, org, sub, status="succeeded", age=40 * DAY, attempts=1)
    first = await prune(database, settings, batch=2, max_batches=1)
    assert first.deliveries == 2
    assert len(await _ids(database, WebhookDelivery.id)) == 3
    rest = await prune(database, settings, batch=2, max_batches=5)
    assert rest.deliveries == 3


async def test_expired_idempotency_keys_go_live_ones_stay(
    database: Database, settings: Settings, org: Org
) -> None:
    now = utcnow()
    await _key(database, org, "expired", now - timedelta(minutes=1))
    await _key(database, org, "live", now + timedelta(hours=1))
    pruned = await prune(database, settings)
    assert pruned.idempotency_keys == 1
    assert await _ids(database, IdempotencyKey.key) == {"live"}


async def test_the_running_worker_prunes(
    database: Database, settings: Settings, providers: Providers, org: Org
) -> None:
    sub = await _subscription(database, org)
    old = await _delivery(database, org, sub, status="succeeded", age=60 * DAY)
    await _key(database, org, "expired", utcnow() - timedelta(minutes=1))
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_background(
            stop,
            Dispatcher(database, settings, poll_interval=0.05),
            CalendarWorker(database, settings, providers, poll_interval=0.05),
            RetentionWorker(database, settings, interval=0.05),
        )
    )
    try:
        # A round prunes table after table, each in its own transaction: wait for both.
        for _ in range(200):
            deliveries = await _ids(database, WebhookDelivery.id)
            keys = await _ids(database, IdempotencyKey.key)
            if old not in deliveries and not keys:
                break
            await asyncio.sleep(0.02)
        assert old not in deliveries
        assert keys == set()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
