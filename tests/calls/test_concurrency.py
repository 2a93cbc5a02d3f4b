"""Two requests can never both place one closer into overlapping time (SPEC §3).

Twenty requests race for ONE closer over pairwise-overlapping slots (starts one minute apart,
45 minutes long): exactly one wins, the other nineteen answer 409 ``CLOSER_CONFLICT`` naming the
winner, and the database holds exactly one active call of that closer in the span. On PostgreSQL
this rests on the closer's row lock (``FOR NO KEY UPDATE``); on SQLite on ``BEGIN IMMEDIATE``.
With ``override_conflict`` all twenty go through. The call's own lock is no stronger than it
needs to be: rows that only reference the call are still written meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calls import repository
from closerdesk.db import Database
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import (
    BusyBlock,
    CalendarConnection,
    CalendarEvent,
    Call,
    CallEvent,
    TeamMember,
    WebhookEvent,
)
from tests.factories import Org, create_call, create_lead, create_member

N = 20
DURATION = 45  # minutes; starts are 1 minute apart, so every pair of slots overlaps
RACE_TIMEOUT = 120  # seconds: a deadlock fails the test instead of hanging it


def _base() -> datetime:
    return (utcnow() + timedelta(days=3)).replace(second=0, microsecond=0)


def _span(base: datetime) -> tuple[datetime, datetime]:
    return base, base + timedelta(minutes=N - 1 + DURATION)


async def _race(*requests: Any) -> list[httpx.Response]:
    return list(await asyncio.wait_for(asyncio.gather(*requests), RACE_TIMEOUT))


async def _active_calls(
    database: Database, closer_id: str, span: tuple[datetime, datetime]
) -> list[str]:
    """Ids of the closer's booking calls, not cancelled, overlapping ``span``."""
    start, end = span
    async with database.reader() as s:
        return list(
            await s.scalars(
                select(Call.id).where(
                    Call.closer_id == closer_id,
                    Call.call_kind == "booking",
                    Call.status != "cancelled",
                    Call.scheduled_at < end,
                    Call.ends_at > start,
                )
            )
        )


async def _confirmed_events(database: Database, member_id: str) -> list[str]:
    async with database.reader() as s:
        return list(
            await s.scalars(
                select(CalendarEvent.id)
                .join(CalendarConnection, CalendarConnection.id == CalendarEvent.connection_id)
                .where(
                    CalendarConnection.member_id == member_id,
                    CalendarEvent.status == "confirmed",
                )
            )
        )


async def _webhook_count(database: Database, event_type: str) -> int:
    async with database.reader() as s:
        count = await s.scalar(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.type == event_type)
        )
        return int(count or 0)


def _split(responses: list[httpx.Response], ok: int) -> tuple[httpx.Response, list[httpx.Response]]:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [ok] + [409] * (N - 1), [r.text for r in responses if r.status_code != 409]
    [winner] = [r for r in responses if r.status_code == ok]
    return winner, [r for r in responses if r.status_code == 409]


def _assert_conflicts_name(losers: list[httpx.Response], winner_call_id: str) -> None:
    for r in losers:
        body = r.json()
        assert body["success"] is False
        assert body["code"] == "CLOSER_CONFLICT", r.text
        conflicts = body["details"]["conflicts"]
        assert {"source": "call", "call_id": winner_call_id} in [
            {"source": c["source"], "call_id": c.get("call_id")} for c in conflicts
        ]


# --- POST /v1/calls ------------------------------------------------------------------------------
async def _book_race(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, *, override: bool
) -> tuple[TeamMember, tuple[datetime, datetime], list[httpx.Response]]:
    closer = await create_member(session, org)
    leads = [await create_lead(session, org) for _ in range(N)]
    base = _base()
    bodies = [
        {
            "lead_id": lead.id,
            "closer_id": closer.id,
            "scheduled_at": isoformat_z(base + timedelta(minutes=i)),
            "duration_minutes": DURATION,
            "override_conflict": override,
        }
        for i, lead in enumerate(leads)
    ]
    responses = await _race(
        *(client.post("/v1/calls", headers=org.headers, json=b) for b in bodies)
    )
    return closer, _span(base), responses


