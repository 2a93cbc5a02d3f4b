"""The retry loop of orphaned calendar events (``calendar_cleanups`` rows).

A row is written in the transaction of the change that left an old event behind (a reassign,
a cancel, a closer-changing reschedule) or when compensating a failed change could not remove
the event it had created. Each due row is retried by ``attempt_removal`` — the function a
change runs right after its commit — with exponential backoff (1 minute doubling, at most
6 hours) until the provider confirms; nothing is ever dropped (``docs/calendars.md``).
"""

from __future__ import annotations

from datetime import timedelta

from closerdesk.calendars import repository
from closerdesk.calendars.accounts import account_of
from closerdesk.calendars.unit_of_work import attempt_removal, backoff
from closerdesk.db import Database
from closerdesk.kit.secrets import UndecryptableSecret
from closerdesk.kit.time import utcnow
from closerdesk.providers import Providers

CLAIM_LEASE = timedelta(minutes=5)
"""A claimed row is not due again for this long: a worker that dies mid-attempt leaves it to
the next one after the lease."""


async def retry_due_cleanups(database: Database, providers: Providers, *, limit: int = 50) -> int:
    """Try every due clean-up once; returns how many were resolved.

    One short transaction claims the due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
    concurrent workers never claim one row twice) by pushing them a lease ahead; the provider
    calls then run outside any transaction (no lock is held over the network, which matters
    most on SQLite), and each outcome commits on its own.
    """
    now = utcnow()
    async with database.writer() as session:
        due = await repository.due_cleanups(session, now, limit)
        accounts = {}
        ready = []
        for row in due:
            row.next_attempt_at = now + CLAIM_LEASE
            connection = await repository.get_connection_by_id(
                session, row.organization_id, row.connection_id
            )
            try:
                accounts[row.id] = (
                    account_of(connection, providers.secrets) if connection is not None else None
                )
            except UndecryptableSecret as exc:  # this row waits; the others go on
                row.attempts += 1
                row.last_error = str(exc)[:2000]
                row.next_attempt_at = now + backoff(row.attempts)
                continue
            ready.append(row)
        await session.commit()
        resolved = 0
        for row in ready:
            resolved += await attempt_removal(session, providers, row, accounts[row.id])
    return resolved
