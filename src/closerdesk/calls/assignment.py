"""Round robin over real calendars: which free host takes a call (docs/api.md "Round robin").

The pure choice is ``scheduling/round_robin.py``; this module asks each chosen host's calendar
live and falls through to the next host when the calendar is busy or cannot answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.booking_links import service as booking_links
from closerdesk.calendars.accounts import account_of
from closerdesk.calendars.unit_of_work import CalendarChange, in_transaction
from closerdesk.calls.steps import Closer
from closerdesk.errors import (
    CalendarNotConnected,
    CalendarProviderError,
)
from closerdesk.scheduling.intervals import Interval


async def pick_by_round_robin(
    session: AsyncSession,
    change: CalendarChange,
    organization_id: str,
    link_id: str | None,
    hosts: dict[str, booking_links.Host],
    free: Sequence[str],
    span: Interval,
    now: datetime,
    *,
    extra_bookings: Mapping[str, int] | None = None,
    booked_at: Mapping[str, datetime] | None = None,
) -> Closer | None:
    """The first of the ``free`` hosts, in round-robin order, whose calendar is free during
    ``span`` when asked live (the mirror that made them free may be a few minutes old).

    A calendar that refuses the credentials drops its host (the connection turns invalid), and
    so does one that cannot answer: the next host is asked. When no host is confirmed and some
    calendar could not answer, raises that ``CalendarProviderError`` (502): the time may well
    be free, closerdesk just cannot tell.

    ``extra_bookings`` and ``booked_at`` go to ``round_robin_choice``: bookings planned but not
    written yet (a bulk reassign's dry run).
    """
    candidates = list(free)
    weights = {m: (h.priority, h.weight) for m, h in hosts.items()}
    unanswered: CalendarProviderError | None = None
    while candidates:
        chosen_id = await booking_links.round_robin_choice(
            session,
            organization_id,
            link_id,
            candidates,
            weights,
            now,
            extra_bookings=extra_bookings,
            booked_at=booked_at,
        )
        if chosen_id is None:
            break
        host = hosts[chosen_id]
        account = account_of(host.connection, change.providers.secrets)
        if in_transaction(change.calendar(account)):  # its busy time was read under the lock
            return Closer(host.member, account)
        try:
            busy = await change.busy(account, span.start, span.end)
        except CalendarNotConnected:
            busy = [span]
        except CalendarProviderError as exc:
            unanswered, busy = exc, [span]
        if not any(b.overlaps(span) for b in busy):
            return Closer(host.member, account)
        candidates.remove(chosen_id)
    if unanswered is not None:
        raise unanswered
    return None
