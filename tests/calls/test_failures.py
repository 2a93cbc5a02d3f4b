"""Failure injection for the calendar/transaction seams of book, reassign and cancel (SPEC §3).

The providers are the real built-in ones wrapped in switches: a switched-on method raises
instead of doing its work, and every calendar call is recorded so a test can see which event
the service created and which it cancelled (the compensation).

The three reassign failure paths:

a) creating the new event fails → 502 ``CALENDAR_PROVIDER_ERROR`` and nothing changed;
b) the transaction fails after the new event was created → 500 ``INTERNAL_ERROR``, nothing
   changed, and that new event is cancelled again (no stray event);
c) cancelling the old event fails after the commit → 200 with ``old_event_orphaned: true`` and a
   persisted ``calendar_cleanups`` row that keeps trying.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session as OrmSession

from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarError,
    CalendarProvider,
    CreatedEvent,
    EventDraft,
)
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit import required
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import (
    CalendarCleanup,
    CalendarConnection,
    CalendarEvent,
    Call,
    CallEvent,
    ConferencingLink,
    Lead,
    TeamMember,
    WebhookEvent,
)
from closerdesk.providers import Providers, default_providers
from closerdesk.scheduling.intervals import Interval
from tests.factories import Org, create_call, create_lead, create_member

SECRET = "injected-failure-7f3a9c"  # must never reach a client (SPEC §2: no stack trace leaks)
INTERNAL_ERROR_TEXT = "An internal error occurred."


# --- the switchable providers --------------------------------------------------------------------
@dataclass
class Faults:
    """Switches (``calendar.create_event``, ``calendar.cancel_event``, ``calendar.busy``,
    ``conferencing.issue_link``, ``conferencing.revoke_link``) and a log of calendar calls."""

    failing: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (method, connection, event)
    moved_to: list[datetime] = field(default_factory=list)  # each move_event's new start

    def hit(self, switch: str) -> None:
        if switch not in self.failing:
            return
        if switch.startswith("calendar."):
            raise CalendarError(f"{SECRET}: {switch}")
        raise RuntimeError(f"{SECRET}: {switch}")

    def events(self, method: str) -> list[str]:
        return [event_id for name, _, event_id in self.calls if name == method]


class FlakyCalendar:
    """The real provider underneath, behaving as an external calendar (its writes are not in
    the change's transaction, so compensation and clean-up rows apply); raises where a switch
    says so; records every call."""

    in_transaction = False

    def __init__(self, inner: CalendarProvider, faults: Faults) -> None:
        self.inner, self.faults, self.name = inner, faults, inner.name

    async def connect(self, account: CalendarAccount) -> CalendarAccount:
        return await self.inner.connect(account)

    async def sync(self, account: CalendarAccount, state: str | None, window: Interval) -> Any:
        return await self.inner.sync(account, state, window)

    async def create_event(self, account: CalendarAccount, draft: EventDraft) -> CreatedEvent:
        self.faults.hit("calendar.create_event")
        created = await self.inner.create_event(account, draft)
        self.faults.calls.append(("create_event", account.connection_id, created.event_id))
        return created

    async def move_event(self, account: CalendarAccount, event_id: str, draft: EventDraft) -> None:
        self.faults.calls.append(("move_event", account.connection_id, event_id))
        self.faults.moved_to.append(draft.starts_at)
        self.faults.hit("calendar.move_event")
        await self.inner.move_event(account, event_id, draft)

    async def cancel_event(self, account: CalendarAccount, event_id: str) -> None:
        self.faults.calls.append(("cancel_event", account.connection_id, event_id))  # attempts
        self.faults.hit("calendar.cancel_event")
        await self.inner.cancel_event(account, event_id)

    async def busy(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[Interval]:
        self.faults.hit("calendar.busy")
        return await self.inner.busy(account, start, end)


class FlakyConferencing:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self.inner, self.faults, self.name = inner, faults, inner.name

    async def issue_link(self, organization_id: str, call_id: str) -> str:
        self.faults.hit("conferencing.issue_link")
        return str(await self.inner.issue_link(organization_id, call_id))

    async def revoke_link(self, organization_id: str, url: str) -> None:
        self.faults.hit("conferencing.revoke_link")
        await self.inner.revoke_link(organization_id, url)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def providers(settings: Settings, faults: Faults) -> Providers:
    """Overrides conftest's: the built-in providers behind the ``faults`` switches."""
    real = default_providers(settings)

    def calendars(session: AsyncSession, name: str) -> CalendarProvider:
        return FlakyCalendar(real.calendars(session, name), faults)

    def conferencing(session: AsyncSession) -> Any:
        return FlakyConferencing(real.conferencing(session), faults)

    return Providers(calendars=calendars, conferencing=conferencing, secrets=real.secrets)


@dataclass(eq=False)  # hashable: SQLAlchemy keeps listeners in weak dicts
class CommitFault:
    """A SQLAlchemy ``before_commit`` hook that makes the next commit (any session) fail once.

    Releasing a savepoint also fires ``before_commit``; those are let through."""

    armed: bool = False
    fired: int = 0

    def arm(self) -> None:
        self.armed = True

    def __call__(self, session: OrmSession) -> None:
        if self.armed and not session.in_nested_transaction():  # savepoints are not the commit
            self.armed, self.fired = False, self.fired + 1
            raise RuntimeError(f"{SECRET}: commit")


@pytest.fixture
def fail_next_commit() -> Iterator[CommitFault]:
    hook = CommitFault()
    event.listen(OrmSession, "before_commit", hook)
    yield hook
    event.remove(OrmSession, "before_commit", hook)


# --- arranging and observing ---------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    old: TeamMember
    new: TeamMember
    lead: Lead
    call: Call


@pytest.fixture
async def scene(session: AsyncSession, org: Org) -> Scene:
    """An upcoming booked call of ``old`` (with its built-in event and live link); ``new`` is a
    free closer with a valid built-in calendar."""
    old = await create_member(session, org)
    new = await create_member(session, org)
    lead = await create_lead(session, org)
    start = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    call = await create_call(session, org, lead=lead, closer=old, scheduled_at=start)
    return Scene(old, new, lead, call)


_COUNTED = (Call, CallEvent, WebhookEvent, CalendarEvent, ConferencingLink, CalendarCleanup)


async def row_counts(database: Database) -> dict[str, int]:
    async with database.reader() as s:
        return {
            m.__tablename__: int(await s.scalar(select(func.count()).select_from(m)) or 0)
            for m in _COUNTED
        }


async def call_row(database: Database, call_id: str) -> dict[str, Any]:
    async with database.reader() as s:
        row = (await s.execute(select(Call.__table__).where(Call.id == call_id))).mappings().one()
        return dict(row)


async def calendar_events(database: Database, connection_id: str) -> list[CalendarEvent]:
    async with database.reader() as s:
        return list(
            await s.scalars(
                select(CalendarEvent).where(CalendarEvent.connection_id == connection_id)
            )
        )


async def connection_of(database: Database, member_id: str) -> CalendarConnection:
    async with database.reader() as s:
        connection = await s.scalar(
            select(CalendarConnection).where(CalendarConnection.member_id == member_id)
        )
        assert connection is not None
        return connection


async def cleanups(database: Database) -> list[CalendarCleanup]:
    async with database.reader() as s:
        return list(await s.scalars(select(CalendarCleanup)))


async def webhook_types(database: Database) -> list[str]:
    async with database.reader() as s:
        return list(await s.scalars(select(WebhookEvent.type).order_by(WebhookEvent.created_at)))


async def meet(client: httpx.AsyncClient, link: str) -> int:
    """Status of following the built-in conferencing link (302 live, 410 revoked)."""
    assert link.startswith("http://closerdesk.test/meet/")
    r = await client.get(link.removeprefix("http://closerdesk.test"))
    return r.status_code


def assert_internal_error(r: httpx.Response) -> None:
    """A 500 envelope that names no exception, message, file or frame (SPEC §2)."""
    assert r.status_code == 500, r.text
    body = r.json()
    assert set(body) == {"success", "error", "code", "requestId"}
    assert body["success"] is False
    assert body["code"] == "INTERNAL_ERROR"
    assert body["error"] == INTERNAL_ERROR_TEXT
    assert body["requestId"] == r.headers["X-Request-Id"]
    for leak in (SECRET, "Traceback", "RuntimeError", ".py", "closerdesk."):
        assert leak not in r.text


async def reassign(client: httpx.AsyncClient, org: Org, scene: Scene) -> httpx.Response:
    return await client.post(
        f"/v1/calls/{scene.call.id}/reassign-closer",
        headers=org.headers,
        json={"new_closer_id": scene.new.id, "reason": "closer out sick"},
    )


# --- a) creating the new event fails -------------------------------------------------------------
async def test_reassign_create_event_fails_changes_nothing(
    client: httpx.AsyncClient, org: Org, scene: Scene, faults: Faults, database: Database
) -> None:
    before_row = await call_row(database, scene.call.id)
    before_counts = await row_counts(database)
    new_connection = await connection_of(database, scene.new.id)
    faults.failing.add("calendar.create_event")

    r = await reassign(client, org, scene)

    assert r.status_code == 502, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == "CALENDAR_PROVIDER_ERROR"
    assert body["error"].startswith("Creating the calendar event failed: ")
    assert body["requestId"] == r.headers["X-Request-Id"]
    assert await call_row(database, scene.call.id) == before_row
    assert await row_counts(database) == before_counts
    assert await calendar_events(database, new_connection.id) == []
    assert await meet(client, before_row["conferencing_link"]) == 302
    assert faults.events("create_event") == []
    assert faults.events("cancel_event") == []  # the old event is left alone
    old_events = await calendar_events(database, before_row["calendar_grant_id"])
    assert [(e.id, e.status) for e in old_events] == [(scene.call.calendar_event_id, "confirmed")]


async def test_reassign_busy_lookup_fails_502_unless_override(
    client: httpx.AsyncClient, org: Org, scene: Scene, faults: Faults, database: Database
) -> None:
    """The conflict check cannot ask the calendar: 502 and nothing changed; an override does not
    need the answer, so it goes through (SPEC §3 ``override_conflict``)."""
    before_row = await call_row(database, scene.call.id)
    before_counts = await row_counts(database)
    faults.failing.add("calendar.busy")

    r = await reassign(client, org, scene)

    assert r.status_code == 502, r.text
    assert r.json()["code"] == "CALENDAR_PROVIDER_ERROR"
    assert await call_row(database, scene.call.id) == before_row
    assert await row_counts(database) == before_counts
    assert faults.calls == []

    r = await client.post(
        f"/v1/calls/{scene.call.id}/reassign-closer",
        headers=org.headers,
        json={"new_closer_id": scene.new.id, "override_conflict": True},
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["old_event_orphaned"] is False


# --- b) the transaction fails after the new event was created ------------------------------------
async def _assert_rolled_back_and_compensated(
    client: httpx.AsyncClient,
    scene: Scene,
    faults: Faults,
    database: Database,
    before_row: dict[str, Any],
    before_counts: dict[str, int],
) -> None:
    assert await call_row(database, scene.call.id) == before_row
    assert await row_counts(database) == before_counts
    assert await webhook_types(database) == []
    assert await meet(client, before_row["conferencing_link"]) == 302
    # The service did create the new event, then cancelled exactly that one (and not the old).
    new_connection = await connection_of(database, scene.new.id)
    created = faults.events("create_event")
    assert len(created) == 1
    assert ("cancel_event", new_connection.id, created[0]) in faults.calls
    assert faults.events("cancel_event") == created
    assert not [
        e for e in await calendar_events(database, new_connection.id) if e.status != "cancelled"
    ]
    old_events = await calendar_events(database, before_row["calendar_grant_id"])
    assert [(e.id, e.status) for e in old_events] == [(scene.call.calendar_event_id, "confirmed")]
    assert await cleanups(database) == []


async def test_reassign_fails_in_transaction_removes_new_event(
    client: httpx.AsyncClient, org: Org, scene: Scene, faults: Faults, database: Database
) -> None:
    """The old link cannot be revoked: the new event and the new link exist by then."""
    before_row = await call_row(database, scene.call.id)
    before_counts = await row_counts(database)
    faults.failing.add("conferencing.revoke_link")

    r = await reassign(client, org, scene)

    assert_internal_error(r)
    await _assert_rolled_back_and_compensated(
        client, scene, faults, database, before_row, before_counts
    )


async def test_reassign_commit_fails_removes_new_event(
    client: httpx.AsyncClient,
    org: Org,
    scene: Scene,
    faults: Faults,
    database: Database,
    fail_next_commit: CommitFault,
) -> None:
    """Everything is flushed, then the commit itself fails."""
    before_row = await call_row(database, scene.call.id)
    before_counts = await row_counts(database)
    fail_next_commit.arm()

    r = await reassign(client, org, scene)

    assert fail_next_commit.fired == 1
    assert_internal_error(r)
    await _assert_rolled_back_and_compensated(
        client, scene, faults, database, before_row, before_counts
    )


async def test_reassign_commit_and_compensation_fail_queue_cleanup(
    client: httpx.AsyncClient,
    org: Org,
    scene: Scene,
    faults: Faults,
    database: Database,
    fail_next_commit: CommitFault,
) -> None:
    """When even removing the new event fails, a clean-up row keeps trying (no stray events)."""
    before_row = await call_row(database, scene.call.id)
    new_connection = await connection_of(database, scene.new.id)
    fail_next_commit.arm()
    faults.failing.add("calendar.cancel_event")

    r = await reassign(client, org, scene)

    assert_internal_error(r)
    assert await call_row(database, scene.call.id) == before_row
    assert await webhook_types(database) == []
    created = faults.events("create_event")
    assert len(created) == 1
    assert faults.events("cancel_event") == created
    [cleanup] = await cleanups(database)
    assert (cleanup.event_id, cleanup.connection_id, cleanup.provider, cleanup.call_id) == (
        created[0],
        new_connection.id,
        "builtin",
        scene.call.id,
    )
    assert cleanup.id.startswith("clean_")
    assert cleanup.organization_id == org.id
    assert cleanup.attempts == 1  # the compensation was the first attempt
    assert cleanup.resolved_at is None
    # Due again a minute after the failed compensation, not at once.
    assert utcnow() < cleanup.next_attempt_at <= utcnow() + timedelta(minutes=1)
    assert cleanup.last_error is not None
    assert "calendar.cancel_event" in cleanup.last_error


# --- c) cancelling the old event fails after the commit ------------------------------------------
async def test_reassign_old_event_cancel_fails_orphans_and_queues_cleanup(
    client: httpx.AsyncClient, org: Org, scene: Scene, faults: Faults, database: Database
) -> None:
    before_row = await call_row(database, scene.call.id)
    old_connection_id = before_row["calendar_grant_id"]
    old_event_id = before_row["calendar_event_id"]
    faults.failing.add("calendar.cancel_event")

    r = await reassign(client, org, scene)

    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["old_event_orphaned"] is True
    assert data["new_closer_id"] == scene.new.id
    assert data["previous_closer_id"] == scene.old.id
    assert faults.events("cancel_event") == [old_event_id]

    row = await call_row(database, scene.call.id)
    new_connection = await connection_of(database, scene.new.id)
    assert row["closer_id"] == scene.new.id
    assert row["closer_email"] == scene.new.email
    assert row["calendar_event_id"] == data["new_event_id"] != old_event_id
    assert row["calendar_grant_id"] == new_connection.id
    assert row["conferencing_link"] == data["conferencing_link"] != before_row["conferencing_link"]
    assert await meet(client, before_row["conferencing_link"]) == 410
    assert await meet(client, data["conferencing_link"]) == 302
    assert await webhook_types(database) == ["call.closer_reassigned"]

    [cleanup] = await cleanups(database)
    assert cleanup.event_id == old_event_id
    assert cleanup.connection_id == old_connection_id
    assert cleanup.provider == "builtin"
    assert cleanup.call_id == scene.call.id
    assert cleanup.organization_id == org.id
    assert cleanup.last_error is not None
    assert "calendar.cancel_event" in cleanup.last_error
    assert cleanup.resolved_at is None
    assert cleanup.next_attempt_at > utcnow() - timedelta(seconds=5)
    # The orphan is still on the old calendar: that is what the clean-up row is for.
    old_events = await calendar_events(database, old_connection_id)
    assert [(e.id, e.status) for e in old_events] == [(old_event_id, "confirmed")]

    got = await client.get(f"/v1/calls/{scene.call.id}", headers=org.headers)
    assert got.json()["data"]["closer_id"] == scene.new.id


async def test_cancel_event_fails_orphans_and_queues_cleanup(
    client: httpx.AsyncClient, org: Org, scene: Scene, faults: Faults, database: Database
) -> None:
    before_row = await call_row(database, scene.call.id)
    faults.failing.add("calendar.cancel_event")

    r = await client.post(
        f"/v1/calls/{scene.call.id}/cancel", headers=org.headers, json={"reason": "lead asked"}
    )

    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["id"] == scene.call.id
    assert data["status"] == "cancelled"
    assert data["cancel_reason"] == "lead asked"
    row = await call_row(database, scene.call.id)
    assert row["status"] == "cancelled"
    assert row["cancelled_at"] is not None
    assert await meet(client, before_row["conferencing_link"]) == 410
    assert await webhook_types(database) == ["call.cancelled"]
    assert faults.events("cancel_event") == [before_row["calendar_event_id"]]
    [cleanup] = await cleanups(database)
    assert cleanup.event_id == before_row["calendar_event_id"]
    assert cleanup.connection_id == before_row["calendar_grant_id"]
    assert cleanup.provider == "builtin"
    assert cleanup.call_id == scene.call.id
    assert cleanup.last_error is not None
    assert cleanup.resolved_at is None


async def test_reschedule_to_new_closer_old_event_cancel_fails_queues_cleanup(
    client: httpx.AsyncClient, org: Org, scene: Scene, faults: Faults, database: Database
) -> None:
    """Reschedule + reassign in one step takes the same orphan path as reassign."""
    before_row = await call_row(database, scene.call.id)
    new_start = (utcnow() + timedelta(days=5)).replace(microsecond=0)
    faults.failing.add("calendar.cancel_event")

    r = await client.post(
        f"/v1/calls/{scene.call.id}/reschedule",
        headers=org.headers,
        json={
            "scheduled_at": isoformat_z(new_start),
            "time_zone": "America/Chicago",
            "new_closer_id": scene.new.id,
        },
    )

    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["closer_id"] == scene.new.id
    assert data["scheduled_at"] == isoformat_z(new_start)
    row = await call_row(database, scene.call.id)
    assert row["closer_id"] == scene.new.id
    assert faults.events("cancel_event") == [before_row["calendar_event_id"]]
    [cleanup] = await cleanups(database)
    assert cleanup.event_id == before_row["calendar_event_id"]
    assert cleanup.connection_id == before_row["calendar_grant_id"]
    assert cleanup.resolved_at is None


async def test_cancel_event_succeeds_no_cleanup(
    client: httpx.AsyncClient, org: Org, scene: Scene, faults: Faults, database: Database
) -> None:
    """The control: with no fault the old event goes and its clean-up row, written with the
    change, is resolved at once."""
    r = await client.post(f"/v1/calls/{scene.call.id}/cancel", headers=org.headers, json={})
    assert r.status_code == 200, r.text
    [cleanup] = await cleanups(database)
    assert cleanup.event_id == scene.call.calendar_event_id
    assert cleanup.resolved_at is not None
    assert cleanup.last_error is None
    events = await calendar_events(database, scene.call.calendar_grant_id or "")
    assert [e.status for e in events] == ["cancelled"]


async def test_a_crash_between_commit_and_cancel_leaves_a_due_cleanup(
    client: httpx.AsyncClient,
    org: Org,
    scene: Scene,
    database: Database,
    providers: Providers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The removal after the commit crashes (as if the process died there): the change stands
    and says so (200, ``old_event_orphaned``), the clean-up row written in the change's own
    transaction is there, due, and the retry loop removes the event."""
    from closerdesk.calendars import unit_of_work
    from closerdesk.calendars.cleanup import retry_due_cleanups

    async def crash(*_args: Any, **_kwargs: Any) -> bool:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(unit_of_work, "attempt_removal", crash)
    r = await reassign(client, org, scene)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["old_event_orphaned"] is True
    after = await call_row(database, scene.call.id)
    assert after["closer_id"] == scene.new.id  # the change itself committed
    [cleanup] = await cleanups(database)
    assert cleanup.id.startswith("clean_")
    assert cleanup.event_id == scene.call.calendar_event_id
    assert cleanup.resolved_at is None
    assert cleanup.attempts == 0
    # Due a minute after the change: the retry loop takes it from there.
    assert utcnow() < cleanup.next_attempt_at <= utcnow() + timedelta(minutes=1)
    old_events = await calendar_events(database, scene.call.calendar_grant_id or "")
    assert [e.status for e in old_events] == ["confirmed"]  # still there, for now
    async with database.writer() as s:
        await s.execute(update(CalendarCleanup).values(next_attempt_at=utcnow()))
        await s.commit()
    assert await retry_due_cleanups(database, providers) == 1
    old_events = await calendar_events(database, scene.call.calendar_grant_id or "")
    assert [e.status for e in old_events] == ["cancelled"]
    [cleanup] = await cleanups(database)
    assert cleanup.resolved_at is not None


# --- booking -------------------------------------------------------------------------------------
def _booking(closer: TeamMember, lead: Lead) -> dict[str, Any]:
    start = (utcnow() + timedelta(days=4)).replace(microsecond=0)
    return {
        "lead_id": lead.id,
        "closer_id": closer.id,
        "scheduled_at": isoformat_z(start),
        "duration_minutes": 30,
    }


async def test_book_create_event_fails_creates_nothing(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    faults: Faults,
    database: Database,
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    before_counts = await row_counts(database)
    faults.failing.add("calendar.create_event")

    r = await client.post("/v1/calls", headers=org.headers, json=_booking(closer, lead))

    assert r.status_code == 502, r.text
    assert r.json()["code"] == "CALENDAR_PROVIDER_ERROR"
    assert await row_counts(database) == before_counts


async def test_book_commit_fails_leaves_no_call_and_no_event(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    faults: Faults,
    database: Database,
    fail_next_commit: CommitFault,
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    connection = await connection_of(database, closer.id)
    before_counts = await row_counts(database)
    fail_next_commit.arm()

    r = await client.post("/v1/calls", headers=org.headers, json=_booking(closer, lead))

    assert fail_next_commit.fired == 1
    assert_internal_error(r)
    assert await row_counts(database) == before_counts
    assert await webhook_types(database) == []
    created = faults.events("create_event")
    assert len(created) == 1
    assert faults.calls[-1] == ("cancel_event", connection.id, created[0])
    assert not [
        e for e in await calendar_events(database, connection.id) if e.status != "cancelled"
    ]
    async with database.reader() as s:
        assert await s.scalar(select(Lead.status).where(Lead.id == lead.id)) == "new"
    # Nothing is left blocking the slot: the same booking now goes through.
    r = await client.post("/v1/calls", headers=org.headers, json=_booking(closer, lead))
    assert r.status_code == 201, r.text


async def test_book_commit_fails_with_inline_lead_creates_no_lead(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    faults: Faults,
    database: Database,
    fail_next_commit: CommitFault,
) -> None:
    closer = await create_member(session, org)
    start = (utcnow() + timedelta(days=4)).replace(microsecond=0)
    fail_next_commit.arm()

    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead": {"email": "new-lead@example.com", "full_name": "New Lead"},
            "closer_id": closer.id,
            "scheduled_at": isoformat_z(start),
            "duration_minutes": 30,
        },
    )

    assert_internal_error(r)
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Lead)) == 0
        assert await s.scalar(select(func.count()).select_from(Call)) == 0
    created = faults.events("create_event")
    assert faults.events("cancel_event") == created
    assert len(created) == 1


# --- reschedule on the same calendar: the event moves, and moves back ---------------------------
async def _reschedule_same_closer(
    client: httpx.AsyncClient, org: Org, scene: Scene, hours: int = 2
) -> httpx.Response:
    start = required(scene.call.scheduled_at, "scheduled_at")
    return await client.post(
        f"/v1/calls/{scene.call.id}/reschedule",
        headers=org.headers,
        json={"scheduled_at": isoformat_z(start + timedelta(hours=hours))},
    )


async def test_reschedule_move_fails_changes_nothing(
    client: httpx.AsyncClient, org: Org, scene: Scene, faults: Faults, database: Database
) -> None:
    before_row = await call_row(database, scene.call.id)
    before_counts = await row_counts(database)
    faults.failing.add("calendar.move_event")

    r = await _reschedule_same_closer(client, org, scene)

    assert r.status_code == 502, r.text
    assert r.json()["error"].startswith("Moving the calendar event failed: ")
    assert await call_row(database, scene.call.id) == before_row
    assert await row_counts(database) == before_counts
    [event] = await calendar_events(database, before_row["calendar_grant_id"])
    assert event.starts_at == scene.call.scheduled_at


async def test_reschedule_commit_fails_moves_the_event_back(
    client: httpx.AsyncClient,
    org: Org,
    scene: Scene,
    faults: Faults,
    database: Database,
    fail_next_commit: CommitFault,
) -> None:
    """The event was moved on the (external) calendar, then the commit failed: it is moved
    back to the call's time, so calendar and call agree again."""
    before_row = await call_row(database, scene.call.id)
    before_counts = await row_counts(database)
    fail_next_commit.arm()

    r = await _reschedule_same_closer(client, org, scene)

    assert fail_next_commit.fired == 1
    assert_internal_error(r)
    assert await call_row(database, scene.call.id) == before_row
    assert await row_counts(database) == before_counts
    moves = faults.events("move_event")
    assert moves == [scene.call.calendar_event_id] * 2  # there, then back
    original = required(scene.call.scheduled_at, "scheduled_at")
    assert faults.moved_to == [original + timedelta(hours=2), original]
    [event] = await calendar_events(database, before_row["calendar_grant_id"])
    assert event.starts_at == scene.call.scheduled_at
    assert event.ends_at == before_row["ends_at"]


async def test_reschedule_commit_and_move_back_fail_is_still_a_clean_500(
    client: httpx.AsyncClient,
    org: Org,
    scene: Scene,
    faults: Faults,
    database: Database,
    fail_next_commit: CommitFault,
) -> None:
    """Moving back fails too: logged, and the original failure is the one answered."""
    before_row = await call_row(database, scene.call.id)
    fail_next_commit.arm()
    real_move = FlakyCalendar.move_event
    moved: list[str] = []

    async def move_once(
        self: FlakyCalendar, account: CalendarAccount, event_id: str, draft: EventDraft
    ) -> None:
        moved.append(event_id)
        if len(moved) > 1:
            raise CalendarError(f"{SECRET}: move back")
        await real_move(self, account, event_id, draft)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FlakyCalendar, "move_event", move_once)
        r = await _reschedule_same_closer(client, org, scene)

    assert_internal_error(r)
    assert await call_row(database, scene.call.id) == before_row
    assert moved == [scene.call.calendar_event_id] * 2


async def test_a_cleanup_whose_calendar_was_disconnected_is_closed(
    org: Org, scene: Scene, database: Database, providers: Providers
) -> None:
    """The calendar holding an orphaned event is gone (disconnected), and with it the means to
    remove the event: the row is closed, saying why, instead of being retried forever."""
    from closerdesk.calendars.cleanup import retry_due_cleanups

    async with database.writer() as s:
        s.add(
            CalendarCleanup(
                id="clean_gone",
                organization_id=org.id,
                connection_id="cal_disconnected",
                provider="caldav",
                event_id="evt_gone@closerdesk",
                call_id=scene.call.id,
                attempts=2,
                next_attempt_at=utcnow() - timedelta(seconds=1),
            )
        )
        await s.commit()
    assert await retry_due_cleanups(database, providers) == 1
    [cleanup] = [c for c in await cleanups(database) if c.id == "clean_gone"]
    assert cleanup.resolved_at is not None
    assert cleanup.last_error == "calendar disconnected"
    assert cleanup.attempts == 3


# --- confirming a pending call (docs/sales-floor.md, "Confirmation") ----------------------------
async def _pending(session: AsyncSession, org: Org, scene: Scene) -> Call:
    """A pending upcoming call of ``scene.new``: no event, no link yet."""
    return await create_call(
        session,
        org,
        lead=scene.lead,
        closer=scene.new,
        scheduled_at=required(scene.call.scheduled_at, "scheduled_at") + timedelta(hours=2),
        with_event=False,
        status="pending",
        override_conflict=False,
    )


@pytest.mark.parametrize(
    "switch", ["calendar.create_event", "calendar.busy", "conferencing.issue_link"]
)
async def test_confirm_provider_failure_leaves_it_pending(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    scene: Scene,
    faults: Faults,
    database: Database,
    switch: str,
) -> None:
    pending = await _pending(session, org, scene)
    before_row = await call_row(database, pending.id)
    before_counts = await row_counts(database)
    faults.failing.add(switch)

    r = await client.post(f"/v1/calls/{pending.id}/confirm", headers=org.headers)

    if switch.startswith("calendar."):
        assert r.status_code == 502, r.text
        assert r.json()["code"] == "CALENDAR_PROVIDER_ERROR"
    else:
        assert_internal_error(r)
    assert await call_row(database, pending.id) == before_row
    assert before_row["status"] == "pending"
    assert await row_counts(database) == before_counts
    assert faults.events("create_event") == []

    faults.failing.clear()
    r = await client.post(f"/v1/calls/{pending.id}/confirm", headers=org.headers)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["status"] == "scheduled"


async def test_confirm_commit_fails_removes_the_new_event(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    scene: Scene,
    faults: Faults,
    database: Database,
    fail_next_commit: CommitFault,
) -> None:
    pending = await _pending(session, org, scene)
    before_row = await call_row(database, pending.id)
    fail_next_commit.arm()

    r = await client.post(f"/v1/calls/{pending.id}/confirm", headers=org.headers)

    assert_internal_error(r)
    assert await call_row(database, pending.id) == before_row
    [created] = faults.events("create_event")
    assert faults.events("cancel_event") == [created]  # the compensation: no stray event
