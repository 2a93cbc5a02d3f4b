"""Round robin over real calendars: which free host takes a call (docs/api.md "Round robin").

The pure choice is ``scheduling/round_robin.py`` and its inputs are read by
``booking_links/round_robin_counts.py``; this module asks each chosen host's calendar live and
falls through to the next host when the calendar is busy or cannot answer. Booking through a
link, reserving a slot (``booking_links/reservations.py``), auto-reassign and bulk reassign all
choose here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.booking_links import service as booking_links
from closerdesk.booking_links.round_robin_counts import (
    NOTHING_PLANNED,
    PlannedBookings,
    fairness_of,
    round_robin_candidates,
)
from closerdesk.calendars.accounts import account_of
from closerdesk.calendars.unit_of_work import CalendarChange, in_transaction
from closerdesk.calls import repository
from closerdesk.calls.steps import Closer
from closerdesk.errors import (
    CalendarNotConnected,
    CalendarProviderError,
    SlotNotAvailable,
)
from closerdesk.models import BookingLink
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
    planned: PlannedBookings = NOTHING_PLANNED,
) -> Closer | None:
    """The first of the ``free`` hosts, in round-robin order, whose calendar is free during
    ``span`` when asked live (the mirror that made them free may be a few minutes old).

    A calendar that refuses the credentials drops its host (the connection turns invalid), and
    so does one that cannot answer: the next host is asked. When no host is confirmed and some
    calendar could not answer, raises that ``CalendarProviderError`` (502): the time may well
    be free, closerdesk just cannot tell.

    Hosts at their daily or weekly cap on ``scheduled_at`` (the call's start) are left out; the
    share counts the link's ``fairness_period``, and ``planned`` adds bookings not written yet
    (``round_robin_counts.round_robin_candidates``; live slot reservations count too). The
    order is computed once (three queries).
    """
    weights = {m: (h.priority, h.weight) for m, h in hosts.items()}
    candidates = await round_robin_candidates(
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


async def round_robin_closer(
    session: AsyncSession,
    change: CalendarChange,
    link: BookingLink,
    start: datetime,
    end: datetime,
    now: datetime,
) -> Closer:
    """The host that gets a call at ``start`` by the link's round robin (docs/api.md "Round robin").

    ``start`` must be an offered slot. The hosts offered there are row-locked in id order (no
    deadlock between two bookings), checked again under the lock for the whole call
    ``[start, end)`` (availability, busy time, buffers: the slot may have been taken since it
    was offered), and the first of them in round-robin order whose calendar confirms the time
    live gets the call. Raises ``SlotNotAvailable`` (409), ``CalendarProviderError`` (502).
    """
    offered = await booking_links.free_hosts_for_slot(session, link, start, now)
    if not offered:
        raise SlotNotAvailable()
    await repository.lock_members(session, link.organization_id, offered)
    hosts = {
        h.member.id: h
        for h in await booking_links.bookable_hosts(session, link)
        if h.member.id in offered
    }
    buffers = booking_links.Buffers.of(link)
    free = await booking_links.free_hosts_for_span(
        session, link.organization_id, list(hosts.values()), start, end, buffers
    )
    chosen = await pick_by_round_robin(
        session,
        change,
        link.organization_id,
        link.id,
        hosts,
        free,
        buffers.around(start, end),
        now,
        fairness_period=fairness_of(link),
        scheduled_at=start,
    )
    if chosen is None:
        raise SlotNotAvailable()
    return chosen
