"""Webhooks (docs/webhooks.md): record events into the outbox, manage subscriptions and deliveries.

``record_event`` runs in the transaction of the change that caused the event and writes, in
that same transaction, one delivery per matching active subscription: an event is delivered
if and only if its change committed. The dispatcher (``dispatcher.py``) sends the deliveries;
whatever queues deliveries due now calls ``outbox_written`` so that dispatchers wake up when
the transaction commits (``wakeup.py``).

Signing secrets are stored as Fernet tokens (``kit/secrets.py``): ``create_subscription`` and
``rotate_secret`` seal them, ``shown_secret`` and ``signing_secrets`` open them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.errors import (
    DeliveryNotFound,
    ValidationFailed,
    WebhookDisabled,
    WebhookNotFound,
    WebhookTargetNotAllowed,
)
from closerdesk.kit.ids import new_id
from closerdesk.kit.secrets import Resealed, SecretBox, reseal_column
from closerdesk.kit.time import utcnow
from closerdesk.models import WebhookDelivery, WebhookEvent, WebhookSubscription
from closerdesk.webhooks.events import SUBSCRIBABLE, EventType, subscribed
from closerdesk.webhooks.payloads import EVENT_MODELS, EventData
from closerdesk.webhooks.schemas import WebhookSubscriptionCreate, WebhookSubscriptionUpdate
from closerdesk.webhooks.signing import new_secret
from closerdesk.webhooks.targets import TargetNotAllowed, resolve_target
from closerdesk.webhooks.wakeup import outbox_written

__all__ = ["SUBSCRIBABLE", "EventType", "record_event"]

ROTATION_OVERLAP = timedelta(hours=24)


async def record_event(
    session: AsyncSession,
    organization_id: str,
    data: EventData,
    *,
    only_subscription_id: str | None = None,
    except_subscription_id: str | None = None,
    due_at: datetime | None = None,
) -> WebhookEvent:
    """Write one outbox row and its deliveries; they commit or roll back with the change.

    ``data`` is the event's typed ``data`` (``webhooks/payloads.py``; its class says the event
    type). The stored payload is the exact body partners receive, an ``EventEnvelope``:
    ``{"id": "msg_…", "event", "created_at", "organization_id", "data"}``.
    ``only_subscription_id`` addresses one subscription (the ``ping`` of a test), and only while
    it is active; ``except_subscription_id`` leaves one out (health events about it go to the
    organization's other subscriptions); ``due_at`` delays the first attempt (the test endpoint
    leases its ping to itself so that no dispatcher sends it meanwhile).

    A subscription lists the type, or ``"*"`` for every type. A disabled subscription that
    does gets a ``failed`` delivery that is not sent (nothing is dropped silently: ``recover``
    sends it after re-enabling).
    """
    event_type = data.event_type
    now = utcnow()
    event_id = new_id("msg")
    envelope = EVENT_MODELS[event_type](
        id=event_id,
        event=event_type.value,
        created_at=now,
        organization_id=organization_id,
        data=data,
    )
    event = WebhookEvent(
        id=event_id,
        organization_id=organization_id,
        type=event_type.value,
        created_at=now,
        payload=envelope.model_dump(mode="json"),
    )
    session.add(event)
    stmt = select(WebhookSubscription).where(WebhookSubscription.organization_id == organization_id)
    if only_subscription_id is not None:
        stmt = stmt.where(
            WebhookSubscription.id == only_subscription_id,
            WebhookSubscription.is_active.is_(True),
        )
    if except_subscription_id is not None:
        stmt = stmt.where(WebhookSubscription.id != except_subscription_id)
    for subscription in await session.scalars(stmt):
        if only_subscription_id is None and not subscribed(subscription.event_types, event_type):
            continue
        active = subscription.is_active
        if active and due_at is None:
            outbox_written(session)  # dispatchers are woken when this commits
        session.add(
            WebhookDelivery(
                id=new_id("dlv"),
                organization_id=organization_id,
                subscription_id=subscription.id,
                event_id=event_id,
                event_type=event_type.value,
                status="pending" if active else "failed",
                attempt_count=0,
                next_attempt_at=due_at or now,
                last_error=None if active else not_sent_reason(subscription),
            )
        )
    return event


def not_sent_reason(subscription: WebhookSubscription) -> str:
    """``last_error`` of a delivery failed without sending because its subscription is off."""
    why = subscription.disabled_reason or "disabled"
    return f"not sent: the subscription is disabled ({why}); recover it after re-enabling"


async def fail_pending_deliveries(session: AsyncSession, subscription: WebhookSubscription) -> int:
    """Mark every pending delivery of a subscription being disabled ``failed`` (not sent).

    ``recover`` queues them again once the subscription is re-enabled.
    """
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == subscription.id,
            WebhookDelivery.status == "pending",
        )
        .values(status="failed", last_error=not_sent_reason(subscription), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- subscriptions -------------------------------------------------------------------------------
async def _check_target(url: str, allow_private: bool) -> None:
    try:
        await resolve_target(url, allow_private=allow_private)
    except TargetNotAllowed as exc:
        raise WebhookTargetNotAllowed(
            f"This target URL cannot receive webhooks: {exc}.",
            details=[{"field": "target_url", "message": str(exc)}],
        ) from exc


async def get_subscription(
    session: AsyncSession, organization_id: str, subscription_id: str, *, lock: bool = False
) -> WebhookSubscription:
    """Raises ``WebhookNotFound`` (404) when missing or of another organization."""
    stmt = select(WebhookSubscription).where(
        WebhookSubscription.organization_id == organization_id,
        WebhookSubscription.id == subscription_id,
    )
    if lock:
        # NO KEY UPDATE: deliveries inserted meanwhile (their FK takes KEY SHARE) go on.
        stmt = stmt.with_for_update(key_share=True)
    subscription = await session.scalar(stmt)
    if subscription is None:
        raise WebhookNotFound()
    return subscription


async def create_subscription(
    session: AsyncSession,
    organization_id: str,
    body: WebhookSubscriptionCreate,
    *,
    allow_private: bool,
    box: SecretBox,
) -> WebhookSubscription:
    """A new subscription with a fresh secret, stored sealed in ``box`` (``shown_secret``
    answers it in clear, once). Raises ``WebhookTargetNotAllowed`` (400) for a non-https or
    private target."""
    await _check_target(body.target_url, allow_private)
    subscription = WebhookSubscription(
        id=new_id("wh"),
        organization_id=organization_id,
        target_url=body.target_url,
        event_types=list(body.event_types),
        description=body.description,
        secret=box.encrypt(new_secret()),
        is_active=True,
    )
    session.add(subscription)
    await session.flush()
    return subscription


async def update_subscription(
    session: AsyncSession,
    organization_id: str,
    subscription_id: str,
    body: WebhookSubscriptionUpdate,
    *,
    allow_private: bool,
) -> WebhookSubscription:
    """Raises ``WebhookNotFound`` (404), ``WebhookTargetNotAllowed`` (400)."""
    changes = body.model_dump(exclude_unset=True)
    for name in ("target_url", "event_types", "is_active"):
        if name in changes and changes[name] is None:
            raise ValidationFailed.field(name, "cannot be null")
    if "target_url" in changes:  # DNS before any lock is taken
        await _check_target(changes["target_url"], allow_private)
    subscription = await get_subscription(session, organization_id, subscription_id, lock=True)
    if changes.get("is_active") is True and not subscription.is_active:
        subscription.disabled_at = None
        subscription.disabled_reason = None
        subscription.failing_since = None
    disabling = changes.get("is_active") is False and subscription.is_active
    if disabling:
        subscription.disabled_at = utcnow()
        subscription.disabled_reason = "disabled through the API"
    for name, value in changes.items():
        setattr(subscription, name, value)
    await session.flush()
    if disabling:
        await fail_pending_deliveries(session, subscription)
    return subscription


async def delete_subscription(
    session: AsyncSession, organization_id: str, subscription_id: str
) -> None:
    """Remove the subscription with its deliveries and attempts. Raises ``WebhookNotFound``."""
    subscription = await get_subscription(session, organization_id, subscription_id, lock=True)
    await session.delete(subscription)
    await session.flush()


async def rotate_secret(
    session: AsyncSession, organization_id: str, subscription_id: str, *, box: SecretBox
) -> WebhookSubscription:
    """A new secret (sealed in ``box``); the old one keeps signing (both signatures sent) for
    24 hours. Raises ``WebhookNotFound`` (404)."""
    subscription = await get_subscription(session, organization_id, subscription_id, lock=True)
    subscription.previous_secret = subscription.secret  # still sealed: it moves as it is
    subscription.previous_secret_expires_at = utcnow() + ROTATION_OVERLAP
    subscription.secret = box.encrypt(new_secret())
    await session.flush()
    return subscription


def shown_secret(box: SecretBox, subscription: WebhookSubscription) -> str:
    """The subscription's current ``whsec_…`` secret in clear (answered on create and rotate).

    Raises ``UndecryptableSecret`` when no configured key opens it."""
    return box.decrypt(subscription.secret, what="the webhook signing secret")


def signing_secrets(
    box: SecretBox,
    secret: str,
    previous_secret: str | None,
    previous_expires_at: datetime | None,
    now: datetime,
) -> list[str]:
    """The clear secrets that sign a delivery at ``now``, from the stored tokens: the current
    one, plus the previous one during its 24 h overlap after a rotation.

    Raises ``UndecryptableSecret`` when no configured key opens a token needed."""
    secrets_ = [box.decrypt(secret, what="the signing secret")]
    if previous_secret and previous_expires_at is not None and now < previous_expires_at:
        secrets_.append(box.decrypt(previous_secret, what="the previous signing secret"))
    return secrets_


async def reseal_secrets(session: AsyncSession, box: SecretBox) -> Resealed:
    """Re-encrypt every stored signing secret (current and previous) under the first key
    (``closerdesk keys rotate``). Raises ``UndecryptableSecret`` naming the subscription."""
    current = await reseal_column(session, box, WebhookSubscription, "secret", "the signing secret")
    previous = await reseal_column(
        session, box, WebhookSubscription, "previous_secret", "the previous signing secret"
    )
    return current + previous


# --- deliveries ----------------------------------------------------------------------------------
async def get_delivery(
    session: AsyncSession, organization_id: str, delivery_id: str
) -> WebhookDelivery:
    """Raises ``DeliveryNotFound`` (404) when missing or of another organization."""
    delivery = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.organization_id == organization_id,
            WebhookDelivery.id == delivery_id,
        )
    )
    if delivery is None:
        raise DeliveryNotFound()
    return delivery


async def redeliver(
    session: AsyncSession, organization_id: str, delivery_id: str
) -> WebhookDelivery:
    """Queue the delivery again, due now, whatever its status (same ``webhook-id``), with a
    fresh retry schedule (``attempt_count`` restarts; every attempt stays in its history).

    Raises ``DeliveryNotFound`` (404), ``WebhookDisabled`` (409)."""
    delivery = await get_delivery(session, organization_id, delivery_id)
    await _require_active(session, organization_id, delivery.subscription_id)
    delivery.status = "pending"
    delivery.attempt_count = 0
    delivery.next_attempt_at = utcnow()
    await session.flush()
    outbox_written(session)
    return delivery


async def _require_active(
    session: AsyncSession, organization_id: str, subscription_id: str
) -> None:
    if not (await get_subscription(session, organization_id, subscription_id)).is_active:
        raise WebhookDisabled()


async def recover(
    session: AsyncSession, organization_id: str, subscription_id: str, since: datetime
) -> int:
    """Queue again every failed delivery of the subscription created at or after ``since``,
    each with a fresh retry schedule. Raises ``WebhookNotFound`` (404), ``WebhookDisabled``
    (409: they would only fail again unsent)."""
    await _require_active(session, organization_id, subscription_id)
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.organization_id == organization_id,
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.status == "failed",
            WebhookDelivery.created_at >= since,
        )
        .values(status="pending", attempt_count=0, next_attempt_at=utcnow(), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        outbox_written(session)
    return count