async def test_concurrent_bookings_of_one_closer_exactly_one_wins(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    closer, span, responses = await _book_race(client, org, session, override=False)

    winner, losers = _split(responses, 201)
    call_id = winner.json()["data"]["id"]
    _assert_conflicts_name(losers, call_id)
    assert await _active_calls(database, closer.id, span) == [call_id]
    assert await _confirmed_events(database, closer.id) == [
        winner.json()["data"]["calendar_event_id"]
    ]
    assert await _webhook_count(database, "call.booked") == 1
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Call)) == 1


async def test_concurrent_bookings_with_override_all_succeed(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    closer, span, responses = await _book_race(client, org, session, override=True)

    assert [r.status_code for r in responses] == [201] * N, [r.text for r in responses]
    ids = {r.json()["data"]["id"] for r in responses}
    assert set(await _active_calls(database, closer.id, span)) == ids
    assert len(ids) == N
    assert len(await _confirmed_events(database, closer.id)) == N


# --- POST /v1/calls/{id}/reassign-closer ---------------------------------------------------------
async def _reassign_race(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, *, override: bool
) -> tuple[TeamMember, list[Call], tuple[datetime, datetime], list[httpx.Response]]:
    target = await create_member(session, org)
    base = _base()
    calls = []
    for i in range(N):
        closer = await create_member(session, org)
        lead = await create_lead(session, org)
        calls.append(
            await create_call(
                session,
                org,
                lead=lead,
                closer=closer,
                scheduled_at=base + timedelta(minutes=i),
                duration_minutes=DURATION,
            )
        )
    body = {"new_closer_id": target.id, "override_conflict": override}
    responses = await _race(
        *(
            client.post(f"/v1/calls/{c.id}/reassign-closer", headers=org.headers, json=body)
            for c in calls
        )
    )
    return target, calls, _span(base), responses


async def test_concurrent_reassigns_to_one_closer_exactly_one_wins(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    target, calls, span, responses = await _reassign_race(client, org, session, override=False)

    winner, losers = _split(responses, 200)
    won = winner.json()["data"]
    _assert_conflicts_name(losers, won["call_id"])
    assert won["new_closer_id"] == target.id
    assert await _active_calls(database, target.id, span) == [won["call_id"]]
    assert await _confirmed_events(database, target.id) == [won["new_event_id"]]
    assert await _webhook_count(database, "call.closer_reassigned") == 1
    # The nineteen losers are untouched: own closer, own event, own link.
    async with database.reader() as s:
        rows = {c.id: c for c in await s.scalars(select(Call))}
    for call in calls:
        if call.id == won["call_id"]:
            continue
        row = rows[call.id]
        assert (row.closer_id, row.calendar_event_id, row.conferencing_link) == (
            call.closer_id,
            call.calendar_event_id,
            call.conferencing_link,
        )
        assert row.updated_at == call.updated_at


async def test_concurrent_reassigns_with_override_all_succeed(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    target, calls, span, responses = await _reassign_race(client, org, session, override=True)

    assert [r.status_code for r in responses] == [200] * N, [r.text for r in responses]
    assert set(await _active_calls(database, target.id, span)) == {c.id for c in calls}
    assert len(await _confirmed_events(database, target.id)) == N
    assert await _webhook_count(database, "call.closer_reassigned") == N


# --- bookings and reassigns racing each other ----------------------------------------------------
async def test_bookings_and_reassigns_racing_for_one_closer_exactly_one_wins(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """Half the racers book the closer, half reassign calls to it: still exactly one wins."""
    target = await create_member(session, org)
    base = _base()
    requests = []
    for i in range(N):
        lead = await create_lead(session, org)
        start = base + timedelta(minutes=i)
        if i % 2:
            other = await create_member(session, org)
            call = await create_call(
                session, org, lead=lead, closer=other, scheduled_at=start, duration_minutes=DURATION
            )
            requests.append(
                client.post(
                    f"/v1/calls/{call.id}/reassign-closer",
                    headers=org.headers,
                    json={"new_closer_id": target.id},
                )
            )
        else:
            body = {
                "lead_id": lead.id,
                "closer_id": target.id,
                "scheduled_at": isoformat_z(start),
                "duration_minutes": DURATION,
            }
            requests.append(client.post("/v1/calls", headers=org.headers, json=body))

    responses = await _race(*requests)

    assert sorted(r.status_code // 100 for r in responses) == [2] + [4] * (N - 1)
    [winner] = [r for r in responses if r.is_success]
    data = winner.json()["data"]
    call_id = data.get("call_id") or data["id"]
    _assert_conflicts_name([r for r in responses if not r.is_success], call_id)
    assert await _active_calls(database, target.id, _span(base)) == [call_id]
    assert len(await _confirmed_events(database, target.id)) == 1


async def _lock_lets_references_in(
    database: Database,
    lock: Callable[[AsyncSession], Awaitable[object]],
    reference: object,
    own_change: Any,
) -> None:
    """Hold ``lock`` in one transaction; meanwhile another one writes ``reference`` (a row
    whose foreign key names the locked row: a key-share lock) within 5 s, and a third one's
    ``own_change`` of the locked row itself times out waiting."""
    async with database.writer() as holder:
        assert await lock(holder) is not None
        async with database.writer() as other:
            await other.execute(text("SET LOCAL lock_timeout = '5s'"))
            other.add(reference)
            await other.commit()
        async with database.writer() as third:
            await third.execute(text("SET LOCAL lock_timeout = '100ms'"))
            with pytest.raises(DBAPIError, match="lock timeout"):
                await third.execute(own_change)
        await holder.rollback()


def _need_row_locks(database: Database) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite serialises writers with BEGIN IMMEDIATE")


async def test_a_locked_call_still_takes_rows_that_reference_it(
    database: Database, org: Org, session: AsyncSession
) -> None:
    """PostgreSQL: a change holds its call with ``FOR NO KEY UPDATE`` (of the call only), not
    ``FOR UPDATE``, so another transaction can meanwhile write a row whose foreign key names the
    call (a history row takes a key-share lock on it); a change of the call itself waits."""
    _need_row_locks(database)
    lead = await create_lead(session, org)
    closer = await create_member(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=_base())
    await session.commit()
    await _lock_lets_references_in(
        database,
        lambda holder: repository.locked_call_with_lead(holder, org.id, call.id),
        CallEvent(
            id="evt_during_lock",
            organization_id=org.id,
            call_id=call.id,
            type="updated",
            actor_type="api_key",
            actor_id="key_test",
        ),
        update(Call).where(Call.id == call.id).values(closer_name="Someone Else"),
    )


async def test_a_locked_closer_still_takes_rows_that_reference_it(
    database: Database, org: Org, session: AsyncSession
) -> None:
    """PostgreSQL: bookings of a closer take turns on the closer's ``FOR NO KEY UPDATE`` lock,
    which still lets another transaction add a row naming the closer (a busy block) meanwhile;
    a change of the closer's own row waits."""
    _need_row_locks(database)
    closer = await create_member(session, org)
    await session.commit()
    start = _base()
    await _lock_lets_references_in(
        database,
        lambda holder: repository.locked_member_with_connections(
            holder, org.id, closer.id, connection_id=None
        ),
        BusyBlock(
            id="busy_during_lock",
            organization_id=org.id,
            member_id=closer.id,
            starts_at=start,
            ends_at=start + timedelta(hours=1),
        ),
        update(TeamMember).where(TeamMember.id == closer.id).values(name="Renamed"),
    )
