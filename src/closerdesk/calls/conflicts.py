"""Conflict detection: what a closer already has during a call's time (``docs/calendars.md``).

Three sources: the closer's other live calls (``source: "call"``), the closer's live slot
reservations (``source: "reservation"``: a slot held for a lead being booked, times only;
docs/sales-floor.md, "Slot reservations"), and foreign busy time on the
closer's calendar asked live of the provider (``source: "calendar"``: the busy time as the
calendar reports it for the call's interval, times only, never the other event's title). The
caller holds the closer's row lock, so no concurrent booking can slip in between the check and
the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.provider import CalendarAccount
from closerdesk.calendars.unit_of_work import CalendarChange
from closerdesk.calls import repository
from closerdesk.calls.schemas import ConflictItem
from closerdesk.errors import CalendarProviderError, CloserConflict
from closerdesk.kit.time import utcnow
from closerdesk.models.call import NO_DOUBLE_BOOKING
from closerdesk.scheduling.intervals import Interval

log = structlog.get_logger(__name__)


async def find_conflicts(
    session: AsyncSession,
    change: CalendarChange,
    account: CalendarAccount,
    start: datetime,
    end: datetime,
    *,
    exclude_call_id: str | None,
    tolerate_calendar_error: bool,
    exclude_reservation_id: str | None = None,
) -> list[ConflictItem]:
    """What the closer already has in ``[start, end)``: other live calls and live slot
    reservations (but ``exclude_reservation_id``, the one being booked), then calendar busy.

    Raises ``CalendarProviderError`` (502) if the calendar cannot answer, unless
    ``tolerate_calendar_error`` (an override does not need the answer to proceed), and
    ``CalendarNotConnected`` (409) if it refuses the credentials.
    """
    wanted = Interval(start, end)
    held = await own_conflicts(
        session,
        account.organization_id,
        [account.member_id],
        start,
        end,
        exclude_call_id=exclude_call_id,
        exclude_reservation_id=exclude_reservation_id,
    )
    conflicts = held[account.member_id]
    try:
        busy = await change.busy(account, start, end)
    except CalendarProviderError as exc:
        if not tolerate_calendar_error:
            raise
        log.warning("calendar.busy_failed", connection_id=account.connection_id, error=exc.text)
        return conflicts
    conflicts += [
        ConflictItem(start=b.start, end=b.end, source="calendar")
        for b in sorted(busy)
        if b.overlaps(wanted)
    ]
    return conflicts


async def own_conflicts(
    session: AsyncSession,
    organization_id: str,
    closer_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
    exclude_call_id: str | None = None,
    exclude_reservation_id: str | None = None,
) -> dict[str, list[ConflictItem]]:
    """Closer id → what its own holds share with ``[start, end)``: its other live calls
    (``source: "call"``, with ``call_id``) and live slot reservations (``source:
    "reservation"``), in start order, in one query for all the closers. The part of
    :func:`find_conflicts` that closerdesk knows without asking a calendar (reassign
    candidates and ``GET /v1/team/{id}/busy`` use it as is). A reservation is live until
    ``now`` (default: the current time), so one answer reads every hold at one instant."""
    conflicts: dict[str, list[ConflictItem]] = {closer_id: [] for closer_id in closer_ids}
    for closer_id, source, held_id, row_start, row_end in await repository.overlapping_busy(
        session,
        organization_id,
        closer_ids,
        start,
        end,
        now or utcnow(),
        exclude_call_id=exclude_call_id,
        exclude_reservation_id=exclude_reservation_id,
    ):
        conflicts[closer_id].append(
            ConflictItem(
                start=row_start,
                end=row_end,
                source=source,
                call_id=held_id if source == "call" else None,
            )
        )
    return conflicts


async def require_free(
    session: AsyncSession,
    change: CalendarChange,
    account: CalendarAccount,
    start: datetime,
    end: datetime,
    *,
    exclude_call_id: str | None,
    override_conflict: bool,
    exclude_reservation_id: str | None = None,
) -> list[ConflictItem]:
    """The conflicts of ``[start, end)`` for the (locked) closer; raises ``CloserConflict``
    (409, with ``details.conflicts``) unless ``override_conflict``, which returns them."""
    conflicts = await find_conflicts(
        session,
        change,
        account,
        start,
        end,
        exclude_call_id=exclude_call_id,
        tolerate_calendar_error=override_conflict,
        exclude_reservation_id=exclude_reservation_id,
    )
    if conflicts and not override_conflict:
        raise conflict_error(conflicts)
    return conflicts


def conflict_error(conflicts: Sequence[ConflictItem]) -> CloserConflict:
    """``CLOSER_CONFLICT`` (409) with ``details.conflicts``, each ``{start, end, source,
    call_id?}`` (docs/api.md "Conflicts")."""
    return CloserConflict(details={"conflicts": conflict_details(conflicts)})


def conflict_details(conflicts: Sequence[ConflictItem]) -> list[dict[str, Any]]:
    """The wire form of conflicts, as ``CLOSER_CONFLICT`` details and reassign candidates
    carry them."""
    return [c.model_dump(mode="json", exclude_none=True) for c in conflicts]


def _violated_constraint(exc: IntegrityError) -> str | None:
    """The constraint an ``IntegrityError`` names (asyncpg keeps it on the driver's error)."""
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        name = getattr(error, "constraint_name", None)
        if isinstance(name, str):
            return name
    return NO_DOUBLE_BOOKING if NO_DOUBLE_BOOKING in str(exc.orig) else None


async def flush_placement(session: AsyncSession) -> None:
    """Flush a call whose time or closer was set. Raises ``CloserConflict`` (409) when
    PostgreSQL's ``ex_calls_no_double_booking`` refuses it: a booking that got past the row
    lock (a writer that does not take it) still cannot double-book the closer
    (``docs/calendars.md``, "No double booking"). Any other integrity error propagates."""
    try:
        await session.flush()
    except IntegrityError as exc:
        if _violated_constraint(exc) != NO_DOUBLE_BOOKING:
            raise
        log.warning("calls.double_booking_refused", constraint=NO_DOUBLE_BOOKING)
        raise CloserConflict(details={"conflicts": []}) from exc
