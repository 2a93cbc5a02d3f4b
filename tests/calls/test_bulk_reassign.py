"""``POST /v1/calls/bulk-reassign`` (docs/sales-floor.md, "Bulk reassign"): the batch, the dry
run's plan against the real run, one transaction per call, round robin over the batch, the
500 cap, other organizations, ``Idempotency-Key``.

The calendars here behave as external ones (their writes are not in the change's transaction)
so that a failing call exercises the compensation; switches make one call's calendar create
or one link's revocation fail.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarError,
    CalendarProvider,
    CreatedEvent,
    EventDraft,
)
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import CalendarEvent, Call, CallEvent, TeamMember
from closerdesk.providers import Providers, default_providers
from closerdesk.scheduling.intervals import Interval
from tests.booking_links.helpers import create_link, day, host
from tests.calls.helpers import (
    add_busy_block,
    assert_link_live,
    assert_link_revoked,
    call_row,
    fetch_all,
    fetch_one,
    future,
    iso,
    webhooks,
    webhooks_for_call,
)
from tests.envelopes import error, ok
from tests.factories import Org, create_call, create_lead, create_member

URL = "/v1/calls/bulk-reassign"


# --- switchable providers ------------------------------------------------------------------------
@dataclass
class Switches:
    create_fails_for: set[str] = field(default_factory=set)  # call ids
    revoke_fails_for: set[str] = field(default_factory=set)  # conferencing links
    created: list[str] = field(default_factory=list)  # call ids whose event was created
    cancelled: list[str] = field(default_factory=list)  # event ids cancelled


class ExternalCalendar:
    """The built-in calendar seen as an external one, with a per-call create failure."""

    in_transaction = False

    def __init__(self, inner: CalendarProvider, switches: Switches) -> None:
        self.inner, self.switches, self.name = inner, switches, inner.name

    async def connect(self, account: CalendarAccount) -> CalendarAccount:
        return await self.inner.connect(account)

    async def sync(self, account: CalendarAccount, state: str | None, window: Interval) -> Any:
        return await self.inner.sync(account, state, window)

    async def create_event(self, account: CalendarAccount, draft: EventDraft) -> CreatedEvent:
        if draft.call_id in self.switches.create_fails_for:
            raise CalendarError("create refused")
        created = await self.inner.create_event(account, draft)
        self.switches.created.append(draft.call_id)
        return created

    async def move_event(self, account: CalendarAccount, event_id: str, draft: EventDraft) -> None:
        await self.inner.move_event(account, event_id, draft)

    async def cancel_event(self, account: CalendarAccount, event_id: str) -> None:
        self.switches.cancelled.append(event_id)
        await self.inner.cancel_event(account, event_id)

    async def busy(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[Interval]:
        return await self.inner.busy(account, start, end)


class SwitchedConferencing:
    def __init__(self, inner: Any, switches: Switches) -> None:
        self.inner, self.switches, self.name = inner, switches, inner.name

    async def issue_link(self, organization_id: str, call_id: str) -> str:
        return str(await self.inner.issue_link(organization_id, call_id))

    async def revoke_link(self, organization_id: str, url: str) -> None:
        if url in self.switches.revoke_fails_for:
            raise RuntimeError("revoke failed")
        await self.inner.revoke_link(organization_id, url)

    async def point_link(self, organization_id: str, url: str, room_url: str) -> None:
        await self.inner.point_link(organization_id, url, room_url)


@pytest.fixture
def switches() -> Switches:
    return Switches()


@pytest.fixture
def providers(settings: Settings, switches: Switches) -> Providers:
    real = default_providers(settings)

    def calendars(session: AsyncSession, name: str) -> CalendarProvider:
        return ExternalCalendar(real.calendars(session, name), switches)

    def conferencing(session: AsyncSession) -> Any:
        return SwitchedConferencing(real.conferencing(session), switches)

    return Providers(calendars=calendars, conferencing=conferencing, secrets=real.secrets)


# --- arranging -----------------------------------------------------------------------------------
@dataclass
class Floor:
    source: TeamMember
    hosts: list[TeamMember]
    calls: list[Call]


async def floor(
    session: AsyncSession, org: Org, *, hosts: int = 3, calls: int = 6, hours_apart: float = 2
) -> Floor:
    """A closer with ``calls`` upcoming calls (``hours_apart`` apart, from 3 days ahead) and
    ``hosts`` other free closers with valid calendars."""
    source = await create_member(session, org)
    others = [await create_member(session, org) for _ in range(hosts)]
    lead = await create_lead(session, org)
    start = future(days=3)
    made = [
        await create_call(
            session, org, lead=lead, closer=source, scheduled_at=start + timedelta(hours=h)
        )
        for h in (i * hours_apart for i in range(calls))
    ]
    return Floor(source, others, made)


async def bulk(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post(URL, headers={**org.auth("write"), **headers}, json=body)


def plan_of(data: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    return [(r["call_id"], r["new_closer_id"], r["code"]) for r in data["results"]]


async def closers_of(database: Database, call_ids: list[str]) -> dict[str, str | None]:
    rows = await fetch_all(database, select(Call).where(Call.id.in_(call_ids)))
    return {c.id: c.closer_id for c in rows}


async def reassign_rows(database: Database, call_id: str) -> int:
    n = await fetch_one(
        database,
        select(func.count())
        .select_from(CallEvent)
        .where(CallEvent.call_id == call_id, CallEvent.type == "closer_reassigned"),
    )
    return int(n or 0)


# --- tests ---------------------------------------------------------------------------------------
async def test_auto_spreads_six_calls_over_three_hosts_and_the_dry_run_said_so(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, database: Database
) -> None:
    f = await floor(session, org)
    body = {
        "from_closer_id": f.source.id,
        "to": "auto",
        "reason": "out sick",
        "reason_code": "closer_unavailable",
    }
    dry = ok(await bulk(client, org, {**body, "dry_run": True}))
    assert dry["dry_run"] is True
    assert [r["call_id"] for r in dry["results"]] == [c.id for c in f.calls]  # scheduled order
    assert dry["assigned"] == {h.id: 2 for h in f.hosts}
    assert (dry["total"], dry["succeeded"], dry["failed"]) == (6, 6, 0)
    # the dry run changed nothing and announced nothing
    assert set((await closers_of(database, [c.id for c in f.calls])).values()) == {f.source.id}
    assert await webhooks(database, org, "call.closer_reassigned") == []

    real = ok(await bulk(client, org, body))
    assert real["dry_run"] is False
    assert plan_of(real) == plan_of(dry)
    assert real["assigned"] == {h.id: 2 for h in f.hosts}
    now = await closers_of(database, [c.id for c in f.calls])
    assert now == {r["call_id"]: r["new_closer_id"] for r in real["results"]}
    for item, call in zip(real["results"], f.calls, strict=True):
        assert item["previous_closer_id"] == f.source.id
        assert item["old_event_orphaned"] is False
        await assert_link_live(client, item["conferencing_link"])
        await assert_link_revoked(client, required_link(call))
        hooks = await webhooks_for_call(database, org, "call.closer_reassigned", call.id)
        assert len(hooks) == 1
        data = hooks[0].payload["data"]
        assert data["assignment"] == "round_robin"
        assert data["reason"] == "out sick"
        assert data["reason_code"] == "closer_unavailable"
        assert data["new_closer_id"] == item["new_closer_id"]
        assert (await call_row(database, call.id)).reason_code == "closer_unavailable"
        assert await reassign_rows(database, call.id) == 1


def required_link(call: Call) -> str:
    assert call.conferencing_link is not None
    return call.conferencing_link


async def test_overlapping_calls_of_the_batch_never_share_a_closer(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, database: Database
) -> None:
    # three calls at the same time (arranged with override), two free hosts
    f = await floor(session, org, hosts=2, calls=3, hours_apart=0)
    body = {"from_closer_id": f.source.id, "to": "auto"}
    dry = ok(await bulk(client, org, {**body, "dry_run": True}))
    codes = [r["code"] for r in dry["results"]]
    assert codes == [None, None, "NO_HOST_AVAILABLE"]
    planned = [r["new_closer_id"] for r in dry["results"][:2]]
    assert sorted(planned) == sorted(h.id for h in f.hosts)
    real = ok(await bulk(client, org, body))
    assert plan_of(real) == plan_of(dry)
    assert (await call_row(database, f.calls[2].id)).closer_id == f.source.id


async def test_overlapping_calls_to_one_named_closer_conflict_in_plan_and_run(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, database: Database
) -> None:
    f = await floor(session, org, hosts=1, calls=3, hours_apart=0.5)  # 45-minute calls overlap
    to = f.hosts[0].id
    body = {"from_closer_id": f.source.id, "to": to}
    dry = ok(await bulk(client, org, {**body, "dry_run": True}))
    assert [r["code"] for r in dry["results"]] == [None, "CLOSER_CONFLICT", None]
    conflict = dry["results"][1]["details"]["conflicts"][0]
    assert conflict["call_id"] == f.calls[0].id
    assert conflict["source"] == "call"
    real = ok(await bulk(client, org, body))
    assert plan_of(real) == plan_of(dry)
    assert real["results"][1]["details"]["conflicts"][0]["call_id"] == f.calls[0].id
    assert (real["succeeded"], real["failed"]) == (2, 1)


async def test_a_failing_call_does_not_stop_the_others(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, database: Database
) -> None:
    f = await floor(session, org, hosts=1, calls=3)
    to = f.hosts[0]
    second = f.calls[1]
    assert second.scheduled_at is not None
    await add_busy_block(
        client, org, to.id, second.scheduled_at, second.scheduled_at + timedelta(minutes=10)
    )
    body = {"from_closer_id": f.source.id, "to": to.id}
    dry = ok(await bulk(client, org, {**body, "dry_run": True}))
    real = ok(await bulk(client, org, body))
    assert plan_of(real) == plan_of(dry)
    assert [r["code"] for r in real["results"]] == [None, "CLOSER_CONFLICT", None]
    assert real["results"][1]["details"]["conflicts"][0]["source"] == "calendar"
    closers = await closers_of(database, [c.id for c in f.calls])
    assert closers == {f.calls[0].id: to.id, second.id: f.source.id, f.calls[2].id: to.id}
    assert len(await webhooks(database, org, "call.closer_reassigned")) == 2


async def test_a_provider_failure_leaves_that_call_untouched(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    database: Database,
    switches: Switches,
) -> None:
    f = await floor(session, org, hosts=1, calls=4)
    to = f.hosts[0]
    broken_create, broken_revoke = f.calls[1], f.calls[2]
    switches.create_fails_for.add(broken_create.id)
    switches.revoke_fails_for.add(required_link(broken_revoke))
    real = ok(await bulk(client, org, {"from_closer_id": f.source.id, "to": to.id}))
    codes = [r["code"] for r in real["results"]]
    assert codes == [None, "CALENDAR_PROVIDER_ERROR", "INTERNAL_ERROR", None]
    assert real["results"][2]["error"] == "An internal error occurred."  # nothing leaks
    for broken in (broken_create, broken_revoke):
        row = await call_row(database, broken.id)
        assert (row.closer_id, row.calendar_event_id) == (f.source.id, broken.calendar_event_id)
        assert row.conferencing_link == broken.conferencing_link
        await assert_link_live(client, required_link(broken))
        assert await reassign_rows(database, broken.id) == 0
        assert await webhooks_for_call(database, org, "call.closer_reassigned", broken.id) == []
        # no event of the call is left on the new closer's calendar
        events = await fetch_all(
            database,
            select(CalendarEvent).where(
                CalendarEvent.call_id == broken.id, CalendarEvent.status != "cancelled"
            ),
        )
        assert [e.id for e in events] == [broken.calendar_event_id]
    # the revoke failed after the new event was created: that event was cancelled again
    assert broken_revoke.id in switches.created
    for moved in (f.calls[0], f.calls[3]):
        assert (await call_row(database, moved.id)).closer_id == to.id
    assert len(await webhooks(database, org, "call.closer_reassigned")) == 2


async def test_listed_calls_outside_the_batch_get_their_code(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    other_org: Org,
    database: Database,
) -> None:
    f = await floor(session, org, hosts=1, calls=2)
    lead = await create_lead(session, org)
    someone = await create_member(session, org)
    theirs = await create_call(session, org, lead=lead, closer=someone, scheduled_at=future(days=4))
    cancelled = await create_call(
        session, org, lead=lead, closer=f.source, scheduled_at=future(days=4), status="cancelled"
    )
    declined = await create_call(
        session, org, lead=lead, closer=f.source, scheduled_at=future(days=4), status="declined"
    )
    gone = await create_call(session, org, lead=lead, closer=f.source, scheduled_at=future(days=-1))
    intent = await create_call(session, org, lead=lead, closer=f.source, call_kind="intent")
    late = await create_call(session, org, lead=lead, closer=f.source, scheduled_at=future(days=9))
    foreign_closer = await create_member(session, other_org)
    foreign_lead = await create_lead(session, other_org)
    foreign = await create_call(
        session, other_org, lead=foreign_lead, closer=foreign_closer, scheduled_at=future(days=4)
    )
    listed = [
        f.calls[0].id,
        theirs.id,
        cancelled.id,
        declined.id,
        gone.id,
        intent.id,
        late.id,
        foreign.id,
        "call_missing",
        f.calls[0].id,  # counted once
    ]
    body = {
        "from_closer_id": f.source.id,
        "to": f.hosts[0].id,
        "call_ids": listed,
        "scheduled_before": iso(future(days=8)),
    }
    for dry_run in (True, False):
        data = ok(await bulk(client, org, {**body, "dry_run": dry_run}))
        assert [(r["call_id"], r["code"]) for r in data["results"]] == [
            (f.calls[0].id, None),
            (theirs.id, "CALL_NOT_OF_CLOSER"),
            (cancelled.id, "CALL_CANCELLED"),
            (declined.id, "CALL_DECLINED"),
            (gone.id, "CALL_IN_PAST"),
            (intent.id, "CALL_NOT_REASSIGNABLE"),
            (late.id, "CALL_OUTSIDE_WINDOW"),
            (foreign.id, "CALL_NOT_FOUND"),
            ("call_missing", "CALL_NOT_FOUND"),
        ]
        foreign_item = data["results"][7]
        assert foreign_item["scheduled_at"] is None  # nothing of another organization shows
        assert foreign_item["previous_closer_id"] is None
    assert (await call_row(database, foreign.id)).closer_id == foreign_closer.id
    assert (await call_row(database, f.calls[1].id)).closer_id == f.source.id  # not listed


async def test_the_window_selects_the_calls(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, database: Database
) -> None:
    f = await floor(session, org, hosts=1, calls=4)
    starts = [c.scheduled_at for c in f.calls]
    assert all(s is not None for s in starts)
    body = {
        "from_closer_id": f.source.id,
        "to": f.hosts[0].id,
        "scheduled_after": iso(starts[1]),  # type: ignore[arg-type]
        "scheduled_before": iso(starts[3]),  # type: ignore[arg-type]
    }
    data = ok(await bulk(client, org, body))
    assert [r["call_id"] for r in data["results"]] == [f.calls[1].id, f.calls[2].id]
    r = await bulk(client, org, {**body, "scheduled_before": body["scheduled_after"]})
    error(r, 400, "VALIDATION_ERROR")


async def test_other_organizations_closers_are_not_found(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, other_org: Org, database: Database
) -> None:
    f = await floor(session, org, hosts=1, calls=1)
    foreign = await create_member(session, other_org)
    inactive = await create_member(session, org, is_active=False)
    for body in (
        {"from_closer_id": foreign.id, "to": f.hosts[0].id},
        {"from_closer_id": f.source.id, "to": foreign.id},
        {"from_closer_id": f.source.id, "to": inactive.id},
        {"from_closer_id": "user_nobody", "to": "auto"},
    ):
        for dry_run in (True, False):
            error(await bulk(client, org, {**body, "dry_run": dry_run}), 404, "CLOSER_NOT_FOUND")
    assert (await call_row(database, f.calls[0].id)).closer_id == f.source.id
    # read scope cannot
    r = await client.post(
        URL, headers=org.auth("read"), json={"from_closer_id": f.source.id, "to": "auto"}
    )
    error(r, 403, "FORBIDDEN")


async def test_same_and_disconnected_closers_are_per_call_codes(
    client: httpx.AsyncClient, session: AsyncSession, org: Org
) -> None:
    f = await floor(session, org, hosts=0, calls=2)
    unplugged = await create_member(session, org, calendar=False)
    for to, code in ((f.source.id, "SAME_CLOSER"), (unplugged.id, "CALENDAR_NOT_CONNECTED")):
        for dry_run in (True, False):
            body = {"from_closer_id": f.source.id, "to": to, "dry_run": dry_run}
            data = ok(await bulk(client, org, body))
            assert [r["code"] for r in data["results"]] == [code, code]
            assert data["assigned"] == {}


async def test_more_than_500_calls_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, org: Org
) -> None:
    source = await create_member(session, org)
    to = await create_member(session, org)
    lead = await create_lead(session, org)
    start = future(days=3)
    session.add_all(
        Call(
            id=new_id("call"),
            organization_id=org.id,
            call_kind="booking",
            status="scheduled",
            lead_id=lead.id,
            closer_id=source.id,
            closer_name=source.name,
            closer_email=source.email,
            scheduled_at=start + timedelta(minutes=i),
            ends_at=start + timedelta(minutes=i + 30),
            duration_minutes=30,
            time_zone="UTC",
            action_items=[],
            form_data=[],
            reschedule_count=0,
            sequence=0,
            override_conflict=True,
        )
        for i in range(501)
    )
    await session.commit()
    body = {"from_closer_id": source.id, "to": to.id}
    for dry_run in (True, False):
        r = await bulk(client, org, {**body, "dry_run": dry_run})
        assert error(r, 400, "BULK_LIMIT_EXCEEDED")["details"] == {"limit": 500}
    r = await bulk(client, org, {**body, "call_ids": [f"call_{i}" for i in range(501)]})
    assert error(r, 400, "VALIDATION_ERROR")["details"][0]["field"] == "call_ids"
    # a window of 500 of them is fine (dry run: the plan only)
    last = start + timedelta(minutes=500)
    data = ok(await bulk(client, org, {**body, "dry_run": True, "scheduled_before": iso(last)}))
    assert data["total"] == 500


async def test_a_retry_with_the_same_key_replays_and_does_not_reassign_twice(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, database: Database
) -> None:
    f = await floor(session, org, hosts=2, calls=4)
    body = {"from_closer_id": f.source.id, "to": "auto"}
    first = await bulk(client, org, body, **{"Idempotency-Key": "bulk-1"})
    data = ok(first)
    assert data["succeeded"] == 4
    again = await bulk(client, org, body, **{"Idempotency-Key": "bulk-1"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    for call in f.calls:
        assert await reassign_rows(database, call.id) == 1
    assert len(await webhooks(database, org, "call.closer_reassigned")) == 4
    other = await bulk(client, org, {**body, "dry_run": True}, **{"Idempotency-Key": "bulk-1"})
    error(other, 422, "IDEMPOTENCY_KEY_REUSED")


async def test_the_plan_follows_round_robin_ties_as_the_run_does(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, database: Database
) -> None:
    """A host's last booking decides ties: the dry run counts the batch's own bookings as the
    latest ones, as the real run stamps them."""
    source = await create_member(session, org)
    a = await create_member(session, org, last_booked_at=utcnow() - timedelta(days=2))
    b = await create_member(session, org, last_booked_at=utcnow() - timedelta(days=1))
    c = await create_member(session, org)
    link = await create_link(client, org, [host(source.id), host(a.id), host(b.id), host(c.id)])
    lead = await create_lead(session, org)
    # b and c already hold one call of the link this month, a none
    for member in (b, c):
        await create_call(
            session,
            org,
            lead=lead,
            closer=member,
            scheduled_at=future(days=20),
            booking_link_id=link["id"],
        )
    start = future(days=3).replace(hour=10, minute=0)
    calls = [
        await create_call(
            session,
            org,
            lead=lead,
            closer=source,
            scheduled_at=start + timedelta(hours=h),
            booking_link_id=link["id"],
            duration_minutes=30,
        )
        for h in range(5)
    ]
    body = {"from_closer_id": source.id, "to": "auto"}
    dry = ok(await bulk(client, org, {**body, "dry_run": True}))
    real = ok(await bulk(client, org, body))
    assert plan_of(real) == plan_of(dry)
    assert [r["new_closer_id"] for r in real["results"]][:3] == [a.id, c.id, b.id]
    assert len(real["results"]) == len(calls)


async def test_the_plan_counts_live_slot_reservations_against_caps(
    client: httpx.AsyncClient, session: AsyncSession, org: Org
) -> None:
    """A holds a reservation later that day, which fills its daily cap: B gets the call in the
    plan and the run, though B holds more of the month's calls (sales-floor.md, "Round-robin
    controls")."""
    source = await create_member(session, org)
    a = await create_member(session, org, id="user_bulkholda", max_bookings_per_day=1)
    b = await create_member(session, org, id="user_bulkholdb")
    lead = await create_lead(session, org)
    for days in (10, 11):
        await create_call(session, org, lead=lead, closer=b, scheduled_at=day(days, 10))
    call = await create_call(session, org, lead=lead, closer=source, scheduled_at=day(3, 10))
    link = await create_link(client, org, [host(a.id)])
    held = await client.post(
        f"/v1/booking-links/{link['id']}/reservations",
        headers=org.headers,
        json={"start": iso(day(3, 14))},
    )
    ok(held, 201)
    body = {"from_closer_id": source.id, "to": "auto"}
    dry = ok(await bulk(client, org, {**body, "dry_run": True}))
    assert plan_of(dry) == [(call.id, b.id, None)]
    assert plan_of(ok(await bulk(client, org, body))) == plan_of(dry)


