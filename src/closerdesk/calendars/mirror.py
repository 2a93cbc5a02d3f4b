"""The busy mirror: each external calendar's foreign busy time, kept in ``calendar_busy``.

``docs/calendars.md`` (the busy mirror): slot queries read only these rows, so they cost what
they cost with the built-in calendar; a sync asks the provider what changed since its last
``sync_state`` (CalDAV: an RFC 6578 sync token, or the ctag and etags) and applies it. Every
connection is synced at least every ``CLOSERDESK_CALENDAR_SYNC_SECONDS`` by the worker.

The mirror covers a window from a day ago to ``CLOSERDESK_CALENDAR_MIRROR_DAYS`` ahead, with
recurring events expanded inside it; once the window has moved on by a day, the next sync is a
full one, so occurrences that entered the window are mirrored too.

No transaction is open while a provider is asked: a sync claims its connection with a lease
(so concurrent workers never sync one calendar at once), talks to the provider, then applies
the answer in one short transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import case, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.accounts import account_of
from closerdesk.calendars.connections import mark_invalid
from closerdesk.calendars.provider import CalendarAuthError, CalendarError, SyncBatch
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.time import utcnow
from closerdesk.models import CalendarBusy, CalendarConnection
from closerdesk.providers import Providers
from closerdesk.scheduling.intervals import Interval

log = structlog.get_logger(__name__)

BUILTIN = "builtin"
MIRROR_PAST = timedelta(days=1)
WINDOW_SLACK = timedelta(days=1)
"""A full sync once the window's end lags this far behind where it should be."""
SYNC_LEASE = timedelta(minutes=2)
RETRY_AFTER_FAILURE = timedelta(minutes=1)


@dataclass(frozen=True)
class SyncResult:
    """What one sync did: ``status`` is ``ok``, ``failed``, ``invalid`` or ``superseded`` (the
    connection was saved again while the provider was asked: nothing applied); ``full`` when the
    mirror was rebuilt; ``changes`` how many events changed; ``error`` the provider's reason."""

    connection_id: str
    status: str
    full: bool = False
    changes: int = 0
    error: str | None = None


def mirror_window(now: datetime, settings: Settings) -> Interval:
    """The span the mirror covers: a day ago to ``calendar_mirror_days`` ahead (UTC)."""
    return Interval(now - MIRROR_PAST, now + timedelta(days=settings.calendar_mirror_days))


