"""Bulk reassign: move a closer's upcoming calls to one closer, or spread them over the free
hosts by round robin (docs/sales-floor.md, "Bulk reassign").

**Transactions.** Unlike every other write, a bulk reassign is not one transaction: each call
is moved in a ``calendar_change`` of its own on the request's session, which commits that call
(its calendar event, conferencing link, history row and ``call.closer_reassigned`` outbox row)
before the next call starts, and on failure rolls that call back and compensates its calendar
writes. A call that fails is reported with its error code; the others go on. The request's
session carries the ``Idempotency-Key`` claim, so the first call's commit marks the key
applied (docs/idempotency.md, "How it works", point 3): a retry replays the answer
and never moves a call twice.

**Same rules.** Each call goes through the single reassign (``reassign.reassign_closer`` for a
named closer, ``reassign.auto_reassign`` for ``"auto"``), under the call's row lock, after
checking under that lock that it is still one of the from-closer's upcoming calls (another
request may have moved it since the batch was read). Calls are taken in ``scheduled_at`` order,
so round robin counts the calls the batch already gave each host.

**Dry run.** Reads only, in a session of its own (on SQLite a write request's session would
hold the database's write lock for the whole plan). It applies the same checks and simulates
what the real run's earlier calls change for the later ones: a closer planned for a call is
busy during it (with the call's buffers) and counts it in round robin: in its share of the
link's fairness period, against its caps, and as its latest booking (``PlannedBookings``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.auth.service import AuthContext
from closerdesk.booking_links import service as booking_links
from closerdesk.booking_links.round_robin_counts import PlannedBookings, fairness_of
from closerdesk.calendars.accounts import account_of
from closerdesk.calendars.unit_of_work import CalendarChange, calendar_change
from closerdesk.calls import reassign, repository
from closerdesk.calls.assignment import pick_by_round_robin
from closerdesk.calls.conflicts import conflict_error, require_free
from closerdesk.calls.repository import BatchRow
from closerdesk.calls.schemas import (
    BULK_REASSIGN_LIMIT,
    BulkReassign,
    BulkReassignItem,
    BulkReassignResult,
    ConflictItem,
    ReassignCloser,
    ReassignResult,
)
from closerdesk.calls.steps import (
    closer_reasons,
    raise_first,
    require_active_closer,
    require_slot_call,
)
from closerdesk.db import Database
from closerdesk.errors import (
    ApiError,
    BulkLimitExceeded,
    CallNotFound,
    CallNotOfCloser,
    CallOutsideWindow,
    CloserNotFound,
    NoHostAvailable,
)
from closerdesk.kit import required
from closerdesk.kit.time import as_utc, utcnow
from closerdesk.models import BookingLink, CalendarConnection, TeamMember
from closerdesk.providers import Providers
from closerdesk.scheduling.intervals import Interval
from closerdesk.scheduling.round_robin import period_start

log = structlog.get_logger(__name__)

AUTO = "auto"


async def bulk_reassign(
    session: AsyncSession,
    database: Database,
    auth: AuthContext,
    providers: Providers,
    body: BulkReassign,
) -> BulkReassignResult:
    """Reassign (or, with ``dry_run``, plan reassigning) ``from_closer_id``'s upcoming calls.

    The batch: the from-closer's booking calls not cancelled or declined, scheduled in the
    future and inside the window (only ``call_ids`` when given), in ``scheduled_at`` order.
    Listed ``call_ids`` outside it get an item with ``CALL_NOT_FOUND`` (missing or another
    organization's), ``CALL_NOT_REASSIGNABLE``, ``CALL_CANCELLED``, ``CALL_IN_PAST``,
    ``CALL_NOT_OF_CLOSER`` or ``CALL_OUTSIDE_WINDOW``. Each call of the batch then gets the
    code the single reassign answers for it (null when it moved). ``session`` is the request's
    (a real run commits each call on it); ``database`` gives the dry run its own session.

    Raises ``CloserNotFound`` (404) when ``from_closer_id`` is not a member of the
    organization or ``to`` is not an active closer of it, ``BulkLimitExceeded`` (400) when
    more than 500 calls match.
    """
    if body.dry_run:
        async with database.reader() as reader:
            return await _dry_run(reader, auth, providers, body)
    now = utcnow()
    batch, rejected, _ = await _batch(session, auth.organization_id, body, now)
    items = [await _move_one(session, auth, providers, body, row) for row in batch]
    return _result(body, items + rejected)


# --- the batch -----------------------------------------------------------------------------------
Target = tuple[TeamMember, CalendarConnection | None]


async def _batch(
    session: AsyncSession, organization_id: str, body: BulkReassign, now: datetime
) -> tuple[Sequence[BatchRow], list[BulkReassignItem], Target | None]:
    """The calls to move (rows of ``repository.BATCH_COLUMNS``), the items of the listed
    ``call_ids`` that are not among them, and the named new closer (None for ``"auto"``)."""
    if await repository.get_member(session, organization_id, body.from_closer_id) is None:
        raise CloserNotFound("from_closer_id is not a member of this organization.")
    target = None if body.to == AUTO else await _target(session, organization_id, body.to)
    ids = list(dict.fromkeys(body.call_ids)) if body.call_ids is not None else None
    batch = await repository.upcoming_calls_of_closer(
        session,
        organization_id,
        body.from_closer_id,
        now,
        scheduled_after=body.scheduled_after,
        scheduled_before=body.scheduled_before,
        call_ids=ids,
        limit=BULK_REASSIGN_LIMIT + 1,
    )
    if len(batch) > BULK_REASSIGN_LIMIT:
        raise BulkLimitExceeded(details={"limit": BULK_REASSIGN_LIMIT})
    if ids is None:
        return batch, [], target
    taken = {row.id for row in batch}
    others = [i for i in ids if i not in taken]
    found = await repository.calls_by_ids(session, organization_id, others)
    rejected = []
    for call_id in others:
        row = found.get(call_id)
        # A listed call outside the batch fails one of these (or raced with another change).
        error = _rejection(row, body, now) or CallNotOfCloser()
        rejected.append(_failed(call_id, row, error))
    return batch, rejected, target


async def _target(session: AsyncSession, organization_id: str, member_id: str) -> Target:
    """The named new closer and its valid calendar (None: not connected, a per-call
    ``CALENDAR_NOT_CONNECTED``). Raises ``CloserNotFound`` (404) as the single reassign does."""
    member = require_active_closer(await repository.get_member(session, organization_id, member_id))
    ready = await booking_links.closers_with_calendars(session, organization_id, [member_id])
    return member, ready[member_id][1] if member_id in ready else None


def _rejection(row: Any, body: BulkReassign, now: datetime) -> ApiError | None:
    """Why a call (a row or a ``Call``; None when missing) is not in the batch, checked in the
    single reassign's order, then the batch's own conditions; None when it is."""
    if row is None:
        return CallNotFound()
    try:
        require_slot_call(row, now)
    except ApiError as refused:
        return refused
    if row.closer_id != body.from_closer_id:
        return CallNotOfCloser()
    start = as_utc(row.scheduled_at)
    if (body.scheduled_after is not None and start < body.scheduled_after) or (
        body.scheduled_before is not None and start >= body.scheduled_before
    ):
        return CallOutsideWindow()
    return None


# --- the real run: one transaction per call ------------------------------------------------------
async def _move_one(
    session: AsyncSession,
    auth: AuthContext,
    providers: Providers,
    body: BulkReassign,
    row: BatchRow,
) -> BulkReassignItem:
    """Move one call in its own calendar change (committed or rolled back and compensated
    before this returns); its failure becomes the item's code."""
    # The previous call's rows stay in the identity map across its commit (no expiry on
    # commit): drop them, so this call's locked reads load what the database holds now.
    session.expunge_all()
    try:
        async with calendar_change(session, providers) as change:
            call = await repository.get_call(session, auth.organization_id, row.id, lock=True)
            error = _rejection(call, body, utcnow())
            if error is not None:  # moved, cancelled or rescheduled since the batch was read
                raise error
            result = await _reassign(session, auth, change, row.id, body)
    except ApiError as exc:
        return _failed(row.id, row, exc)
    except Exception:
        # Not a rule's refusal (a bug, a lost connection): that call is rolled back and
        # compensated by its change; the log has the trace, the others still go.
        log.exception("calls.bulk_reassign_failed", call_id=row.id)
        return _failed(row.id, row, ApiError())
    return BulkReassignItem(
        call_id=row.id,
        scheduled_at=row.scheduled_at,
        previous_closer_id=result.previous_closer_id,
        new_closer_id=result.new_closer_id,
        new_closer_name=result.new_closer_name,
        new_event_id=result.new_event_id,
        conferencing_link=result.conferencing_link,
        old_event_orphaned=change.orphaned,
    )


async def _reassign(
    session: AsyncSession,
    auth: AuthContext,
    change: CalendarChange,
    call_id: str,
    body: BulkReassign,
) -> ReassignResult:
    """The single reassign, with the batch's ``reason`` and ``reason_code`` (in each call's
    history and ``call.closer_reassigned``; docs/sales-floor.md, "Reason codes")."""
    if body.to == AUTO:
        return await reassign.auto_reassign(
            session, auth, change, call_id, body.reason, reason_code=body.reason_code
        )
    return await reassign.reassign_closer(
        session,
        auth,
        change,
        call_id,
        ReassignCloser(new_closer_id=body.to, reason=body.reason, reason_code=body.reason_code),
    )


# --- the dry run ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Placement:
    """A call of the batch planned onto a closer: what it changes for the later calls."""

    closer_id: str
    call_id: str
    call: Interval  # the call itself
    held: Interval  # with its own link's buffers (how round robin sees a host's calls)
    link_id: str | None
    created_at: datetime
    booked_at: datetime


@dataclass
class _Planner:
    """Plans the batch in order; ``placements`` are the moves planned so far."""

    session: AsyncSession
    auth: AuthContext
    change: CalendarChange
    body: BulkReassign
    now: datetime
    target: Target | None
    placements: list[_Placement] = field(default_factory=list)
    _links: dict[str, BookingLink] = field(default_factory=dict)
    _hosts: dict[str | None, list[booking_links.Host]] = field(default_factory=dict)

    async def plan(self, row: BatchRow) -> BulkReassignItem:
        start, end = as_utc(row.scheduled_at), as_utc(row.ends_at)
        link = await self._link(row.booking_link_id)
        buffers = booking_links.Buffers.of(link)
        try:
            if self.body.to == AUTO:
                member = await self._round_robin(link, start, end, buffers)
            else:
                member = await self._named(row.id, start, end)
        except ApiError as exc:
            return _failed(row.id, row, exc)
        self.placements.append(
            _Placement(
                closer_id=member.id,
                call_id=row.id,
                call=Interval(start, end),
                held=buffers.around(start, end),
                link_id=row.booking_link_id,
                created_at=as_utc(row.created_at),
                # The real run stamps each new closer's last_booked_at as it goes: later each time.
                booked_at=self.now + timedelta(microseconds=len(self.placements) + 1),
            )
        )
        return BulkReassignItem(
            call_id=row.id,
            scheduled_at=row.scheduled_at,
            previous_closer_id=row.closer_id,
            new_closer_id=member.id,
            new_closer_name=member.name,
        )

    async def _named(self, call_id: str, start: datetime, end: datetime) -> TeamMember:
        """``reassign_closer``'s checks after the call's own (docs/api.md "Reassign" 6–8),
        with the calls planned onto the closer before this one counting as its calls."""
        member, connection = required(self.target, "target")
        # SAME_CLOSER, CALENDAR_NOT_CONNECTED; the conflicts are asked next.
        raise_first(closer_reasons(self.body.from_closer_id, member.id, connection))
        wanted = Interval(start, end)
        planned = [
            ConflictItem(start=p.call.start, end=p.call.end, source="call", call_id=p.call_id)
            for p in self.placements
            if p.call.overlaps(wanted)
        ]
        if planned:
            raise conflict_error(planned)
        connection = required(connection, "connection")  # closer_reasons refused None
        account = account_of(connection, self.change.providers.secrets)
        await require_free(
            self.session,
            self.change,
            account,
            start,
            end,
            exclude_call_id=call_id,
            override_conflict=False,
        )
        return member

    async def _round_robin(
        self,
        link: BookingLink | None,
        start: datetime,
        end: datetime,
        buffers: booking_links.Buffers,
    ) -> TeamMember:
        """``auto_reassign``'s choice, with the calls planned before this one: a host they
        occupy at this time (buffers included) is not free, and they count in its share."""
        org = self.auth.organization_id
        hosts = await self._hosts_of(link)
        free = await booking_links.free_hosts_for_span(
            self.session, org, hosts, start, end, buffers
        )
        span = buffers.around(start, end)
        taken = {p.closer_id for p in self.placements if p.held.overlaps(span)}
        link_id = link.id if link else None
        period = fairness_of(link)
        since = period_start(period, self.now)
        starts: dict[str, list[datetime]] = {}
        for p in self.placements:
            starts.setdefault(p.closer_id, []).append(p.call.start)
        planned = PlannedBookings(
            counted=Counter(
                p.closer_id
                for p in self.placements
                if (link_id is None or p.link_id == link_id) and p.created_at >= since
            ),
            starts=starts,
            booked_at={p.closer_id: p.booked_at for p in self.placements},
        )
        chosen = await pick_by_round_robin(
            self.session,
            self.change,
            org,
            link_id,
            {h.member.id: h for h in hosts},
            [m for m in free if m not in taken],
            span,
            self.now,
            fairness_period=period,
            scheduled_at=start,
            planned=planned,
        )
        if chosen is None:
            raise NoHostAvailable()
        return chosen.member

    async def _link(self, link_id: str | None) -> BookingLink | None:
        if link_id is None:
            return None
        if link_id not in self._links:
            self._links[link_id] = await booking_links.get_link(
                self.session, self.auth.organization_id, link_id
            )
        return self._links[link_id]

    async def _hosts_of(self, link: BookingLink | None) -> list[booking_links.Host]:
        """``auto_reassign``'s candidates (``booking_links.round_robin_hosts``), never the
        from-closer; loaded once per link."""
        key = link.id if link else None
        if key not in self._hosts:
            self._hosts[key] = await booking_links.round_robin_hosts(
                self.session, self.auth.organization_id, link, exclude=self.body.from_closer_id
            )
        return self._hosts[key]


async def _dry_run(
    session: AsyncSession, auth: AuthContext, providers: Providers, body: BulkReassign
) -> BulkReassignResult:
    now = utcnow()
    batch, rejected, target = await _batch(session, auth.organization_id, body, now)
    # Never committed: only its live busy reads are used (the session is only read).
    change = CalendarChange(session, providers)
    planner = _Planner(session, auth, change, body, now, target)
    items = [await planner.plan(row) for row in batch]
    return _result(body, items + rejected)


# --- answers -------------------------------------------------------------------------------------
def _failed(call_id: str, row: Any, error: ApiError) -> BulkReassignItem:
    return BulkReassignItem(
        call_id=call_id,
        scheduled_at=row.scheduled_at if row is not None else None,
        previous_closer_id=row.closer_id if row is not None else None,
        code=error.code,
        error=error.text,
        details=error.details,
    )


def _result(body: BulkReassign, items: list[BulkReassignItem]) -> BulkReassignResult:
    assigned = Counter(i.new_closer_id for i in items if i.new_closer_id is not None)
    succeeded = sum(1 for i in items if i.code is None)
    return BulkReassignResult(
        dry_run=body.dry_run,
        from_closer_id=body.from_closer_id,
        to=body.to,
        total=len(items),
        succeeded=succeeded,
        failed=len(items) - succeeded,
        assigned=dict(sorted(assigned.items())),
        results=items,
    )
