"""``/hooks/{google,microsoft,nylas}``: the cloud calendars tell closerdesk a calendar changed.

``docs/calendars.md`` (push notifications). A notification names a channel (Google), a
subscription (Microsoft Graph) or a grant (Nylas), never the change itself: closerdesk checks
that it is genuine, marks the connection for a sync (``calendars/push.py``) and runs that sync
right after answering, so the busy mirror follows the calendar within seconds. No API key:
each provider proves itself with its own secret (the channel token, Graph's ``clientState``,
the ``X-Nylas-Signature`` HMAC). Notifications for unknown or replaced channels are
acknowledged and ignored, so the provider does not retry them.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, BackgroundTasks, Header, Query, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from closerdesk.calendars import google, microsoft, mirror, nylas, push
from closerdesk.calendars.connections import mark_invalid
from closerdesk.config import Settings
from closerdesk.db import Session
from closerdesk.errors import (
    CalendarProviderNotConfigured,
    NotificationRejected,
    ValidationFailed,
    responses,
)
from closerdesk.kit.schemas import Envelope, Schema
from closerdesk.models import CalendarConnection
from closerdesk.providers import ProvidersDep

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/hooks", tags=["push notifications"])

NYLAS_GRANT_GONE = ("grant.expired", "grant.deleted")
"""Nylas webhook types that end a grant: its connections turn invalid."""


class Received(Schema):
    """What closerdesk did with a notification: ``syncs`` connections will sync now."""

    received: bool = True
    syncs: int = 0


def _schedule_syncs(
    request: Request, tasks: BackgroundTasks, providers: ProvidersDep, ids: list[str]
) -> None:
    settings: Settings = request.app.state.settings
    database = request.app.state.database
    for connection_id in dict.fromkeys(ids):
        tasks.add_task(mirror.sync_now, database, providers, settings, connection_id)


@router.post(
    "/google",
    response_model=Envelope[Received],
    responses=responses(ValidationFailed, NotificationRejected),
)
async def google_notification(
    request: Request, session: Session, providers: ProvidersDep, tasks: BackgroundTasks
) -> Envelope[Received]:
    """A Google Calendar push notification (``X-Goog-Channel-ID``, ``X-Goog-Channel-Token``,
    ``X-Goog-Resource-State``; Google Calendar API: push notifications). ``sync`` (the
    channel opened) needs nothing; ``exists``/``not_exists`` sync the calendar. 403
    ``NOTIFICATION_REJECTED`` when the channel's token does not match."""
    notice = google.parse_notification(request.headers)
    if notice is None:
        raise ValidationFailed("Not a Google Calendar notification (no X-Goog-Channel-ID).")
    connection = await push.connection_by_channel(session, "google", notice.channel_id)
    if connection is None:
        log.info("push.unknown_channel", provider="google", channel_id=notice.channel_id)
        return Envelope(data=Received())
    settings: Settings = request.app.state.settings
    if not push.token_matches(settings, connection.id, notice.token):
        raise NotificationRejected("The channel token does not match.")
    if notice.resource_state == "sync":
        return Envelope(data=Received())
    await push.request_sync(session, [connection.id])
    await session.commit()
    _schedule_syncs(request, tasks, providers, [connection.id])
    return Envelope(data=Received(syncs=1))


