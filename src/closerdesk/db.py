"""Engine and sessions. The request owns the transaction (STYLE habit 2).

SQLite: foreign keys on, WAL, a busy timeout, and write requests open their transaction with
``BEGIN IMMEDIATE`` so that two writers queue at the start instead of one failing half way
(that is also what serialises bookings per closer on SQLite; PostgreSQL uses row locks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

WRITE_OPTION = "closerdesk_write"


def create_engine(url: str, *, echo: bool = False, foreign_keys: bool = True) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://…`` or ``postgresql+asyncpg://…``).

    Statement parameters never reach logs or error messages (``hide_parameters``): they hold
    leads' contact details and webhook secrets. ``foreign_keys=False`` is for SQLite migrations
    only: a table rebuilt by Alembic's batch
    mode must not cascade its rows' deletion into the tables that reference it.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": 30}, hide_parameters=True
        )
        _configure_sqlite(engine, foreign_keys=foreign_keys)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True, hide_parameters=True
    )


def _configure_sqlite(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """The engine and two session factories: ``reader`` and ``writer``.

    They differ only on SQLite (``BEGIN`` vs ``BEGIN IMMEDIATE``).
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo)
        self.reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self.writer = async_sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def dispose(self) -> None:
        await self.engine.dispose()


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the endpoint returns, rolled back if it raises.

    Runs with ``scope="function"``, so the commit happens before the response is sent: a client
    never sees a success whose commit failed.
    """
    database: Database = request.app.state.database
    factory = database.reader if request.method in _READ_METHODS else database.writer
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        if session.in_transaction():
            await session.commit()


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


@asynccontextmanager
async def unique_write(session: AsyncSession) -> AsyncIterator[None]:
    """A savepoint around a write that a unique constraint guards.

    Check-then-insert leaves a window in which a concurrent request inserts the same key; the
    loser's flush raises ``UniqueViolation``, which the caller turns into its 409, while the
    rest of its transaction stays usable.
    """
    try:
        async with session.begin_nested():
            yield
    except IntegrityError as exc:
        raise UniqueViolation() from exc


class UniqueViolation(Exception):
    """A write lost a race on a unique key (see ``unique_write``)."""
