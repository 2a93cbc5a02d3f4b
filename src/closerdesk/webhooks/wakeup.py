"""Waking dispatchers when the outbox is written (docs/webhooks.md, "How fast a delivery
leaves").

A transaction that writes pending deliveries calls ``outbox_written(session)``. Then:

* on PostgreSQL, the session issues ``SELECT pg_notify('closerdesk_outbox', '')`` just before
  its commit (one statement per transaction, however many deliveries it wrote). PostgreSQL
  delivers the notification only if the transaction commits, to every process listening on
  the channel: ``OutboxListener`` holds one dedicated connection per dispatcher for that;
* on every database, after the commit, the dispatchers running in this process are woken
  directly (``local_wakeups``). That is what wakes them on SQLite, which has no notifications
  (dispatchers of other processes find the rows by polling, ``CLOSERDESK_WEBHOOK_POLL_SECONDS``).

Nothing is lost when a wake-up is: dispatchers also sweep the outbox on a timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, SessionTransaction

log = structlog.get_logger(__name__)

CHANNEL = "closerdesk_outbox"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")
_WRITTEN = "closerdesk_outbox_written"
_NOTIFIED = "closerdesk_outbox_notified"

Wakeup = Callable[[], None]


class LocalWakeups:
    """The dispatchers of this process, woken after a commit that wrote the outbox."""

    def __init__(self) -> None:
        self._callbacks: set[Wakeup] = set()

    def add(self, callback: Wakeup) -> None:
        """Call ``callback()`` after every such commit, until ``discard``."""
        self._callbacks.add(callback)

    def discard(self, callback: Wakeup) -> None:
        self._callbacks.discard(callback)

    def wake(self) -> None:
        for callback in list(self._callbacks):
            callback()


local_wakeups = LocalWakeups()


def outbox_written(session: Any) -> None:
    """Note that ``session``'s transaction wrote deliveries due now (an ``AsyncSession`` or a
    ``Session``): dispatchers are woken when, and only if, it commits."""
    sync: Session = getattr(session, "sync_session", session)
    sync.info[_WRITTEN] = True


@event.listens_for(Session, "before_commit")
def _notify_before_commit(session: Session) -> None:
    info = session.info
    # A savepoint's commit fires this too: the NOTIFY waits for the outermost commit, where a
    # savepoint rolled back later cannot take it away.
    if not info.get(_WRITTEN) or info.get(_NOTIFIED) or session.in_nested_transaction():
        return
    info[_NOTIFIED] = True  # once per transaction
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.get(_WRITTEN) and not session.in_nested_transaction():
        local_wakeups.wake()


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: committed or rolled back
        session.info.pop(_WRITTEN, None)
        session.info.pop(_NOTIFIED, None)


class Backoff:
    """How long the listener waits before it connects again (seconds).

    Starts at ``first``, doubles after every failed attempt and every connection that was lost
    within ``stable`` seconds, up to ``ceiling``; only a connection that lasted ``stable``
    seconds brings it back to ``first``. So a server that accepts connections and drops them
    at once (a proxy in trouble, a full ``max_connections`` behind a pooler) is not hammered
    five times a second. Times are ``time.monotonic()`` readings.
    """

    def __init__(self, first: float = 0.2, ceiling: float = 5.0, stable: float = 30.0) -> None:
        self.first, self.ceiling, self.stable = first, ceiling, stable
        self.delay = first
        self._connected_at: float | None = None

    def connected(self, now: float) -> None:
        self._connected_at = now

    def lost(self, now: float) -> float:
        """After a connection ends at ``now`` (or an attempt fails): the wait before the next."""
        lasted = None if self._connected_at is None else now - self._connected_at
        self._connected_at = None
        if lasted is not None and lasted >= self.stable:
            self.delay = self.first
        wait, self.delay = self.delay, min(self.delay * 2, self.ceiling)
        return wait


class OutboxListener:
    """A dedicated asyncpg connection that ``LISTEN``\\ s on the outbox channel.

    ``run`` connects, calls ``wake`` for every notification, and after every (re)connection
    too (notifications sent while it was down are lost: what they announced is now found by
    the claim this wake-up causes). A lost connection is reopened after 0.2 s, doubling up to
    5 s while connections keep failing or dropping within 30 s (``Backoff``). ``listening``
    says whether notifications can currently arrive.
    """

    def __init__(self, url: str | URL, wake: Wakeup) -> None:
        self.url = url
        self.wake = wake
        self.listening = False
        self.connection: Any = None

    def _connect_kwargs(self) -> dict[str, Any]:
        """``asyncpg.connect`` arguments from the SQLAlchemy URL, as its asyncpg dialect does."""
        url = make_url(self.url)
        options: dict[str, Any] = url.translate_connect_args(username="user", database="database")
        options.update(url.query)
        for name in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            options.pop(name, None)
        if "port" in options:
            options["port"] = int(options["port"])
        return options

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set, reconnecting after a loss."""
        import asyncpg  # type: ignore[import-untyped]

        backoff = Backoff()
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(**self._connect_kwargs())
            except Exception as exc:  # refused, unknown host, bad password, …: try again later
                delay = backoff.lost(time.monotonic())
                log.warning("webhooks.listener_connect_failed", error=str(exc), retry_in=delay)
                await _sleep(stop, delay)
                continue
            try:
                connection.add_termination_listener(lambda _c, lost=lost: lost.set())
                await connection.add_listener(CHANNEL, lambda *_args: self.wake())
                self.connection, self.listening = connection, True
                backoff.connected(time.monotonic())
                log.info("webhooks.listener_connected")
                self.wake()  # anything announced while we were not listening
                await _first(stop, lost)
            except Exception as exc:
                log.warning("webhooks.listener_failed", error=str(exc))
            finally:
                self.listening, self.connection = False, None
                if not connection.is_closed():
                    try:
                        await asyncio.wait_for(connection.close(), timeout=2)
                    except Exception:
                        connection.terminate()
            if not stop.is_set():
                delay = backoff.lost(time.monotonic())
                log.warning("webhooks.listener_lost", retry_in=delay)
                self.wake()  # poll meanwhile (the dispatcher shortens its wait while not listening)
                await _sleep(stop, delay)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def _first(*events: asyncio.Event) -> None:
    """Until one of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
