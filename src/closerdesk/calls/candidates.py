"""Who could take a call instead: ``GET /v1/calls/{id}/reassign-candidates``
(docs/sales-floor.md "Reassign candidates").

Every closer is judged by the functions reassign and round robin use themselves:
``steps.closer_reasons`` (reassign's checks 6–8), ``booking_links.hosts_among`` (which hosts
round robin may pick), ``booking_links.span_reasons`` (round robin's availability and busy rule,
the link's buffers included), ``round_robin_counts.round_robin_candidates`` (the fairness
period's counts and the caps, live slot reservations included) and ``round_robin.rank_hosts``
(the order).

Read only, and no calendar provider is asked: calendar busy time comes from what closerdesk keeps
(the built-in calendar, the busy mirror of an external one: docs/calendars.md "The busy mirror"),
as slots do. A reassign still asks the new closer's calendar live, so a candidate listed as
available may yet answer ``CLOSER_CONFLICT`` if its calendar changed since the last sync.

Queries: a fixed number whatever the number of closers (the call, its link and hosts, the
closers with their calendars, their calls and stored busy time, the round-robin counts and the
caps); docs/sales-floor.md gives the figures.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.auth.service import AuthContext
from closerdesk.booking_links import service as booking_links
from closerdesk.booking_links.round_robin_counts import fairness_of, round_robin_candidates
from closerdesk.booking_links.service import CLOSER_ROLES
from closerdesk.calendars.busy import stored_busy
from closerdesk.calls import repository
from closerdesk.calls.conflicts import own_conflicts
from closerdesk.calls.schemas import CandidateReason, ConflictItem, ReassignCandidate
from closerdesk.calls.steps import closer_reasons, get_call, require_slot_call
from closerdesk.kit import required
from closerdesk.kit.time import utcnow
from closerdesk.scheduling.intervals import Interval
from closerdesk.scheduling.round_robin import rank_hosts


async def reassign_candidates(
    session: AsyncSession, auth: AuthContext, call_id: str
) -> list[ReassignCandidate]:
    """Every active closer (or admin) of the organization for the call: the booking link's
    hosts first, in round-robin order (ranked hosts, then the others in the link's order), then
    the other closers by name and id.

    Reasons per closer, in this order: ``SAME_CLOSER``, ``CALENDAR_NOT_CONNECTED``,
    ``CLOSER_CONFLICT`` (the call's exact time against its other live calls and stored calendar
    busy; for a host also its busy time within the link's buffers, as round robin sees it),
    ``NOT_A_HOST`` (the call has a link and the closer is not one of its hosts),
    ``OUTSIDE_AVAILABILITY`` (a host whose schedule does not cover the call), ``CAP_REACHED``
    (its daily or weekly cap is full on the call's local day or week). For a call without a
    link every closer counts as a host without a schedule (as auto-reassign does).

    Raises ``CallNotFound`` (404), ``CallNotReassignable``, ``CallCancelled``, ``CallDeclined``,
    ``CallInPast`` (409) as reassign does (docs/api.md "Reassign" checks 1–4).
    """
    org = auth.organization_id
    now = utcnow()
    call = await get_call(session, auth, call_id)
    require_slot_call(call, now)
    start = required(call.scheduled_at, "scheduled_at")
    end = required(call.ends_at, "ends_at")
    link = (
        await booking_links.get_link(session, org, call.booking_link_id)
        if call.booking_link_id is not None
        else None
    )
    closers = await repository.closers_with_connections(session, org, CLOSER_ROLES)
    ids = [member.id for member, _ in closers]

    # The hosts round robin would consider, by round robin's own rule (the current closer is
    # one here: SAME_CLOSER below says why it cannot take the call).
    host_rows = (await booking_links.hosts_of(session, [link.id]))[link.id] if link else []
    host_order = {row.member_id: n for n, row in enumerate(host_rows)}
    settings = {row.member_id: row for row in host_rows}
    ready = {
        member.id: (member, connection)
        for member, connection in closers
        if connection is not None and connection.status == "valid"
    }
    hosts = booking_links.hosts_among(link, host_rows, ready)
    buffers = booking_links.Buffers.of(link)
    busy = await booking_links.busy_by_host(session, org, hosts, *buffers.busy_window(start, end))

    # What each closer has during the call itself, as CLOSER_CONFLICT details say it.
    conflicts = await own_conflicts(session, org, ids, start, end, now=now, exclude_call_id=call.id)
    valid = {connection.id: member_id for member_id, (_, connection) in ready.items()}
    stored = await stored_busy(
        session, [connection for _, connection in ready.values()], start, end
    )
    wanted = Interval(start, end)
    for connection_id, spans in stored.items():
        conflicts[valid[connection_id]] += [
            ConflictItem(start=b.start, end=b.end, source="calendar")
            for b in sorted(spans)
            if b.overlaps(wanted)
        ]

    # Round robin's own counts and caps, for every closer.
    priorities = {h.member.id: (h.priority, h.weight) for h in hosts}
    candidates = {
        c.member_id: c
        for c in await round_robin_candidates(
            session,
            org,
            link.id if link else None,
            ids,
            {m: priorities.get(m, ("medium", 100)) for m in ids},
            now,
            fairness_period=fairness_of(link),
            scheduled_at=start,
        )
    }

    by_host = {h.member.id: h for h in hosts}
    if call.closer_id in conflicts:
        # The current closer's busy time holds the call itself: SAME_CLOSER says it all.
        conflicts[call.closer_id] = []
        by_host.pop(call.closer_id, None)
    reasons: dict[str, list[CandidateReason]] = {}
    for member, connection in closers:
        mine: list[CandidateReason] = list(
            closer_reasons(call.closer_id, member.id, connection, conflicts[member.id])
        )
        is_host = link is None or member.id in settings
        if not is_host:
            mine.append("NOT_A_HOST")
        host = by_host.get(member.id)
        if host is not None:
            for code in booking_links.span_reasons(host, busy[member.id], start, end, buffers):
                if code not in mine:
                    mine.append(cast(CandidateReason, code))
        if candidates[member.id].remaining == 0:
            mine.append("CAP_REACHED")
        reasons[member.id] = sorted(mine, key=_ORDER.index)

    ranked = rank_hosts(candidates[h.member.id] for h in hosts if not reasons[h.member.id])
    rank = {c.member_id: n for n, c in enumerate(ranked, start=1)}
    is_listed_host = {m.id for m, _ in closers if link is None or m.id in settings}

    def order(item: tuple[int, str]) -> tuple[int, int, int, int]:
        index, member_id = item
        if member_id not in is_listed_host:
            return (1, 0, 0, index)
        return (0, rank.get(member_id, len(rank) + 1), host_order.get(member_id, 0), index)

    ordered = sorted(enumerate(ids), key=order)
    names = {member.id: member.name for member, _ in closers}
    return [
        ReassignCandidate(
            member_id=member_id,
            name=names[member_id],
            available=not reasons[member_id],
            reasons=reasons[member_id],
            conflicts=conflicts[member_id],
            period_bookings=candidates[member_id].bookings_this_period,
            rank=rank.get(member_id),
        )
        for _, member_id in ordered
    ]


_ORDER: list[CandidateReason] = [
    "SAME_CLOSER",
    "CALENDAR_NOT_CONNECTED",
    "CLOSER_CONFLICT",
    "NOT_A_HOST",
    "OUTSIDE_AVAILABILITY",
    "CAP_REACHED",
]