@router.post(
    "/microsoft",
    response_model=Envelope[Received],
    status_code=202,
    responses={
        200: {
            "description": "The validation handshake: the token echoed as text/plain",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **responses(ValidationFailed, NotificationRejected),
    },
)
async def microsoft_notification(
    request: Request,
    session: Session,
    providers: ProvidersDep,
    tasks: BackgroundTasks,
    validation_token: Annotated[str | None, Query(alias="validationToken")] = None,
) -> Response | Envelope[Received]:
    """Microsoft Graph change and lifecycle notifications (Microsoft Graph: change
    notifications through webhooks). With ``validationToken`` (Graph checking the URL when a
    subscription is made) the token is echoed as ``text/plain``. Each notification's
    ``clientState`` must match its subscription's; ``reauthorizationRequired`` and
    ``subscriptionRemoved`` make the worker open a new subscription, ``missed`` and changes
    sync the calendar. 403 ``NOTIFICATION_REJECTED`` when no notification is genuine."""
    if validation_token is not None:
        return PlainTextResponse(validation_token, status_code=200)
    try:
        notices = microsoft.parse_notifications(await request.body())
    except ValueError as exc:
        raise ValidationFailed(f"Not a Microsoft Graph notification: {exc}") from exc
    settings: Settings = request.app.state.settings
    to_sync: list[str] = []
    genuine = 0
    for notice in notices:
        connection = await push.connection_by_channel(session, "microsoft", notice.subscription_id)
        if connection is None:
            genuine += 1  # an old subscription: acknowledged, ignored
            continue
        if not push.token_matches(settings, connection.id, notice.client_state):
            continue
        genuine += 1
        if notice.lifecycle_event in ("reauthorizationRequired", "subscriptionRemoved"):
            await push.expire_channel(session, connection.id)
        if notice.lifecycle_event != "reauthorizationRequired":
            to_sync.append(connection.id)
    if notices and not genuine:
        raise NotificationRejected("No notification carries its subscription's clientState.")
    await push.request_sync(session, to_sync)
    await session.commit()
    _schedule_syncs(request, tasks, providers, to_sync)
    return Envelope(data=Received(syncs=len(set(to_sync))))


@router.get(
    "/nylas",
    response_model=None,
    responses={
        200: {
            "description": "The challenge echoed as text/plain",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **responses(ValidationFailed),
    },
)
async def nylas_challenge(challenge: str) -> PlainTextResponse:
    """Nylas's verification of a new webhook (Nylas v3: webhooks, the ``challenge``
    handshake): the ``challenge`` parameter echoed as the plain body."""
    return PlainTextResponse(challenge)


NYLAS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A Nylas v3 notification (CloudEvents-style envelope)",
                    "properties": {
                        "specversion": {"type": "string"},
                        "type": {"type": "string", "examples": ["event.updated"]},
                        "id": {"type": "string"},
                        "time": {"type": "integer"},
                        "data": {"type": "object"},
                    },
                }
            }
        },
    }
}
"""The body ``/hooks/nylas`` takes, for the OpenAPI document (it reads the raw bytes, which
the signature covers)."""


@router.post(
    "/nylas",
    response_model=Envelope[Received],
    responses=responses(ValidationFailed, CalendarProviderNotConfigured, NotificationRejected),
    openapi_extra=NYLAS_BODY,
)
async def nylas_notification(
    request: Request,
    session: Session,
    providers: ProvidersDep,
    tasks: BackgroundTasks,
    x_nylas_signature: Annotated[str | None, Header()] = None,
) -> Envelope[Received]:
    """A Nylas v3 webhook, signed with ``X-Nylas-Signature`` (hex HMAC-SHA256 of the body with
    ``CLOSERDESK_NYLAS_WEBHOOK_SECRET``). ``event.*`` syncs the grant's calendar;
    ``grant.expired``/``grant.deleted`` turn its connections invalid (and fire
    ``calendar.connection_invalid``). 403 ``NOTIFICATION_REJECTED`` for a bad signature."""
    settings: Settings = request.app.state.settings
    if settings.nylas_webhook_secret is None:
        raise CalendarProviderNotConfigured(
            "Nylas webhooks are not configured: set CLOSERDESK_NYLAS_WEBHOOK_SECRET"
        )
    body = await request.body()
    secret = settings.nylas_webhook_secret.get_secret_value()
    if not nylas.verify_signature(secret, body, x_nylas_signature):
        raise NotificationRejected("The X-Nylas-Signature does not match the body.")
    try:
        notice = nylas.parse_notification(body)
    except ValueError as exc:
        # Signed, so Nylas sent it: acknowledged (a webhook that keeps failing is disabled).
        log.info("push.nylas_unreadable", error=str(exc))
        return Envelope(data=Received())
    if not notice.grant_id:
        return Envelope(data=Received())
    connections = (
        await session.scalars(
            select(CalendarConnection).where(
                CalendarConnection.provider == "nylas",
                CalendarConnection.provider_grant_id == notice.grant_id,
            )
        )
    ).all()
    if notice.type in NYLAS_GRANT_GONE:
        for connection in connections:
            await mark_invalid(
                session,
                connection.organization_id,
                connection.id,
                f"Nylas reports the grant {notice.type.removeprefix('grant.')}",
            )
        await session.commit()
        return Envelope(data=Received())
    if not notice.type.startswith("event."):
        return Envelope(data=Received())
    ids = [
        c.id
        for c in connections
        if c.status == "valid" and (notice.calendar_id in (None, c.calendar_id))
    ]
    await push.request_sync(session, ids)
    await session.commit()
    _schedule_syncs(request, tasks, providers, ids)
    return Envelope(data=Received(syncs=len(ids)))
