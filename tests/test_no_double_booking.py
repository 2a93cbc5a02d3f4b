"""No double booking, enforced twice (``docs/calendars.md``, "No double booking"): the closer's
row lock first, then on PostgreSQL the exclusion constraint ``ex_calls_no_double_booking``,
which refuses what gets past the lock and is answered as 409 ``CLOSER_CONFLICT``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import Database
from closerdesk.models import Call
from closerdesk.models.call import NO_DOUBLE_BOOKING
from tests.booking_links.helpers import day, error, iso, ok
from tests.factories import Org, create_call, create_lead, create_member

PLACED: dict[str, Any] = {"override_conflict": False}
"""A factory call placed without the override (factories default to overridden rows)."""


@pytest.fixture
def is_pg(database: Database) -> bool:
    return database.engine.dialect.name == "postgresql"


def _need_pg(is_pg: bool) -> None:
    if not is_pg:
        pytest.skip("the exclusion constraint exists on PostgreSQL only")


async def _override_flag(database: Database, call_id: str) -> bool:
    async with database.reader() as s:
        value = await s.scalar(select(Call.override_conflict).where(Call.id == call_id))
    assert value is not None
    return value


async def _book(
    client: httpx.AsyncClient, org: Org, closer_id: str, lead_id: str, start: datetime, **kw: Any
) -> httpx.Response:
    body = {
        "lead_id": lead_id,
        "closer_id": closer_id,
        "scheduled_at": iso(start),
        "duration_minutes": 60,
        **kw,
    }
    return await client.post("/v1/calls", headers=org.headers, json=body)


# --- both databases: what the row remembers ------------------------------------------------------
async def test_a_call_remembers_whether_it_was_placed_with_an_override(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    first = ok(await _book(client, org, closer.id, lead.id, day(3, 10)), 201)
    assert await _override_flag(database, first["id"]) is False
    error(await _book(client, org, closer.id, lead.id, day(3, 10, 30)), 409, "CLOSER_CONFLICT")
    second = ok(
        await _book(client, org, closer.id, lead.id, day(3, 10, 30), override_conflict=True), 201
    )
    assert await _override_flag(database, second["id"]) is True

    # Moved to a free time without the override: back inside the rule.
    body = {"scheduled_at": iso(day(3, 14))}
    ok(await client.post(f"/v1/calls/{second['id']}/reschedule", headers=org.headers, json=body))
    assert await _override_flag(database, second["id"]) is False

    # Reassigned over a conflict with the override, then rescheduled with a new closer.
    ok(await _book(client, org, other.id, lead.id, day(3, 14)), 201)
    body = {"new_closer_id": other.id, "override_conflict": True}
    url = f"/v1/calls/{second['id']}/reassign-closer"
    ok(await client.post(url, headers=org.headers, json=body))
    assert await _override_flag(database, second["id"]) is True
    body = {"scheduled_at": iso(day(3, 16)), "new_closer_id": closer.id}
    ok(await client.post(f"/v1/calls/{second['id']}/reschedule", headers=org.headers, json=body))
    assert await _override_flag(database, second["id"]) is False


async def test_reschedule_with_a_new_closer_is_judged_on_the_final_placement(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """Time and closer change in one flush: the new closer at the old time, or the old closer
    at the new time, are never written on the way (either would trip the constraint)."""
    a = await create_member(session, org)
    b = await create_member(session, org)
    lead = await create_lead(session, org)
    moving = ok(await _book(client, org, a.id, lead.id, day(3, 10)), 201)
    ok(await _book(client, org, b.id, lead.id, day(3, 10)), 201)  # b busy at the old time
    ok(await _book(client, org, a.id, lead.id, day(3, 15)), 201)  # a busy at the new time
    body = {"scheduled_at": iso(day(3, 15)), "new_closer_id": b.id}
    ok(await client.post(f"/v1/calls/{moving['id']}/reschedule", headers=org.headers, json=body))


# --- PostgreSQL: the constraint ------------------------------------------------------------------
async def test_postgresql_refuses_an_overlap_written_past_the_lock(
    session: AsyncSession, org: Org, is_pg: bool
) -> None:
    _need_pg(is_pg)
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    start = day(3, 10)
    await create_call(session, org, lead=lead, closer=closer, scheduled_at=start, **PLACED)
    # Allowed: back to back, another closer, an overridden call, a cancelled one, an intent.
    await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=start + timedelta(minutes=45), **PLACED
    )
    await create_call(session, org, lead=lead, closer=other, scheduled_at=start, **PLACED)
    await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=start, override_conflict=True
    )
    await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=start, status="cancelled", **PLACED
    )
    await create_call(session, org, lead=lead, closer=closer, call_kind="intent", **PLACED)

    later = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=start + timedelta(hours=3), **PLACED
    )
    later_id = later.id

    with pytest.raises(IntegrityError) as refused:
        await create_call(
            session,
            org,
            lead=lead,
            closer=closer,
            scheduled_at=start + timedelta(minutes=44),
            **PLACED,
        )
    assert NO_DOUBLE_BOOKING in str(refused.value)
    await session.rollback()

    # An UPDATE that moves a call onto another is refused the same way.
    with pytest.raises(IntegrityError, match=NO_DOUBLE_BOOKING):
        await session.execute(
            update(Call)
            .where(Call.id == later_id)
            .values(
                scheduled_at=start + timedelta(minutes=30), ends_at=start + timedelta(minutes=75)
            )
        )
    await session.rollback()
    # Un-cancelling into an overlap, too.
    with pytest.raises(IntegrityError, match=NO_DOUBLE_BOOKING):
        await session.execute(
            text("UPDATE calls SET status = 'scheduled' WHERE status = 'cancelled'")
        )
    await session.rollback()


async def _wait_for_a_lock_wait(database: Database) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(200):
        async with database.reader() as s:
            if await s.scalar(query):
                return
        await asyncio.sleep(0.025)
    raise AssertionError("the booking never waited on the other transaction")


@pytest.mark.parametrize("operation", ["book", "reschedule"])
async def test_a_booking_racing_a_writer_without_the_lock_is_409(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    database: Database,
    is_pg: bool,
    operation: str,
) -> None:
    """Another transaction writes an overlapping call without taking the closer's row lock and
    commits after the API checked: PostgreSQL makes the API's insert wait, then refuses it,
    and the client gets 409 ``CLOSER_CONFLICT`` (not a 500)."""
    _need_pg(is_pg)
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = day(3, 10)
    moving = None
    if operation == "reschedule":
        moving = ok(await _book(client, org, closer.id, lead.id, day(3, 16)), 201)

    async with database.writer() as rogue:
        await create_call_uncommitted(rogue, org, closer.id, lead.id, start)
        if moving is None:
            request = _book(client, org, closer.id, lead.id, start + timedelta(minutes=30))
        else:
            body = {"scheduled_at": iso(start + timedelta(minutes=30))}
            url = f"/v1/calls/{moving['id']}/reschedule"
            request = client.post(url, headers=org.headers, json=body)
        task = asyncio.create_task(request)
        await _wait_for_a_lock_wait(database)
        await rogue.commit()
        r = await asyncio.wait_for(task, 10)
    body = error(r, 409, "CLOSER_CONFLICT")
    assert body["details"] == {"conflicts": []}
    calls = (await client.get("/v1/calls", headers=org.headers)).json()["data"]
    starts = sorted(c["scheduled_at"] for c in calls)
    expected = [iso(start)] + ([iso(day(3, 16))] if moving else [])
    assert starts == sorted(expected)


async def create_call_uncommitted(
    session: AsyncSession, org: Org, closer_id: str, lead_id: str, start: datetime
) -> None:
    """An overlapping call written as another process would, skipping the closer's lock."""
    await session.execute(
        text(
            "INSERT INTO calls (id, organization_id, call_kind, status, lead_id, closer_id,"
            " scheduled_at, ends_at, duration_minutes, action_items, form_data,"
            " reschedule_count, sequence, created_at, updated_at)"
            " VALUES ('call_rogue', :org, 'booking', 'scheduled', :lead, :closer, :start, :end,"
            " 60, '[]', '[]', 0, 0, now(), now())"
        ),
        {
            "org": org.id,
            "lead": lead_id,
            "closer": closer_id,
            "start": start,
            "end": start + timedelta(hours=1),
        },
    )


async def test_the_migration_grandfathers_overlaps_and_adds_the_constraint(
    database: Database, is_pg: bool
) -> None:
    _need_pg(is_pg)
    async with database.reader() as s:
        definition = await s.scalar(
            text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"),
            {"name": NO_DOUBLE_BOOKING},
        )
    assert definition is not None
    assert "EXCLUDE USING gist" in definition
    assert "tstzrange(scheduled_at, ends_at) WITH &&" in definition
    assert "NOT override_conflict" in definition
