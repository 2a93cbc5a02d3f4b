"""Push notifications from the cloud calendars: channels, their renewal, and requested syncs.

``docs/calendars.md`` (the busy mirror): Google (``events.watch`` channels) and Microsoft Graph
(subscriptions) post to ``/hooks/google`` and ``/hooks/microsoft`` when a calendar changes;
Nylas posts its application-wide webhooks to ``/hooks/nylas``. A notification carries no
event, only "this calendar changed": it sets the connection's ``sync_requested_at`` and runs a
sync (the same incremental sync the worker runs every ``CLOSERDESK_CALENDAR_SYNC_SECONDS``,
which stays the safety net for a lost notification).

Channels are opened by the worker and renewed ``RENEW_BEFORE`` their expiry (a renewal opens a
new channel, stores it, then stops the old one). Each channel carries a secret the provider
echoes in every notification (Google's channel ``token``, Graph's ``clientState``):
``channel_token`` derives it from ``CLOSERDESK_SECRET_KEY`` and the connection id, so it needs
no storage and a notification for one connection cannot be forged from another's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.accounts import account_of
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarError,
    PushChannel,
    PushProvider,
)
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.time import utcnow
from closerdesk.models import CalendarConnection
from closerdesk.providers import Providers

log = structlog.get_logger(__name__)

PUSH_PROVIDERS = ("google", "microsoft")
"""Providers with per-calendar push channels (Nylas webhooks are per application)."""
RENEW_BEFORE = timedelta(days=1)
"""A channel is replaced this long before it expires."""
RETRY_AFTER_FAILURE = timedelta(minutes=15)
"""After a channel could not be opened, the next attempt waits this long."""


def channel_token(settings: Settings, connection_id: str) -> str:
    """The secret a provider echoes in every notification of ``connection_id``'s channel:
    HMAC-SHA256 of the connection id keyed with ``CLOSERDESK_SECRET_KEY`` (hex, 64 chars;
    Google allows 256 characters, Graph's ``clientState`` 128)."""
    key = settings.secret_key.encode()
    return hmac.new(key, f"push:{connection_id}".encode(), hashlib.sha256).hexdigest()


def token_matches(settings: Settings, connection_id: str, token: str | None) -> bool:
    """Constant-time check of a notification's token against the connection's."""
    # Bytes: compare_digest refuses non-ASCII str, and a forged header may carry anything.
    expected = channel_token(settings, connection_id).encode()
    return token is not None and hmac.compare_digest(expected, token.encode())


def hook_address(settings: Settings, provider: str) -> str:
    """``{public_base_url}/hooks/{provider}``: where the provider posts notifications."""
    return f"{settings.public_base_url.rstrip('/')}/hooks/{provider}"


async def request_sync(session: AsyncSession, connection_ids: Sequence[str]) -> None:
    """Mark connections as changed at the provider: the next sync round takes them whatever
    their age (``mirror.claim_due``); a sync that starts later clears the mark."""
    if not connection_ids:
        return
    await session.execute(
        update(CalendarConnection)
        .where(CalendarConnection.id.in_(list(connection_ids)))
        .values(sync_requested_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def connection_by_channel(
    session: AsyncSession, provider: str, channel_id: str
) -> CalendarConnection | None:
    """The connection whose current push channel is ``channel_id`` (None: an old or unknown
    channel, whose notifications are ignored)."""
    found: CalendarConnection | None = await session.scalar(
        select(CalendarConnection).where(
            CalendarConnection.push_channel_id == channel_id,
            CalendarConnection.provider == provider,
        )
    )
    return found


async def _claim_renewal(
    database: Database, connection_id: str, seen: datetime | None, until: datetime
) -> bool:
    """Take the renewal of a connection's channel unless another worker took it first: the
    expiry is moved to ``until`` only if it is still what this worker read (``seen``)."""
    async with database.writer() as session:
        unchanged = (
            CalendarConnection.push_expires_at.is_(None)
            if seen is None
            else CalendarConnection.push_expires_at == seen
        )
        result = await session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == connection_id, unchanged)
            .values(push_expires_at=until)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)


async def renew_channels(
    database: Database, providers: Providers, settings: Settings, *, limit: int = 20
) -> int:
    """Open or renew the push channels that are missing or expire within ``RENEW_BEFORE``;
    returns how many were opened. A failure is logged and retried after
    ``RETRY_AFTER_FAILURE``; it never turns the connection invalid (push is an optimisation;
    the next sync judges the credentials)."""
    if not settings.calendar_push:
        return 0
    now = utcnow()
    async with database.reader() as session:
        rows = (
            await session.scalars(
                select(CalendarConnection)
                .where(
                    CalendarConnection.provider.in_(PUSH_PROVIDERS),
                    CalendarConnection.status == "valid",
                    or_(
                        CalendarConnection.push_expires_at.is_(None),
                        CalendarConnection.push_expires_at <= now + RENEW_BEFORE,
                    ),
                )
                .order_by(CalendarConnection.push_expires_at.nulls_first())
                .limit(limit)
            )
        ).all()
        due = []
        for row in rows:
            try:
                account = account_of(row, providers.secrets)
            except Exception:  # one unreadable connection must not stop the others
                log.exception("calendar.push_account_unreadable", connection_id=row.id)
                continue
            calendar = providers.calendars(session, row.provider)
            due.append(
                (account, calendar, row.push_expires_at, row.push_channel_id, row.push_resource_id)
            )
        await session.commit()
    opened = 0
    for account, calendar, seen, old_id, old_resource in due:
        connection_id = account.connection_id
        retry_at = now + RENEW_BEFORE + RETRY_AFTER_FAILURE
        if not isinstance(calendar, PushProvider):
            continue
        if not await _claim_renewal(database, connection_id, seen, retry_at):
            continue  # another worker renews it
        try:
            channel = await calendar.watch(
                account,
                hook_address(settings, account.provider),
                channel_token(settings, connection_id),
            )
        except CalendarError as exc:
            # Push is an optimisation: a failure here never turns the calendar invalid (its
            # next sync does that if the credentials are really refused); retried later.
            log.warning("calendar.watch_failed", connection_id=connection_id, error=str(exc))
            continue
        stored = await _store_channel(
            database, connection_id, account.calendar_id, retry_at, channel
        )
        if not stored:  # the connection changed meanwhile: this channel is nobody's
            await _stop_quietly(calendar, account, channel)
            continue
        opened += 1
        if old_id is not None and old_id != channel.channel_id:
            await _stop_quietly(calendar, account, PushChannel(old_id, old_resource or "", now))
    return opened


async def _stop_quietly(
    calendar: PushProvider, account: CalendarAccount, channel: PushChannel
) -> None:
    try:
        await calendar.unwatch(account, channel)
    except CalendarError as exc:  # it expires on its own; its notifications are ignored
        log.info("calendar.unwatch_failed", connection_id=account.connection_id, error=str(exc))


async def _store_channel(
    database: Database,
    connection_id: str,
    calendar_id: str,
    claimed: datetime,
    channel: PushChannel,
) -> bool:
    """Keep the new channel, unless the connection changed while it was opened (reconnected to
    another calendar, disconnected, renewed elsewhere): then False, and the caller stops it."""
    async with database.writer() as session:
        result = await session.execute(
            update(CalendarConnection)
            .where(
                CalendarConnection.id == connection_id,
                CalendarConnection.calendar_id == calendar_id,
                CalendarConnection.push_expires_at == claimed,
            )
            .values(
                push_channel_id=channel.channel_id,
                push_resource_id=channel.resource_id or None,
                push_expires_at=channel.expires_at,
            )
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        return bool(getattr(result, "rowcount", 0) == 1)


async def expire_channel(session: AsyncSession, connection_id: str) -> None:
    """The provider ended or wants renewed a channel (Graph ``subscriptionRemoved``,
    ``reauthorizationRequired``): the worker's next round opens a new one."""
    await session.execute(
        update(CalendarConnection)
        .where(CalendarConnection.id == connection_id)
        .values(push_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def channel_of(connection: CalendarConnection) -> PushChannel | None:
    """The connection's current push channel, or None."""
    if connection.push_channel_id is None:
        return None
    return PushChannel(
        connection.push_channel_id,
        connection.push_resource_id or "",
        connection.push_expires_at or utcnow(),
    )


async def stop_channel(
    providers: Providers, session: AsyncSession, account: CalendarAccount, channel: PushChannel
) -> None:
    """Stop a disconnected calendar's channel, best effort: a channel left open only posts
    notifications that are ignored, until it expires."""
    calendar = providers.calendars(session, account.provider)
    if not isinstance(calendar, PushProvider):
        return
    try:
        await calendar.unwatch(account, channel)
    except CalendarError as exc:
        log.info("calendar.unwatch_failed", connection_id=account.connection_id, error=str(exc))
