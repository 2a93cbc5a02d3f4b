"""Retention: the worker prunes what no one needs any more (docs/idempotency.md, "Retention").

* delivered webhook deliveries (``status = succeeded``) whose ``delivered_at`` is older than
  ``CLOSERDESK_RETENTION_DAYS`` (default 30), with their attempts; a pending or failed delivery
  is never pruned, however old (it can still be delivered or redelivered);
* idempotency keys past their 24 h (``expires_at``);
* slot reservations past their ``expires_at``, consumed or not (docs/sales-floor.md, "Slot
  reservations"): an expired one holds nothing any more, and a consumed one's time is held by
  its call; until it expires, booking with it again still answers ``RESERVATION_CONSUMED``.

Each batch is one short transaction of at most ``batch`` rows, and a round stops after
``max_batches`` batches per kind, so pruning never holds a lock for long (on SQLite the write
lock of the whole database); the next round goes on where this one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.time import utcnow
from closerdesk.models import IdempotencyKey, SlotReservation, WebhookAttempt, WebhookDelivery

BATCH = 500
"""Rows per transaction."""
MAX_BATCHES = 20
"""Transactions per kind and round."""


@dataclass(frozen=True)
class Pruned:
    """Rows deleted by one round."""

    deliveries: int = 0
    attempts: int = 0
    idempotency_keys: int = 0
    reservations: int = 0


async def prune(
    database: Database,
    settings: Settings,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> Pruned:
    """One round of pruning; see the module docstring. Returns what it deleted."""
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.retention_days)
    deliveries = attempts = keys = 0
    for _ in range(max_batches):
        async with database.writer() as session:
            ids = list(
                await session.scalars(
                    select(WebhookDelivery.id)
                    .where(
                        WebhookDelivery.status == "succeeded",
                        WebhookDelivery.delivered_at < cutoff,
                    )
                    .order_by(WebhookDelivery.delivered_at)
                    .limit(batch)
                )
            )
            if ids:
                gone = await session.execute(
                    delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids))
                )
                attempts += gone.rowcount  # type: ignore[attr-defined]
                gone = await session.execute(
                    delete(WebhookDelivery).where(
                        WebhookDelivery.id.in_(ids), WebhookDelivery.status == "succeeded"
                    )
                )
                deliveries += gone.rowcount  # type: ignore[attr-defined]
                await session.commit()
        if len(ids) < batch:
            break
    for _ in range(max_batches):
        async with database.writer() as session:
            ids = list(
                await session.scalars(
                    select(IdempotencyKey.id).where(IdempotencyKey.expires_at <= now).limit(batch)
                )
            )
            if ids:
                gone = await session.execute(
                    delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids))
                )
                keys += gone.rowcount  # type: ignore[attr-defined]
                await session.commit()
        if len(ids) < batch:
            break
    reservations = 0
    for _ in range(max_batches):
        async with database.writer() as session:
            ids = list(
                await session.scalars(
                    select(SlotReservation.id)
                    .where(SlotReservation.expires_at <= now)
                    .order_by(SlotReservation.expires_at)
                    .limit(batch)
                )
            )
            if ids:
                gone = await session.execute(
                    delete(SlotReservation).where(
                        SlotReservation.id.in_(ids), SlotReservation.expires_at <= now
                    )
                )
                reservations += gone.rowcount  # type: ignore[attr-defined]
                await session.commit()
        if len(ids) < batch:
            break
    return Pruned(
        deliveries=deliveries,
        attempts=attempts,
        idempotency_keys=keys,
        reservations=reservations,
    )
