"""Booking links: CRUD, their hosts, busy time and slots (docs/api.md "Booking links").

The maths is in ``closerdesk.scheduling`` (pure); this module loads hosts, their schedules and
busy time, and hands plain values to it. What round robin counts of each host (shares, caps) is
``round_robin_counts.py``; the choice over real calendars is ``calls/assignment.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, CompoundSelect, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.booking_links import reservations_repository, schemas
from closerdesk.booking_links.round_robin_counts import cap_loads
from closerdesk.booking_links.schemas import BookingLinkCreate, BookingLinkUpdate
from closerdesk.calendars.busy import stored_busy_spans
from closerdesk.calls import repository as calls_repository
from closerdesk.errors import (
    BookingLinkNotFound,
    BookingLinkSlugTaken,
    CloserNotFound,
    ValidationFailed,
)
from closerdesk.kit.ids import new_id
from closerdesk.kit.statements import built_once
from closerdesk.kit.time import utcnow
from closerdesk.models import BookingLink, BookingLinkHost, CalendarConnection, Call, TeamMember
from closerdesk.models.base import epoch_us
from closerdesk.scheduling._spans import MINUTE_US, SpanColumns, intervals_of
from closerdesk.scheduling.availability import (
    DateOverride,
    LocalWindow,
    Schedule,
    WeeklyWindow,
    expand,
)
from closerdesk.scheduling.intervals import Interval
from closerdesk.scheduling.round_robin import within_caps
from closerdesk.scheduling.slots import HostBusySpans, Slot, find_slots

MAX_SLOT_RANGE = timedelta(days=62)
CLOSER_ROLES = frozenset({"closer", "admin"})
"""Roles that can take calls (admins of small teams close too)."""


def is_active_closer(member: TeamMember | None) -> bool:
    """Whether ``member`` (None: not found) can take calls: active, of ``CLOSER_ROLES``."""
    return member is not None and member.is_active and member.role in CLOSER_ROLES


# --- CRUD ----------------------------------------------------------------------------------------
async def get_link(session: AsyncSession, organization_id: str, link_id: str) -> BookingLink:
    """Raises ``BookingLinkNotFound`` (404) when missing or of another organization."""
    link = await session.scalar(
        select(BookingLink).where(
            BookingLink.organization_id == organization_id, BookingLink.id == link_id
        )
    )
    if link is None:
        raise BookingLinkNotFound()
    return link


async def hosts_of(
    session: AsyncSession, link_ids: Sequence[str]
) -> dict[str, list[BookingLinkHost]]:
    """The hosts of each link, in the order they were given."""
    out: dict[str, list[BookingLinkHost]] = {link_id: [] for link_id in link_ids}
    if link_ids:
        rows = await session.scalars(
            select(BookingLinkHost)
            .where(BookingLinkHost.booking_link_id.in_(list(link_ids)))
            .order_by(BookingLinkHost.booking_link_id, BookingLinkHost.position)
        )
        for row in rows:
            out[row.booking_link_id].append(row)
    return out


def link_schema(link: BookingLink, hosts: Sequence[BookingLinkHost]) -> schemas.BookingLink:
    return schemas.BookingLink.model_validate(
        {
            **{k: getattr(link, k) for k in schemas.BookingLink.model_fields if k != "hosts"},
            "hosts": [
                {
                    "member_id": h.member_id,
                    "priority": h.priority,
                    "weight": h.weight,
                    "schedule": h.schedule,
                }
                for h in hosts
            ],
        }
    )


async def _check_slug(
    session: AsyncSession, organization_id: str, slug: str, except_id: str | None = None
) -> None:
    other = await session.scalar(
        select(BookingLink.id).where(
            BookingLink.organization_id == organization_id, BookingLink.slug == slug
        )
    )
    if other is not None and other != except_id:
        raise BookingLinkSlugTaken()


async def _replace_hosts(
    session: AsyncSession,
    organization_id: str,
    link_id: str,
    hosts: Sequence[schemas.BookingLinkHost],
) -> None:
    """Raises ``CloserNotFound`` (404, ``details`` names the host) for a member who is not an
    active closer of the organization."""
    ids = [h.member_id for h in hosts]
    members = {
        m.id: m
        for m in await session.scalars(
            select(TeamMember).where(
                TeamMember.organization_id == organization_id, TeamMember.id.in_(ids)
            )
        )
    }
    for index, host in enumerate(hosts):
        if not is_active_closer(members.get(host.member_id)):
            raise CloserNotFound(
                f"Host {host.member_id} is not an active closer.",
                details=[{"field": f"hosts.{index}.member_id", "message": "not an active closer"}],
            )
    for existing in (await hosts_of(session, [link_id]))[link_id]:
        await session.delete(existing)
    await session.flush()
    for position, host in enumerate(hosts):
        session.add(
            BookingLinkHost(
                booking_link_id=link_id,
                member_id=host.member_id,
                organization_id=organization_id,
                priority=host.priority,
                weight=host.weight,
                position=position,
                schedule=host.schedule.model_dump(mode="json"),
            )
        )
    await session.flush()


@asynccontextmanager
async def _slug_guard(session: AsyncSession, slug_written: bool = True) -> AsyncIterator[None]:
    """A savepoint around writing a link's slug: a concurrent request that took the same slug
    after ``_check_slug`` passed trips the unique constraint, answered as 409, not 500."""
    try:
        async with session.begin_nested():
            yield
    except IntegrityError as exc:
        if not slug_written:
            raise
        raise BookingLinkSlugTaken() from exc


async def create_link(
    session: AsyncSession, organization_id: str, body: BookingLinkCreate
) -> BookingLink:
    """Raises ``BookingLinkSlugTaken`` (409), ``CloserNotFound`` (404)."""
    await _check_slug(session, organization_id, body.slug)
    link = BookingLink(
        id=new_id("bl"),
        organization_id=organization_id,
        **body.model_dump(exclude={"hosts"}),
        is_active=True,
    )
    async with _slug_guard(session):
        session.add(link)
        await session.flush()
    await _replace_hosts(session, organization_id, link.id, body.hosts)
    return link


_NULLABLE = frozenset({"slot_interval_minutes", "description"})
"""Fields a PATCH may set to null ("the duration", no description)."""


async def update_link(
    session: AsyncSession, organization_id: str, link_id: str, body: BookingLinkUpdate
) -> BookingLink:
    """Raises ``BookingLinkNotFound``/``CloserNotFound`` (404), ``BookingLinkSlugTaken`` (409),
    ``ValidationFailed`` (400: a null required field, or ``fixed`` with several hosts)."""
    link = await get_link(session, organization_id, link_id)
    changes = body.model_dump(exclude_unset=True, exclude={"hosts"})
    for name, value in changes.items():
        if value is None and name not in _NULLABLE:
            raise ValidationFailed.field(name, "cannot be null")
    if "hosts" in body.model_fields_set and body.hosts is None:
        raise ValidationFailed.field("hosts", "cannot be null")
    if "slug" in changes:
        await _check_slug(session, organization_id, changes["slug"], except_id=link.id)
    host_count = (
        len(body.hosts)
        if body.hosts is not None
        else len((await hosts_of(session, [link.id]))[link.id])
    )
    if changes.get("assignment", link.assignment) == "fixed" and host_count != 1:
        raise ValidationFailed.field("hosts", "a fixed booking link has exactly one host")
    async with _slug_guard(session, "slug" in changes):
        for name, value in changes.items():
            setattr(link, name, value)
        await session.flush()
    if body.hosts is not None:
        await _replace_hosts(session, organization_id, link.id, body.hosts)
    await session.flush()
    return link


# --- hosts, busy time, slots ---------------------------------------------------------------------
def schedule_of(raw: dict[str, Any]) -> Schedule:
    """The pure-core ``Schedule`` of a stored host schedule (docs/api.md "Availability")."""
    return Schedule(
        time_zone=raw["time_zone"],
        weekly=tuple(
            WeeklyWindow.parse(w["weekday"], w["start"], w["end"]) for w in raw.get("weekly", [])
        ),
        overrides=tuple(
            DateOverride(
                datetime.fromisoformat(o["date"]).date(),
                tuple(LocalWindow.parse(i["start"], i["end"]) for i in o.get("intervals", [])),
            )
            for o in raw.get("overrides", [])
        ),
    )


@dataclass(frozen=True)
class Host:
    """A host able to take calls now: an active closer with a valid calendar."""

    member: TeamMember
    connection: CalendarConnection
    priority: str
    weight: int
    schedule: Schedule | None  # None: no availability rules (closers outside any link)


async def bookable_hosts(
    session: AsyncSession, link: BookingLink, *, exclude: str | None = None
) -> list[Host]:
    """The link's hosts that can receive calls (active closer, valid calendar), in order,
    never ``exclude``."""
    rows = (await hosts_of(session, [link.id]))[link.id]
    ready = await closers_with_calendars(session, link.organization_id, [r.member_id for r in rows])
    return hosts_among(link, rows, ready, exclude=exclude)


async def round_robin_hosts(
    session: AsyncSession, organization_id: str, link: BookingLink | None, *, exclude: str | None
) -> list[Host]:
    """The hosts round robin may pick for a call of ``link`` (:func:`hosts_among`), loaded:
    auto-reassign and bulk reassign's ``"auto"`` (``exclude``: the call's closer)."""
    if link is not None:
        return await bookable_hosts(session, link, exclude=exclude)
    ready = await closers_with_calendars(session, organization_id)
    return hosts_among(None, [], ready, exclude=exclude)


def hosts_among(
    link: BookingLink | None,
    host_rows: Sequence[BookingLinkHost],
    ready: Mapping[str, tuple[TeamMember, CalendarConnection]],
    *,
    exclude: str | None = None,
) -> list[Host]:
    """The one rule for which hosts round robin may pick for a call (docs/api.md
    "Auto-reassign"): with a ``link``, its hosts (``host_rows``, in the link's order) that are
    in ``ready`` (active closers with a valid calendar, :func:`closers_with_calendars`), with
    their priority, weight and schedule; without one, everyone in ``ready``, all ``medium``,
    weight 100, no schedule (no availability rules). Never ``exclude``."""
    if link is None:
        return [
            Host(member, connection, "medium", 100, None)
            for member_id, (member, connection) in ready.items()
            if member_id != exclude
        ]
    return [
        Host(*ready[r.member_id], r.priority, r.weight, schedule_of(r.schedule))
        for r in host_rows
        if r.member_id in ready and r.member_id != exclude
    ]


async def closers_with_calendars(
    session: AsyncSession, organization_id: str, member_ids: Sequence[str] | None = None
) -> dict[str, tuple[TeamMember, CalendarConnection]]:
    """Active closers with a valid calendar (all of the organization's, or those listed)."""
    stmt = (
        select(TeamMember, CalendarConnection)
        .join(
            CalendarConnection,
            (CalendarConnection.organization_id == TeamMember.organization_id)
            & (CalendarConnection.member_id == TeamMember.id),
        )
        .where(
            TeamMember.organization_id == organization_id,
            TeamMember.is_active.is_(True),
            TeamMember.role.in_(CLOSER_ROLES),
            CalendarConnection.status == "valid",
        )
        .order_by(TeamMember.id)
    )
    if member_ids is not None:
        stmt = stmt.where(TeamMember.id.in_(list(member_ids)))
    return {m.id: (m, c) for m, c in (await session.execute(stmt)).all()}


async def busy_by_host(
    session: AsyncSession,
    organization_id: str,
    hosts: Sequence[Host],
    start: datetime,
    end: datetime,
) -> dict[str, list[Interval]]:
    """Busy time of each host in ``[start, end)``: :func:`busy_spans_by_host` as ``Interval``s."""
    spans = await busy_spans_by_host(session, organization_id, hosts, start, end)
    return {member_id: intervals_of(s.spans()) for member_id, s in spans.items()}


async def busy_spans_by_host(
    session: AsyncSession,
    organization_id: str,
    hosts: Sequence[Host],
    start: datetime,
    end: datetime,
) -> dict[str, SpanColumns]:
    """Busy time of each host in ``[start, end)``, member id → spans (integer microseconds since the
    epoch, UTC, any order; the core's span form, ``SpanColumns``): active calls and live slot
    reservations with their own link's buffers (one query for all hosts) and calendar busy as
    closerdesk keeps it (the built-in tables, the mirror of an external calendar; no provider is
    asked: ``docs/calendars.md``). The database computes the integers (docs/performance.md,
    "Slots through the API")."""
    busy = {h.member.id: SpanColumns() for h in hosts}
    if not hosts:
        return busy
    values = {
        "organization_id": organization_id,
        "member_ids": list(busy),
        "start": start,
        "end": end,
        "call_after": start - calls_repository.CALL_LOOKBACK,
        "hold_after": start - reservations_repository.HOLD_LOOKBACK,
        "now": utcnow(),
    }
    for closer_id, call_start, call_end, before, after in (
        await session.execute(_own_busy_spans(), values)
    ).all():
        if closer_id is not None and call_start is not None and call_end is not None:
            busy[closer_id].extend(
                [call_start - (before or 0) * MINUTE_US], [call_end + (after or 0) * MINUTE_US]
            )
    calendars = await stored_busy_spans(session, [h.connection for h in hosts], start, end)
    for host in hosts:
        own = calendars[host.connection.id]
        busy[host.member.id].extend(own.starts, own.ends)
    return busy


def _build_own_busy_spans() -> CompoundSelect[str | None, int, int, int, int]:
    """:func:`busy_spans_by_host`'s own busy time, built once (``closerdesk.kit.statements``):
    the hosts' live calls, each with its link's buffers, and their live slot reservations, which
    hold time as a call of their link would (docs/sales-floor.md, "Slot reservations"), in one
    ``UNION ALL``."""
    organization_id: BindParameter[str] = bindparam("organization_id")
    member_ids: BindParameter[Sequence[str]] = bindparam("member_ids", expanding=True)
    start: BindParameter[datetime] = bindparam("start")
    end: BindParameter[datetime] = bindparam("end")
    calls = (
        select(
            Call.closer_id,
            epoch_us(Call.scheduled_at),
            epoch_us(Call.ends_at),
            BookingLink.buffer_before_minutes,
            BookingLink.buffer_after_minutes,
        )
        .outerjoin(BookingLink, BookingLink.id == Call.booking_link_id)
        .where(
            Call.organization_id == organization_id,
            Call.closer_id.in_(member_ids),
            calls_repository.live_booking_call(),
            calls_repository.overlaps(start, end, after=bindparam("call_after")),
        )
    )
    holds = reservations_repository.live_hold_spans(
        organization_id, member_ids, start, end, bindparam("now"), after=bindparam("hold_after")
    )
    return calls.union_all(holds)


_own_busy_spans = built_once(_build_own_busy_spans)


def slot_window(link: BookingLink, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The span whose busy time can block a slot of ``link`` starting in ``[start, end)``:
    widened on both sides by the duration and both buffers."""
    margin = timedelta(
        minutes=link.duration_minutes + link.buffer_before_minutes + link.buffer_after_minutes
    )
    return start - margin, end + margin


async def link_slots(
    session: AsyncSession,
    link: BookingLink,
    start: datetime,
    end: datetime,
    now: datetime,
) -> list[Slot]:
    """Offered slots starting in ``[start, end)`` with the free hosts of each (docs/api.md "Slots").

    Raises ``ValidationFailed`` (400) for an empty range or one over 62 days.
    """
    if end <= start:
        raise ValidationFailed.field("end", "must be after start")
    if end - start > MAX_SLOT_RANGE:
        raise ValidationFailed.field("end", "the range spans at most 62 days")
    hosts = await bookable_hosts(session, link)
    busy = await busy_spans_by_host(
        session, link.organization_id, hosts, *slot_window(link, start, end)
    )
    slots = find_slots(
        [HostBusySpans(h.member.id, h.schedule, busy[h.member.id]) for h in hosts if h.schedule],
        start_utc=start,
        end_utc=end,
        duration_minutes=link.duration_minutes,
        slot_interval_minutes=link.slot_interval_minutes,
        minimum_notice_minutes=link.minimum_notice_minutes,
        buffer_before_minutes=link.buffer_before_minutes,
        buffer_after_minutes=link.buffer_after_minutes,
        now=now,
    )
    loads = await cap_loads(
        session, link.organization_id, [h.member for h in hosts], start, end, now=now
    )
    if not loads:
        return slots
    # A host at its daily or weekly cap is not offered on that day or week.
    capped: list[Slot] = []
    for slot in slots:
        members = tuple(
            m for m in slot.member_ids if m not in loads or within_caps(loads[m], slot.start)
        )
        if members:
            capped.append(Slot(slot.start, slot.end, members))
    return capped


async def free_hosts_for_slot(
    session: AsyncSession, link: BookingLink, start: datetime, now: datetime
) -> list[str]:
    """Hosts offered at exactly ``start`` (an offered slot of the link), else ``[]``."""
    slots = await link_slots(session, link, start, start + timedelta(microseconds=1), now)
    return list(slots[0].member_ids) if slots and slots[0].start == start else []


@dataclass(frozen=True)
class Buffers:
    """The free time a call keeps around it (a link's ``buffer_before_minutes`` and
    ``buffer_after_minutes``; none for a call without a link)."""

    before_minutes: int = 0
    after_minutes: int = 0

    @classmethod
    def of(cls, link: BookingLink | None) -> Buffers:
        if link is None:
            return cls()
        return cls(link.buffer_before_minutes, link.buffer_after_minutes)

    def around(self, start: datetime, end: datetime) -> Interval:
        """The span ``[start, end)`` holds with its buffers: how round robin sees a call."""
        return Interval(
            start - timedelta(minutes=self.before_minutes),
            end + timedelta(minutes=self.after_minutes),
        )

    def busy_window(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """The span whose busy time (buffered calls included) can meet ``[start, end)`` with
        these buffers: widened on both sides by both buffers and the span's length."""
        margin = timedelta(minutes=self.before_minutes + self.after_minutes) + (end - start)
        return start - margin, end + margin


async def free_hosts_for_span(
    session: AsyncSession,
    organization_id: str,
    hosts: Sequence[Host],
    start: datetime,
    end: datetime,
    buffers: Buffers,
) -> list[str]:
    """Hosts free for all of ``[start, end)``: inside their availability (when they have a
    schedule) and clear of busy time with the ``buffers``. Off-grid times are fine here
    (auto-reassign keeps the call's time)."""
    busy = await busy_by_host(session, organization_id, hosts, *buffers.busy_window(start, end))
    return [
        host.member.id
        for host in hosts
        if not span_reasons(host, busy[host.member.id], start, end, buffers)
    ]


def span_reasons(
    host: Host,
    busy: Sequence[Interval],
    start: datetime,
    end: datetime,
    buffers: Buffers,
) -> list[str]:
    """Why ``host`` cannot take all of ``[start, end)`` by round robin, in this order:
    ``OUTSIDE_AVAILABILITY`` (it has a schedule and the span is not inside it),
    ``CLOSER_CONFLICT`` (``busy``, its busy time as :func:`busy_by_host` reads it, meets the
    span with its ``buffers``); ``[]`` when it is free. The one rule behind auto-reassign,
    booking by link and the reassign candidates (docs/sales-floor.md)."""
    reasons: list[str] = []
    if host.schedule is not None:
        margin = end - start
        available = expand(host.schedule, start - margin, end + margin)
        if not any(a.start <= start and end <= a.end for a in available):
            reasons.append("OUTSIDE_AVAILABILITY")
    held = buffers.around(start, end)
    if any(b.overlaps(held) for b in busy):
        reasons.append("CLOSER_CONFLICT")
    return reasons