async def claim_due(
    database: Database, settings: Settings, *, limit: int = 20, only: Sequence[str] = ()
) -> list[str]:
    """Claim external connections due for a sync (never synced, last synced more than
    ``calendar_sync_seconds`` ago, or asked for by a push notification; and not leased);
    ``only`` claims those ids whatever their age. Returns the claimed ids; each is leased for
    ``SYNC_LEASE``."""
    now = utcnow()
    due_before = now - timedelta(seconds=settings.calendar_sync_seconds)
    stmt = select(CalendarConnection).where(
        CalendarConnection.provider != BUILTIN,
        CalendarConnection.status == "valid",
        or_(
            CalendarConnection.sync_lease_until.is_(None),
            CalendarConnection.sync_lease_until <= now,
        ),
    )
    if only:
        stmt = stmt.where(CalendarConnection.id.in_(list(only)))
    else:
        stmt = stmt.where(
            or_(
                CalendarConnection.last_synced_at.is_(None),
                CalendarConnection.last_synced_at <= due_before,
                CalendarConnection.sync_requested_at.is_not(None),
            )
        )
    async with database.writer() as session:
        rows = (
            await session.scalars(
                stmt.order_by(CalendarConnection.last_synced_at.nulls_first())
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            row.sync_lease_until = now + SYNC_LEASE
        ids = [row.id for row in rows]
        await session.commit()
    return ids


async def sync_connection(
    database: Database, providers: Providers, settings: Settings, connection_id: str
) -> SyncResult:
    """Sync one claimed connection: ask its provider what changed, then apply it."""
    now = utcnow()
    async with database.reader() as session:
        connection = await session.get(CalendarConnection, connection_id)
        if connection is None or connection.status != "valid":
            return SyncResult(connection_id, "invalid")
        account = account_of(connection, providers.secrets)
        window = mirror_window(now, settings)
        stale = connection.mirror_until is None or (
            connection.mirror_until < window.end - WINDOW_SLACK
        )
        state = None if stale else connection.sync_state
        calendar = providers.calendars(session, account.provider)
        await session.commit()  # no transaction stays open while the provider is asked
    try:
        batch = await calendar.sync(account, state, window)
    except CalendarError as exc:
        return await _record_failure(database, account.organization_id, connection_id, exc)
    async with database.writer() as session:
        if not await _still_claimed(session, connection_id, account.calendar_id):
            # Reconnected (another calendar, a fresh mirror) or disconnected meanwhile: this
            # answer describes a calendar the connection no longer has.
            log.info("calendar.sync_superseded", connection_id=connection_id)
            return SyncResult(connection_id, "superseded")
        await apply_batch(session, account.organization_id, connection_id, batch, window, now)
        await session.commit()
    log.info(
        "calendar.synced",
        connection_id=connection_id,
        full=batch.full,
        changes=len(batch.changes),
    )
    return SyncResult(connection_id, "ok", full=batch.full, changes=len(batch.changes))


async def _still_claimed(session: AsyncSession, connection_id: str, calendar_id: str) -> bool:
    """Whether the connection still has the calendar a sync read and its lease (saving a
    connection clears the lease); on PostgreSQL the row stays locked until the commit."""
    found = await session.scalar(
        select(CalendarConnection.id)
        .where(
            CalendarConnection.id == connection_id,
            CalendarConnection.calendar_id == calendar_id,
            CalendarConnection.status == "valid",
            CalendarConnection.sync_lease_until.is_not(None),
        )
        .with_for_update()
    )
    return found is not None


async def apply_batch(
    session: AsyncSession,
    organization_id: str,
    connection_id: str,
    batch: SyncBatch,
    window: Interval,
    now: datetime,
) -> None:
    """Write a provider's answer into the mirror: a full batch replaces every row of the
    connection; an incremental one replaces the rows of each changed event."""
    if batch.full:
        await session.execute(
            delete(CalendarBusy).where(CalendarBusy.connection_id == connection_id)
        )
    else:
        keys = [c.key for c in batch.changes]
        for start in range(0, len(keys), 500):
            await session.execute(
                delete(CalendarBusy).where(
                    CalendarBusy.connection_id == connection_id,
                    CalendarBusy.event_key.in_(keys[start : start + 500]),
                )
            )
    rows = [
        {
            "organization_id": organization_id,
            "connection_id": connection_id,
            "event_key": change.key,
            "starts_at": interval.start,
            "ends_at": interval.end,
        }
        for change in batch.changes
        for interval in change.intervals
    ]
    if rows:
        await session.execute(insert(CalendarBusy), rows)
    values: dict[str, object] = {
        "sync_state": batch.state,
        "sync_status": "ok",
        "sync_error": None,
        "last_synced_at": now,
        "sync_lease_until": None,
        # A notification that arrived while this sync ran asks for another one.
        "sync_requested_at": case(
            (CalendarConnection.sync_requested_at <= now, None),
            else_=CalendarConnection.sync_requested_at,
        ),
    }
    if batch.full:
        values["mirror_until"] = window.end
    await session.execute(
        update(CalendarConnection)
        .where(CalendarConnection.id == connection_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def _record_failure(
    database: Database, organization_id: str, connection_id: str, exc: CalendarError
) -> SyncResult:
    reason = str(exc)[:500]
    log.warning("calendar.sync_failed", connection_id=connection_id, error=reason)
    async with database.writer() as session:
        await session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == connection_id)
            .values(
                sync_status="failed",
                sync_error=reason,
                sync_lease_until=utcnow() + RETRY_AFTER_FAILURE,
            )
            .execution_options(synchronize_session=False)
        )
        refused = isinstance(exc, CalendarAuthError)
        if refused:
            await mark_invalid(session, organization_id, connection_id, reason)
        await session.commit()
    return SyncResult(connection_id, "invalid" if refused else "failed", error=reason)


async def sync_due(
    database: Database, providers: Providers, settings: Settings, *, limit: int = 20
) -> list[SyncResult]:
    """One round of the worker: up to ``limit`` due connections, each claimed right before it
    is synced (so its lease runs while it is synced, not while others are)."""
    results: list[SyncResult] = []
    for _ in range(limit):
        claimed = await claim_due(database, settings, limit=1)
        if not claimed:
            break
        try:
            results.append(await sync_connection(database, providers, settings, claimed[0]))
        except Exception:  # one broken calendar must not stop the others
            log.exception("calendar.sync_crashed", connection_id=claimed[0])
    return results


async def sync_now(
    database: Database, providers: Providers, settings: Settings, connection_id: str
) -> SyncResult | None:
    """Sync one connection now, whatever its age; None when it is not a valid external
    calendar or another worker is syncing it at this moment."""
    if not await claim_due(database, settings, only=[connection_id]):
        return None
    return await sync_connection(database, providers, settings, connection_id)
