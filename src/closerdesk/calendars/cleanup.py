"""Retry the removal of orphaned calendar events (``calendar_cleanups`` rows).

A row is written when cancelling an old event failed after a reassign/cancel committed
(SPEC §3, ``old_event_orphaned``). Each due row is retried with exponential backoff
(1 min doubling, capped at 6 h) until the provider confirms; nothing is ever dropped.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import select

from closerdesk.calls import repository
from closerdesk.db import Database
from closerdesk.kit.time import utcnow
from closerdesk.models import CalendarCleanup
from closerdesk.providers import Providers

log = structlog.get_logger(__name__)
MAX_BACKOFF = timedelta(hours=6)


def backoff(attempts: int) -> timedelta:
    """Delay before attempt ``attempts + 1``: 1, 2, 4, … minutes, at most 6 hours."""
    return min(timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


async def retry_due_cleanups(database: Database, providers: Providers, *, limit: int = 50) -> int:
    """Try every due clean-up once; returns how many were resolved.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several processes can
    run this concurrently without trying one row twice.
    """
    resolved = 0
    async with database.writer() as session:
        due = (
            await session.scalars(
                select(CalendarCleanup)
                .where(
                    CalendarCleanup.resolved_at.is_(None),
                    CalendarCleanup.next_attempt_at <= utcnow(),
                )
                .order_by(CalendarCleanup.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in due:
            connection = await repository.get_connection_by_id(
                session, row.organization_id, row.connection_id
            )
            try:
                if connection is not None:
                    calendar = providers.calendars(session, connection.provider)
                    await calendar.cancel_event(connection, row.event_id)
            except Exception as exc:
                row.attempts += 1
                row.last_error = str(exc)[:2000]
                row.next_attempt_at = utcnow() + backoff(row.attempts)
                log.warning("calendar.cleanup_failed", cleanup_id=row.id, error=str(exc))
            else:
                row.resolved_at = utcnow()
                resolved += 1
        await session.commit()
    return resolved
