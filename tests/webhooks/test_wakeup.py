"""Waking the dispatcher (docs/webhooks.md, "How fast a delivery leaves"): idle, it issues no
statement on PostgreSQL; ``NOTIFY`` from another engine wakes it; a killed listening
connection comes back; the sweep finds what nobody announced; on SQLite (and on PostgreSQL
without listening) a commit in the same process wakes it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Collection
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from structlog.testing import capture_logs

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.time import utcnow
from closerdesk.webhooks.dispatcher import Dispatcher
from closerdesk.webhooks.service import record_event
from closerdesk.webhooks.wakeup import Backoff, outbox_written
from tests.webhooks.helpers import Hooks, lead_created
from tests.webhooks.receiver import Reply

ON_POSTGRES = os.environ.get("CLOSERDESK_TEST_DATABASE_URL", "").startswith("postgresql")
postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="LISTEN/NOTIFY is PostgreSQL's")


class Statements:
    """Counts what an engine sends: statements, and connections taken from its pool."""

    def __init__(self, database: Database) -> None:
        self.sql: list[str] = []
        self.checkouts = 0
        engine = database.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.sql.append(statement)

    def _checkout(self, *_args: Any) -> None:
        self.checkouts += 1


@pytest.fixture
async def own_database(settings: Settings) -> AsyncIterator[Database]:
    """A second engine on the test database: the dispatcher's own, so that what it sends can
    be counted apart from the test's (and commits on the test's engine come from elsewhere)."""
    db = Database(settings.database_url)
    yield db
    await db.dispose()


async def until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Running:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(dispatcher.run(self.stop))

    async def settled(self) -> None:
        """Until it listens (when it should) and waits with nothing to do."""
        d = self.dispatcher

        def ready() -> bool:
            listening = d.listener is not None and d.listener.listening
            return d.idle and (listening or not d.listen)

        await until(ready)

    async def close(self) -> None:
        self.stop.set()
        await self.task


async def commit_event(database: Database, hooks: Hooks, lead_id: str, **options: Any) -> str:
    async with database.writer() as s:
        event_id = (await record_event(s, hooks.org.id, lead_created(lead_id), **options)).id
        await s.commit()
    return event_id


async def kill_listening_connection(hooks: Hooks, dispatcher: Dispatcher) -> int:
    """Terminate the dispatcher's listening connection from the server side; its backend pid."""
    assert dispatcher.listener is not None
    pid: int = dispatcher.listener.connection.get_server_pid()
    async with hooks.database.writer() as s:
        await s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await s.commit()
    return pid


async def listening_again(dispatcher: Dispatcher, *, not_on: Collection[int]) -> None:
    """Until the dispatcher listens on a connection whose backend pid is none of ``not_on``."""

    def reconnected() -> bool:
        listener = dispatcher.listener
        return bool(
            listener and listener.listening and listener.connection.get_server_pid() not in not_on
        )

    await until(reconnected)


def dispatcher_on(database: Database, hooks: Hooks, **settings: Any) -> Dispatcher:
    dispatcher = Dispatcher(database, hooks.settings.model_copy(update=settings))
    hooks._dispatchers.append(dispatcher)
    return dispatcher


@postgres_only
async def test_an_idle_dispatcher_issues_no_statement(hooks: Hooks, own_database: Database) -> None:
    dispatcher = dispatcher_on(own_database, hooks, webhook_sweep_seconds=60)
    running = Running(dispatcher)
    try:
        await running.settled()
        counted = Statements(own_database)
        await asyncio.sleep(2)
        assert counted.sql == []
        assert counted.checkouts == 0
        assert dispatcher.idle
    finally:
        await running.close()


@postgres_only
async def test_a_commit_elsewhere_wakes_it_through_notify(
    hooks: Hooks, own_database: Database
) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    dispatcher = dispatcher_on(own_database, hooks, webhook_sweep_seconds=60)
    running = Running(dispatcher)
    try:
        await running.settled()
        # the test's engine, not the dispatcher's: only the notification can tell it
        event_id = await commit_event(hooks.database, hooks, "lead_n")
        await hooks.receiver.wait_async(lambda seen: len(seen) == 1, seconds=10)
    finally:
        await running.close()
    assert [r.webhook_id for r in hooks.receiver.requests(sub["name"])] == [event_id]


@postgres_only
async def test_one_notify_per_transaction_and_none_without_deliveries(
    hooks: Hooks, own_database: Database
) -> None:
    await hooks.subscribe(event_types=["lead.created"])
    counted = Statements(own_database)
    async with own_database.writer() as s:
        for i in range(3):
            await record_event(s, hooks.org.id, lead_created(f"lead_{i}"))
        await s.commit()
    assert sum("pg_notify" in sql for sql in counted.sql) == 1
    counted.sql.clear()
    async with own_database.writer() as s:  # addressed to no subscription: no delivery
        await record_event(s, hooks.org.id, lead_created("x"), only_subscription_id="wh_none")
        await s.commit()
    assert not any("pg_notify" in sql for sql in counted.sql)


