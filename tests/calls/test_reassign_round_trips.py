"""Round trips of a reassign (docs/performance.md, "Round trips per calendar change"): what the
request sends to the database, counted through the engine's events on the real database.

A round trip is every statement, every ``BEGIN`` / ``COMMIT`` / ``ROLLBACK`` and, on
PostgreSQL, the pre-ping of each pool checkout (none: the pool does not pre-ping). The
request's own transaction is the checkout that is not the API-key lookup's.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import event

from closerdesk.calls import repository
from closerdesk.db import Database
from closerdesk.models import CalendarConnection
from tests.calls.helpers import book, future, ok
from tests.factories import Org, create_call, create_lead, create_member

OWN_TRANSACTION_BOUND = 16
"""``BEGIN``; the call with its lead and link, locked; the new closer, locked, then its
connections (read after the lock, see the last test); the overlap query; the busy time; the
new link and event; the old link revoked; the call and the closer updated; history and outbox
rows; the subscriptions read; the old event cancelled; ``COMMIT``."""


@dataclass
class Trips:
    """Round trips by pool checkout: (kind, statement) pairs."""

    postgres: bool
    checkouts: list[list[tuple[str, str]]] = field(default_factory=list)

    def add(self, kind: str, statement: str = "") -> None:
        if kind == "checkout":
            self.checkouts.append([("ping", "")] if self.postgres else [])
        else:
            self.checkouts[-1].append((kind, statement))

    @property
    def whole(self) -> int:
        return sum(len(trips) for trips in self.checkouts)

    def own(self) -> list[tuple[str, str]]:
        """The round trips of the operation's transaction(s), pings left out."""
        return [
            trip
            for trips in self.checkouts
            if not all("api_keys" in s for s in _reads_and_writes(trips))
            for trip in trips
            if trip[0] != "ping"
        ]


def _reads_and_writes(trips: list[tuple[str, str]]) -> list[str]:
    return [
        s
        for k, s in trips
        if k == "statement" and s.split()[0] in {"SELECT", "INSERT", "UPDATE", "DELETE"}
    ]


@contextmanager
def counting(database: Database) -> Iterator[Trips]:
    trips = Trips(postgres=database.dialect == "postgresql")
    sync = database.engine.sync_engine
    listeners: list[tuple[Any, str, Any]] = [
        (sync.pool, "checkout", lambda *_: trips.add("checkout")),
        (sync, "before_cursor_execute", lambda *a: trips.add("statement", str(a[2]))),
        (sync, "commit", lambda *_: trips.add("commit")),
        (sync, "rollback", lambda *_: trips.add("rollback")),
    ]
    if trips.postgres:  # SQLite's BEGIN IMMEDIATE is a statement
        listeners.append((sync, "begin", lambda *_: trips.add("begin")))
    for target, name, fn in listeners:
        event.listen(target, name, fn)
    try:
        yield trips
    finally:
        for target, name, fn in listeners:
            event.remove(target, name, fn)


async def _reassign_counted(
    client: httpx.AsyncClient, org: Org, session: Any, database: Database, history: int
) -> Trips:
    old, new = await create_member(session, org), await create_member(session, org)
    lead = await create_lead(session, org)
    for day in range(history):  # the new closer's past: the reassign must not read it
        await create_call(
            session, org, lead=lead, closer=new, scheduled_at=future(hours=-24 * (day + 1))
        )
    await session.commit()
    call = await book(client, org, lead=lead, closer=old, start=future(hours=30))
    with counting(database) as trips:
        ok(
            await client.post(
                f"/v1/calls/{call['id']}/reassign-closer",
                headers=org.headers,
                json={"new_closer_id": new.id, "reason": "coverage"},
            )
        )
    return trips


async def test_reassign_own_transaction_is_bounded(
    client: httpx.AsyncClient, org: Org, session: Any, database: Database
) -> None:
    trips = await _reassign_counted(client, org, session, database, history=0)
    own = trips.own()
    kinds = [kind for kind, _ in own]
    assert len(own) <= OWN_TRANSACTION_BOUND, own
    assert kinds.count("commit") == 1
    assert not [s for k, s in own if k == "statement" and s.split()[0] in {"SAVEPOINT", "RELEASE"}]
    # No row is read twice: calls twice only as the locked call and the overlap query.
    selects = [s for s in _reads_and_writes(own) if s.startswith("SELECT")]
    tables = Counter(re.search(r"\bFROM\s+(\w+)", s).group(1) for s in selects)  # type: ignore[union-attr]
    assert tables.pop("calls") == 2, selects
    assert set(tables.values()) <= {1}, selects


async def test_reassign_round_trips_do_not_grow_with_the_new_closers_calls(
    client: httpx.AsyncClient, org: Org, session: Any, database: Database
) -> None:
    few = await _reassign_counted(client, org, session, database, history=0)
    many = await _reassign_counted(client, org, session, database, history=12)
    assert [k for k, _ in many.own()] == [k for k, _ in few.own()]
    assert many.whole == few.whole


async def test_the_new_closers_connections_are_read_after_its_lock(
    org: Org, session: Any, database: Database
) -> None:
    """A reassign that waits for the closer's lock (held by a calendar connect) sees the
    connection that the lock holder committed, not the state from before it waited."""
    closer = await create_member(session, org, calendar=False)
    holder = database.writer()
    await repository.get_member(holder, org.id, closer.id, lock=True)
    holder.add(
        CalendarConnection(
            id="cal_connected_while_waiting",
            organization_id=org.id,
            member_id=closer.id,
            provider="builtin",
            provider_grant_id="cal_connected_while_waiting",
            calendar_id=f"builtin:{closer.id}",
        )
    )
    await holder.flush()

    async def reassign_reads() -> list[str]:
        async with database.writer() as waiter:
            found = await repository.locked_member_with_connections(
                waiter, org.id, closer.id, connection_id=None
            )
            assert found is not None
            return [c.id for c in found[1]]

    waiting = asyncio.create_task(reassign_reads())
    await asyncio.sleep(0.5)
    assert not waiting.done()  # blocked on the lock (PostgreSQL) or on BEGIN IMMEDIATE (SQLite)
    await holder.commit()
    await holder.close()
    assert await asyncio.wait_for(waiting, 30) == ["cal_connected_while_waiting"]
