"""The calendar unit of work: one calendar change around the request's transaction.

``docs/calendars.md`` ("One change, one commit") describes the contract::

    async with calendar_change(session, providers) as change:
        event_id = await change.create(account, draft)   # compensation registered
        await change.remove(old_account, old_event_id, call_id)  # clean-up row in this transaction
        ...rules, history, outbox rows (flush only)...
    # one commit; on failure: rollback, then compensation; after the commit: the old event is
    # removed by ``attempt_removal``, the function the retry loop runs too.

A calendar that writes through the session (the built-in one, ``in_transaction``) needs none
of the bookkeeping: its writes commit or roll back with the change. An external calendar's
writes cannot roll back, so:

* an event created before the commit is cancelled if the transaction fails (and, if even that
  fails, left to the retry loop as a clean-up row); so is one whose create went unanswered
  when the provider knows the id it would have (``CalendarError.maybe_created``: Google);
* an event moved before the commit is moved back if the transaction fails;
* an old event is never removed before the commit: its removal is a ``calendar_cleanups`` row
  written in the change's own transaction, so a crash right after the commit still leaves a
  row that the worker retries until the event is gone (``old_event_orphaned``).

A provider that refuses the credentials (``CalendarAuthError``) turns the connection invalid
(``calendar.connection_invalid``) in a transaction of its own, after the failed change rolled
back, and the request answers 409 ``CALENDAR_NOT_CONNECTED``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.connections import mark_invalid
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    CalendarProvider,
    EventDraft,
)
from closerdesk.errors import CalendarNotConnected, CalendarProviderError
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import CalendarCleanup
from closerdesk.providers import Providers
from closerdesk.scheduling.intervals import Interval

log = structlog.get_logger(__name__)

T = TypeVar("T")

FIRST_RETRY_AFTER = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=6)


def backoff(attempts: int) -> timedelta:
    """Delay before attempt ``attempts + 1`` of a clean-up: 1, 2, 4, … minutes, at most 6 h."""
    # The exponent stops growing once past the cap: a row retried for weeks must not overflow.
    return min(timedelta(minutes=2 ** min(max(attempts - 1, 0), 9)), MAX_BACKOFF)


def in_transaction(calendar: CalendarProvider) -> bool:
    """True when the provider writes through the session (its writes commit with the change)."""
    return bool(getattr(calendar, "in_transaction", False))


async def attempt_removal(
    session: AsyncSession,
    providers: Providers,
    cleanup: CalendarCleanup,
    account: CalendarAccount | None,
) -> bool:
    """Try once to remove a clean-up row's event, then commit what happened.

    ``account`` is the calendar holding the event (None: the connection is gone, and with it
    what could remove the event; the row is closed). On success the row is resolved; on
    failure it records the error and its next attempt (``backoff``), and a refusal of the
    credentials turns the connection invalid. Returns True when the event is gone.
    Used right after a change's commit and by the retry loop (``calendars/cleanup.py``).
    """
    now = utcnow()
    cleanup.attempts += 1
    if account is None:
        cleanup.resolved_at, cleanup.last_error = now, "calendar disconnected"
        await session.commit()
        return True
    try:
        await providers.calendars(session, account.provider).cancel_event(account, cleanup.event_id)
    except CalendarError as exc:
        log.warning("calendar.cancel_failed", cleanup_id=cleanup.id, error=str(exc))
        cleanup.last_error = str(exc)[:2000]
        cleanup.next_attempt_at = now + backoff(cleanup.attempts)
        if isinstance(exc, CalendarAuthError):
            await mark_invalid(session, account.organization_id, account.connection_id, str(exc))
        await session.commit()
        return False
    cleanup.resolved_at = now
    await session.commit()
    return True


def _cleanup_row(
    account: CalendarAccount,
    event_id: str,
    call_id: str | None,
    *,
    attempts: int,
    last_error: str | None = None,
) -> CalendarCleanup:
    """A clean-up row for an event of ``account``'s calendar, first due a minute from now."""
    return CalendarCleanup(
        id=new_id("clean"),
        organization_id=account.organization_id,
        connection_id=account.connection_id,
        provider=account.provider,
        event_id=event_id,
        call_id=call_id,
        attempts=attempts,
        last_error=last_error[:2000] if last_error is not None else None,
        next_attempt_at=utcnow() + FIRST_RETRY_AFTER,
    )


@dataclass(frozen=True)
class _Removal:
    cleanup: CalendarCleanup
    account: CalendarAccount