@postgres_only
async def test_a_killed_listening_connection_comes_back(
    hooks: Hooks, own_database: Database
) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    dispatcher = dispatcher_on(own_database, hooks, webhook_sweep_seconds=60)
    running = Running(dispatcher)
    try:
        await running.settled()
        first_pid = await kill_listening_connection(hooks, dispatcher)
        # committed while the connection is down or coming back: found all the same
        lost = await commit_event(hooks.database, hooks, "lead_lost")
        await hooks.receiver.wait_async(lambda seen: len(seen) == 1, seconds=10)
        await listening_again(dispatcher, not_on={first_pid})
        await running.settled()
        after = await commit_event(hooks.database, hooks, "lead_after")
        await hooks.receiver.wait_async(lambda seen: len(seen) == 2, seconds=10)
    finally:
        await running.close()
    assert [r.webhook_id for r in hooks.receiver.requests(sub["name"])] == [lost, after]


async def test_the_sweep_finds_what_nobody_announced(hooks: Hooks, own_database: Database) -> None:
    """A delivery due later (as another worker's retry would be) is announced by nobody."""
    sub = await hooks.subscribe(event_types=["lead.created"])
    dispatcher = dispatcher_on(own_database, hooks, webhook_sweep_seconds=1, webhook_poll_seconds=1)
    running = Running(dispatcher)
    try:
        await running.settled()
        event_id = await commit_event(
            hooks.database, hooks, "lead_later", due_at=utcnow() + timedelta(seconds=0.5)
        )
        await hooks.receiver.wait_async(lambda seen: len(seen) == 1, seconds=10)
    finally:
        await running.close()
    assert [r.webhook_id for r in hooks.receiver.requests(sub["name"])] == [event_id]


async def test_a_commit_in_the_same_process_wakes_it(hooks: Hooks, own_database: Database) -> None:
    """SQLite has no notifications (nor PostgreSQL without listening): the commit wakes the
    dispatchers of its own process; the hour-long poll never comes into play."""
    sub = await hooks.subscribe(event_types=["lead.created"])
    dispatcher = Dispatcher(own_database, hooks.settings, listen=False, poll_interval=3600)
    hooks._dispatchers.append(dispatcher)
    running = Running(dispatcher)
    try:
        await running.settled()
        event_id = await commit_event(hooks.database, hooks, "lead_local")
        await hooks.receiver.wait_async(lambda seen: len(seen) == 1, seconds=10)
    finally:
        await running.close()
    assert [r.webhook_id for r in hooks.receiver.requests(sub["name"])] == [event_id]


async def test_it_wakes_for_the_retry_it_scheduled(hooks: Hooks, own_database: Database) -> None:
    """The first retry (5 s ± 10 %) is sent when due, not at the hour-long sweep."""
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.script(sub["name"], [Reply(500)])
    dispatcher = Dispatcher(own_database, hooks.settings, poll_interval=3600)
    hooks._dispatchers.append(dispatcher)
    running = Running(dispatcher)
    try:
        await running.settled()
        await commit_event(hooks.database, hooks, "lead_retry")
        await hooks.receiver.wait_async(lambda seen: len(seen) == 2, seconds=20)
    finally:
        await running.close()
    assert [r.status for r in hooks.receiver.requests(sub["name"])] == [500, 200]


@postgres_only
async def test_a_savepoint_rolled_back_after_the_write_does_not_take_the_notify(
    own_database: Database,
) -> None:
    """Deliveries written, then a savepoint that commits and one that rolls back: the NOTIFY is
    sent once, with the outermost commit (a NOTIFY inside a savepoint dies with it)."""
    counted = Statements(own_database)
    async with own_database.writer() as session:
        await session.execute(text("SELECT 1"))
        outbox_written(session)
        async with session.begin_nested():
            await session.execute(text("SELECT 1"))
        savepoint = await session.begin_nested()
        await session.execute(text("SELECT 1"))
        await savepoint.rollback()
        assert not any("pg_notify" in sql for sql in counted.sql)
        await session.commit()
    assert sum("pg_notify" in sql for sql in counted.sql) == 1


def test_the_backoff_doubles_while_connections_fail_or_drop_at_once() -> None:
    backoff = Backoff(first=0.2, ceiling=5.0, stable=30.0)
    waits = [backoff.lost(now=float(t)) for t in range(7)]  # seven failed attempts
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff.connected(now=100.0)
    assert backoff.lost(now=129.9) == 5.0  # dropped before it was stable: no reset


def test_only_a_stable_connection_resets_the_backoff() -> None:
    backoff = Backoff(first=0.2, ceiling=5.0, stable=30.0)
    for t in range(4):
        backoff.lost(now=float(t))
    backoff.connected(now=10.0)
    assert backoff.lost(now=40.0) == 0.2  # lasted 30 s
    assert backoff.lost(now=41.0) == 0.4  # the next failure doubles from the start again


@postgres_only
async def test_a_connection_dropped_at_once_again_and_again_backs_off(
    hooks: Hooks, own_database: Database
) -> None:
    dispatcher = dispatcher_on(own_database, hooks, webhook_sweep_seconds=60)
    running = Running(dispatcher)
    pids: list[int] = []
    try:
        with capture_logs() as logs:
            for _ in range(3):
                await listening_again(dispatcher, not_on=pids)
                pids.append(await kill_listening_connection(hooks, dispatcher))
            await listening_again(dispatcher, not_on=pids)
    finally:
        await running.close()
    retries = [e["retry_in"] for e in logs if e["event"] == "webhooks.listener_lost"]
    assert retries[:3] == [0.2, 0.4, 0.8]
