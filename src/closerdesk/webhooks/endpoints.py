"""``/v1/webhooks``: subscriptions, deliveries, test, redeliver, recover (docs/webhooks.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from sqlalchemy import select

from closerdesk.auth.dependencies import AdminKey, ReadKey
from closerdesk.config import Settings
from closerdesk.db import Session
from closerdesk.errors import (
    DeliveryNotFound,
    WebhookDisabled,
    WebhookNotFound,
    WebhookTargetNotAllowed,
    responses,
)
from closerdesk.kit.pagination import Cursor, Limit, paginate
from closerdesk.kit.schemas import Envelope, ListEnvelope, UTCDateTime
from closerdesk.kit.secrets import Box, SecretBox
from closerdesk.models import WebhookAttempt as AttemptRow
from closerdesk.models import WebhookDelivery as DeliveryRow
from closerdesk.models import WebhookSubscription as SubscriptionRow
from closerdesk.webhooks import service
from closerdesk.webhooks.dispatcher import Dispatcher
from closerdesk.webhooks.events import EventType
from closerdesk.webhooks.schemas import (
    PingResult,
    RecoverResult,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
    WebhookSubscriptionCreate,
    WebhookSubscriptionUpdate,
    WebhookSubscriptionWithSecret,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _allow_private(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return settings.webhook_allow_private_targets


def _with_secret(box: SecretBox, subscription: SubscriptionRow) -> WebhookSubscriptionWithSecret:
    """The subscription with its current secret in clear (it is stored sealed)."""
    shown = WebhookSubscription.model_validate(subscription).model_dump()
    return WebhookSubscriptionWithSecret(**shown, secret=service.shown_secret(box, subscription))


@router.post(
    "",
    response_model=Envelope[WebhookSubscriptionWithSecret],
    status_code=status.HTTP_201_CREATED,
    responses=responses(WebhookTargetNotAllowed),
)
async def create_webhook(
    body: WebhookSubscriptionCreate, request: Request, session: Session, auth: AdminKey, box: Box
) -> Envelope[WebhookSubscriptionWithSecret]:
    """Subscribe an https endpoint to event types. The answer carries the ``whsec_…`` signing
    secret: it is shown this once (it is stored encrypted)."""
    subscription = await service.create_subscription(
        session, auth.organization_id, body, allow_private=_allow_private(request), box=box
    )
    return Envelope(data=_with_secret(box, subscription))


@router.get("", response_model=ListEnvelope[WebhookSubscription])
async def list_webhooks(
    session: Session, auth: ReadKey, limit: Limit = 50, cursor: Cursor = None
) -> ListEnvelope[WebhookSubscription]:
    """The organization's subscriptions, oldest first (secrets are never listed)."""
    stmt = select(SubscriptionRow).where(SubscriptionRow.organization_id == auth.organization_id)
    page = await paginate(session, stmt, keys=[SubscriptionRow.id], limit=limit, cursor=cursor)
    return page.envelope([WebhookSubscription.model_validate(s) for s in page.items])


@router.get(
    "/{webhook_id}",
    response_model=Envelope[WebhookSubscription],
    responses=responses(WebhookNotFound),
)
async def get_webhook(
    webhook_id: str, session: Session, auth: ReadKey
) -> Envelope[WebhookSubscription]:
    """One subscription, with why it was disabled if it was."""
    subscription = await service.get_subscription(session, auth.organization_id, webhook_id)
    return Envelope(data=WebhookSubscription.model_validate(subscription))


@router.patch(
    "/{webhook_id}",
    response_model=Envelope[WebhookSubscription],
    responses=responses(WebhookNotFound, WebhookTargetNotAllowed),
)
async def update_webhook(
    webhook_id: str,
    body: WebhookSubscriptionUpdate,
    request: Request,
    session: Session,
    auth: AdminKey,
) -> Envelope[WebhookSubscription]:
    """Change the target, the event types or the description; ``is_active`` disables or
    re-enables it."""
    subscription = await service.update_subscription(
        session, auth.organization_id, webhook_id, body, allow_private=_allow_private(request)
    )
    return Envelope(data=WebhookSubscription.model_validate(subscription))


@router.delete(
    "/{webhook_id}",
    response_model=Envelope[dict[str, bool]],
    responses=responses(WebhookNotFound),
)
async def delete_webhook(
    webhook_id: str, session: Session, auth: AdminKey
) -> Envelope[dict[str, bool]]:
    """Remove the subscription with its deliveries and their attempts."""
    await service.delete_subscription(session, auth.organization_id, webhook_id)
    return Envelope(data={"deleted": True})


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=Envelope[WebhookSubscriptionWithSecret],
    responses=responses(WebhookNotFound),
)
async def rotate_webhook_secret(
    webhook_id: str, session: Session, auth: AdminKey, box: Box
) -> Envelope[WebhookSubscriptionWithSecret]:
    """A new secret, shown once. For 24 hours every delivery carries two signatures, one per
    secret, so receivers can switch without losing a message."""
    subscription = await service.rotate_secret(session, auth.organization_id, webhook_id, box=box)
    return Envelope(data=_with_secret(box, subscription))