class CalendarChange:
    """The calendar side of one change; see the module docstring. Made by ``calendar_change``.

    ``orphaned`` is True after the commit when an old event could not be removed yet (Aura
    reassign's ``old_event_orphaned``; a clean-up row keeps trying).
    """

    def __init__(self, session: AsyncSession, providers: Providers) -> None:
        self.session = session
        self.providers = providers
        self.orphaned = False
        self._undo: list[Callable[[], Awaitable[None]]] = []
        self._removals: list[_Removal] = []
        self._refused: dict[str, tuple[CalendarAccount, str]] = {}

    def calendar(self, account: CalendarAccount) -> CalendarProvider:
        return self.providers.calendars(self.session, account.provider)

    async def busy(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[Interval]:
        """The calendar's live busy time in ``[start, end)`` (foreign events only).

        Raises ``CalendarProviderError`` (502) or, when the credentials are refused,
        ``CalendarNotConnected`` (409).
        """
        calendar = self.calendar(account)
        return await self._ask(
            account, "Reading the calendar's busy time", calendar.busy, start, end
        )

    async def create(self, account: CalendarAccount, draft: EventDraft) -> str:
        """Create the call's event; on an external calendar it is cancelled again if the
        change does not commit. When the provider made its own room (Google Meet, Teams), the
        draft's join link (``location``, our ``/meet/{token}``) is pointed at it. Returns the
        provider's event id. Raises
        ``CalendarProviderError`` (502), ``CalendarNotConnected`` (409)."""
        calendar = self.calendar(account)
        try:
            created = await self._ask(
                account, "Creating the calendar event", calendar.create_event, draft
            )
        except (CalendarNotConnected, CalendarProviderError) as exc:
            maybe = getattr(exc.__cause__, "maybe_created", None)
            if maybe is not None and not in_transaction(calendar):
                # An unanswered create may have made the event: it goes whatever happens next
                # (undone if the change fails, removed after the commit if it goes on).
                self._undo.append(lambda: self._uncreate(account, maybe, draft.call_id))
                await self.remove(account, maybe, draft.call_id)
            raise
        event_id = created.event_id
        if not in_transaction(calendar):
            self._undo.append(lambda: self._uncreate(account, event_id, draft.call_id))
        if created.room_url and draft.location:
            # The provider made its own room (Meet, Teams): the call's link now leads there.
            conferencing = self.providers.conferencing(self.session)
            await conferencing.point_link(account.organization_id, draft.location, created.room_url)
        return event_id

    async def move(
        self, account: CalendarAccount, event_id: str, draft: EventDraft, previous: EventDraft
    ) -> None:
        """Move the event to ``draft``; on an external calendar it is moved back to
        ``previous`` if the change does not commit. Raises ``CalendarProviderError`` (502),
        ``CalendarNotConnected`` (409)."""
        calendar = self.calendar(account)
        await self._ask(account, "Moving the calendar event", calendar.move_event, event_id, draft)
        if not in_transaction(calendar):
            self._undo.append(lambda: self._move_back(account, event_id, previous))

    async def remove(self, account: CalendarAccount, event_id: str, call_id: str | None) -> None:
        """Remove an event the change leaves behind (the old closer's, a cancelled call's).

        In the transaction for a calendar that writes through the session; otherwise a
        clean-up row now, and the removal itself right after the commit.
        """
        calendar = self.calendar(account)
        if in_transaction(calendar):
            await calendar.cancel_event(account, event_id)
            return
        cleanup = _cleanup_row(account, event_id, call_id, attempts=0)
        self.session.add(cleanup)
        self._removals.append(_Removal(cleanup, account))

    async def _ask(
        self,
        account: CalendarAccount,
        what: str,
        operation: Callable[..., Awaitable[T]],
        *args: object,
    ) -> T:
        try:
            return await operation(account, *args)
        except CalendarAuthError as exc:
            self._refused[account.connection_id] = (account, str(exc))
            raise CalendarNotConnected(
                f"The closer's calendar refused closerdesk's credentials ({exc}); connect it again."
            ) from exc
        except CalendarError as exc:
            raise CalendarProviderError(f"{what} failed: {exc}") from exc

    async def _uncreate(self, account: CalendarAccount, event_id: str, call_id: str) -> None:
        try:
            await self.calendar(account).cancel_event(account, event_id)
        except CalendarError as exc:
            log.warning("calendar.compensation_failed", event_id=event_id, error=str(exc))
            self.session.add(
                _cleanup_row(account, event_id, call_id, attempts=1, last_error=str(exc))
            )

    async def _move_back(
        self, account: CalendarAccount, event_id: str, previous: EventDraft
    ) -> None:
        try:
            await self.calendar(account).move_event(account, event_id, previous)
        except CalendarError:
            log.exception("calendar.compensation_failed", event_id=event_id)

    async def _commit(self) -> None:
        # A calendar that refused its credentials while the change went on without it (round
        # robin moved on to another host) turns invalid with the change.
        for account, reason in self._refused.values():
            await mark_invalid(self.session, account.organization_id, account.connection_id, reason)
        await self.session.flush()
        await self.session.commit()

    async def _after_commit(self) -> None:
        """Remove the old events now. The change has committed, so nothing here may fail the
        request: whatever goes wrong leaves the clean-up row due for the retry loop."""
        for removal in self._removals:
            try:
                removed = await attempt_removal(
                    self.session, self.providers, removal.cleanup, removal.account
                )
            except Exception:
                log.exception("calendar.removal_crashed", cleanup_id=removal.cleanup.id)
                await self.session.rollback()
                removed = False
            self.orphaned = self.orphaned or not removed

    async def _after_failure(self) -> None:
        """Roll back, undo the external writes (newest first), and persist what must outlive
        the failure: clean-up rows for events that could not be undone, invalid connections."""
        await self.session.rollback()
        for undo in reversed(self._undo):
            await undo()
        for account, reason in self._refused.values():
            await mark_invalid(self.session, account.organization_id, account.connection_id, reason)
        if self.session.new or self.session.dirty or self._refused:
            await self.session.commit()


@asynccontextmanager
async def calendar_change(
    session: AsyncSession, providers: Providers
) -> AsyncIterator[CalendarChange]:
    """One calendar change around the session's transaction: commits once when the block ends
    (compensating if the block or the commit fails), then removes old external events.

    Services inside the block only flush; the block's end is the change's single commit.
    """
    change = CalendarChange(session, providers)
    try:
        yield change
        await change._commit()
    except BaseException:
        try:
            await change._after_failure()
        except Exception:  # the original failure is the one to report
            log.exception("calendar.compensation_failed")
            await session.rollback()
        raise
    await change._after_commit()
