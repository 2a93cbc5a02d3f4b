"""Round robin over real calendars: which free host takes a call (docs/api.md "Round robin").

The pure choice is ``scheduling/round_robin.py``; this module asks each chosen host's calendar
live and falls through to the next host when the calendar is busy or cannot answer.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from closerdesk.scheduling.round_robin import FairnessPeriod, rank_hosts


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
    fairness_period: FairnessPeriod,
    scheduled_at: datetime,
    planned: booking_links.PlannedBookings = booking_links.NOTHING_PLANNED,
) -> Closer | None:
    """The first of the ``free`` hosts, in round-robin order, whose calendar is free during
    ``span`` when asked live (the mirror that made them free may be a few minutes old).

    A calendar that refuses the credentials drops its host (the connection turns invalid), and
    so does one that cannot answer: the next host is asked. When no host is confirmed and some
    calendar could not answer, raises that ``CalendarProviderError`` (502): the time may well
    be free, closerdesk just cannot tell.

    Hosts at their daily or weekly cap on ``scheduled_at`` (the call's start) are left out; the
    share counts the link's ``fairness_period``, and ``planned`` adds bookings not written yet
    (``booking_links.round_robin_candidates``). The order is computed once (three queries).
    """
    weights = {m: (h.priority, h.weight) for m, h in hosts.items()}
    candidates = await booking_links.round_robin_candidates(
        session,
        organization_id,
        link_id,
        list(free),
        weights,
        now,
        fairness_period=fairness_period,
        scheduled_at=scheduled_at,
        planned=planned,
    )
    unanswered: CalendarProviderError | None = None
    for candidate in rank_hosts(candidates):
        host = hosts[candidate.member_id]
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
    if unanswered is not None:
        raise unanswered
    return None