@router.post(
    "/{webhook_id}/test",
    response_model=Envelope[PingResult],
    responses=responses(WebhookNotFound),
)
async def test_webhook(
    webhook_id: str, request: Request, session: Session, auth: AdminKey
) -> Envelope[PingResult]:
    """Send a ``ping`` event to this subscription now and answer what the target said and how
    long it took (ms). The attempt is recorded like any other."""
    await service.get_subscription(session, auth.organization_id, webhook_id)
    dispatcher: Dispatcher = request.app.state.dispatcher
    # Leased to this request from the start, so that no dispatcher sends it meanwhile; if
    # this process dies before sending, a dispatcher takes it when the lease runs out.
    event = await service.record_event(
        session,
        auth.organization_id,
        EventType.ping,
        {"webhook_id": webhook_id, "message": "closerdesk test ping"},
        only_subscription_id=webhook_id,
        due_at=dispatcher.clock() + dispatcher.lease,
    )
    delivery_id = await session.scalar(
        select(DeliveryRow.id).where(DeliveryRow.event_id == event.id)
    )
    await session.commit()
    if delivery_id is None:  # a disabled subscription gets no ping
        return Envelope(
            data=PingResult(
                delivery_id=None,
                success=False,
                status_code=None,
                latency_ms=0,
                error="the subscription is disabled; enable it with PATCH is_active=true",
            )
        )
    result = await dispatcher.deliver_now(delivery_id)
    if result is None:  # deleted (or re-queued by hand) between commit and claim
        return Envelope(
            data=PingResult(
                delivery_id=delivery_id,
                success=False,
                status_code=None,
                latency_ms=0,
                error="the ping was not sent: its delivery is no longer pending",
            )
        )
    return Envelope(
        data=PingResult(
            delivery_id=result.job.delivery_id,
            success=result.succeeded,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
        )
    )


@router.get(
    "/{webhook_id}/deliveries",
    response_model=ListEnvelope[WebhookDelivery],
    responses=responses(WebhookNotFound),
)
async def list_deliveries(
    webhook_id: str,
    session: Session,
    auth: ReadKey,
    status_: Annotated[
        str | None, Query(alias="status", pattern="^(pending|succeeded|failed)$")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListEnvelope[WebhookDelivery]:
    """Deliveries of this subscription, oldest first, each with every attempt: time, status
    code, latency (ms) and response excerpt (≤ 2 KB)."""
    await service.get_subscription(session, auth.organization_id, webhook_id)
    stmt = select(DeliveryRow).where(
        DeliveryRow.organization_id == auth.organization_id,
        DeliveryRow.subscription_id == webhook_id,
    )
    if status_ is not None:
        stmt = stmt.where(DeliveryRow.status == status_)
    page = await paginate(session, stmt, keys=[DeliveryRow.id], limit=limit, cursor=cursor)
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in page.items}
    if attempts:
        rows = await session.scalars(
            select(AttemptRow)
            .where(AttemptRow.delivery_id.in_(list(attempts)))
            .order_by(AttemptRow.id)
        )
        for row in rows:
            attempts[row.delivery_id].append(WebhookAttempt.model_validate(row))
    data = []
    for delivery in page.items:
        item = WebhookDelivery.model_validate(delivery)
        item.attempts = attempts[delivery.id]
        if delivery.status != "pending":
            item.next_attempt_at = None
        data.append(item)
    return page.envelope(data)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=Envelope[WebhookDelivery],
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(DeliveryNotFound, WebhookDisabled),
)
async def redeliver(
    delivery_id: str, session: Session, auth: AdminKey
) -> Envelope[WebhookDelivery]:
    """Queue a delivery again, due now, with the same ``webhook-id``."""
    delivery = await service.redeliver(session, auth.organization_id, delivery_id)
    return Envelope(data=WebhookDelivery.model_validate(delivery))


@router.post(
    "/{webhook_id}/recover",
    response_model=Envelope[RecoverResult],
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(WebhookNotFound, WebhookDisabled),
)
async def recover(
    webhook_id: str,
    session: Session,
    auth: AdminKey,
    since: Annotated[UTCDateTime, Query(description="Re-queue failed deliveries created since")],
) -> Envelope[RecoverResult]:
    """Queue again every failed delivery of this subscription created at or after ``since``
    (after an outage on your side, or after re-enabling a disabled subscription)."""
    count = await service.recover(session, auth.organization_id, webhook_id, since)
    return Envelope(data=RecoverResult(requeued=count))
