"""The ``idempotency_keys`` table: claim, finish, record, release (docs/idempotency.md).

A key is claimed by an INSERT that the unique ``(organization_id, key)`` guards, in a short
transaction of its own before the handler runs: of two requests with one key at once, one
inserts and runs, the other finds the row and answers 409 ``IDEMPOTENCY_KEY_IN_USE``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Update, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import IdempotencyKey

KEEP_FOR = timedelta(hours=24)
"""How long a key and its answer are kept, from the claim (docs/idempotency.md)."""

CLAIM_LEASE = timedelta(minutes=5)
"""How long a claim outlives a process that died mid-request: once it has run out, a key whose
change never committed can be claimed again. Far above the longest request (calendar calls are
bounded by ``calendar_retry_seconds``)."""


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Hex SHA-256 of ``method``, ``path`` (with its query string) and the raw body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode("utf-8", "surrogateescape"), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class Claimed:
    """The key is this request's: run the handler. ``id`` is the row's."""

    id: str


@dataclass(frozen=True)
class Stored:
    """The same request answered before: replay ``status`` and ``body``."""

    status: int
    body: bytes


@dataclass(frozen=True)
class InUse:
    """The first request with the key is still running (or its answer was lost: see docs)."""


@dataclass(frozen=True)
class Reused:
    """The key was first used with another request (another fingerprint)."""


Outcome = Claimed | Stored | InUse | Reused


async def claim(
    database: Database,
    organization_id: str,
    key: str,
    print_: str,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Claim ``key`` for a request with fingerprint ``print_``, in a transaction of its own.

    An expired row (older than ``KEEP_FOR``) counts as absent. A running claim whose lease ran
    out and whose change never committed (``applied`` false) is taken over.
    """
    now = now or utcnow()
    lookup = select(IdempotencyKey).where(
        IdempotencyKey.organization_id == organization_id, IdempotencyKey.key == key
    )
    # First a plain read: a replay, a reuse or a key in use is answered without the write lock
    # (on SQLite the first request may hold it for its whole change).
    async with database.reader() as session:
        row = await session.scalar(lookup)
        settled = _settled(row, print_, now)
        if settled is not None:
            return settled
    async with database.writer() as session:
        row = await session.scalar(lookup.with_for_update())
        if row is not None and row.expires_at <= now:
            await session.delete(row)
            await session.flush()
            row = None
        if row is None:
            return await _insert(session, organization_id, key, print_, now)
        settled = _settled(row, print_, now)
        if settled is not None:
            return settled
        row.locked_until = now + CLAIM_LEASE  # a dead process's claim, its change never made
        await session.commit()
        return Claimed(row.id)


def _settled(row: IdempotencyKey | None, print_: str, now: datetime) -> Outcome | None:
    """The answer a live row gives (None: absent, expired, or a dead claim to take over)."""
    if row is None or row.expires_at <= now:
        return None
    if row.fingerprint != print_:
        return Reused()
    if row.response_status is not None and row.response_body is not None:
        return Stored(row.response_status, row.response_body.encode())
    if row.locked_until > now or row.applied:
        return InUse()
    return None


async def _insert(
    session: AsyncSession, organization_id: str, key: str, print_: str, now: datetime
) -> Outcome:
    row = IdempotencyKey(
        id=new_id("idem"),
        organization_id=organization_id,
        key=key,
        fingerprint=print_,
        applied=False,
        locked_until=now + CLAIM_LEASE,
        created_at=now,
        expires_at=now + KEEP_FOR,
    )
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        # Another request inserted the same key between our read and our insert (PostgreSQL
        # makes us wait for its commit first): it is running.
        await session.rollback()
        return InUse()
    return Claimed(row.id)


async def finish(session: AsyncSession, claim_id: str, status: int, body: bytes) -> None:
    """Write the answer through the request's own session: it commits with the change."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim_id)
        .values(response_status=status, response_body=body.decode(), applied=True)
    )


async def record(database: Database, claim_id: str, status: int, body: bytes) -> None:
    """Write an answer the handler did not (an error: its change rolled back) in a
    transaction of its own."""
    async with database.writer() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == claim_id, IdempotencyKey.response_status.is_(None))
            .values(response_status=status, response_body=body.decode("utf-8", "replace"))
        )
        await session.commit()


async def release(database: Database, claim_id: str, *, handled: bool) -> None:
    """Free the key after a 5xx or a crash, so that a retry runs; a recorded answer stays.

    ``handled``: a 5xx the code answered on purpose (502 ``CALENDAR_PROVIDER_ERROR``, 503),
    which states that nothing changed. After a crash (``handled`` false) a key whose change
    has committed (``applied``) stays: running it again would apply the change twice, so it
    answers 409 until it expires.
    """
    condition = [IdempotencyKey.id == claim_id, IdempotencyKey.response_status.is_(None)]
    if not handled:
        condition.append(IdempotencyKey.applied.is_(False))
    async with database.writer() as session:
        await session.execute(delete(IdempotencyKey).where(*condition))
        await session.commit()


def mark_applied_statement(claim_id: str) -> Update:
    """The UPDATE that the request's change commits with: the key's change has happened."""
    return (
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim_id, IdempotencyKey.applied.is_(False))
        .values(applied=True)
    )