@pytest.mark.parametrize("n", [100])
async def test_timing_of_a_100_call_bulk_reassign(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, database: Database, n: int
) -> None:
    """Not a timed assertion: prints how long a real 100-call bulk reassign takes here
    (``pytest -s`` shows it; bench/bulk_reassign.py measures it on its own)."""
    f = await floor(session, org, hosts=4, calls=n, hours_apart=1)
    started = time.perf_counter()
    data = ok(await bulk(client, org, {"from_closer_id": f.source.id, "to": "auto"}))
    elapsed = time.perf_counter() - started
    assert data["succeeded"] == n
    assert data["assigned"] == {h.id: n // 4 for h in f.hosts}
    print(f"\nbulk reassign of {n} calls on {database.dialect}: {elapsed:.2f} s")  # noqa: T201


async def test_the_plan_counts_its_own_calls_against_a_daily_cap_as_the_run_does(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, database: Database
) -> None:
    # four calls on one New York day; one host may take a single call that day
    source = await create_member(session, org)
    capped = await create_member(session, org, max_bookings_per_day=1)
    free = await create_member(session, org)
    lead = await create_lead(session, org)
    day = (utcnow() + timedelta(days=3)).replace(hour=13, minute=0, second=0, microsecond=0)
    calls = [
        await create_call(
            session, org, lead=lead, closer=source, scheduled_at=day + timedelta(hours=2 * i)
        )
        for i in range(4)
    ]
    await session.commit()
    body = {"from_closer_id": source.id, "to": "auto"}
    dry = ok(await bulk(client, org, {**body, "dry_run": True}))
    assert dry["assigned"] == {capped.id: 1, free.id: 3}
    real = ok(await bulk(client, org, body))
    assert plan_of(real) == plan_of(dry)
    moved = await closers_of(database, [c.id for c in calls])
    assert sorted(moved.values()).count(capped.id) == 1
