"""Engine and sessions. The request owns the transaction (STYLE habit 2).

Read requests (``GET``, ``HEAD``, ``OPTIONS``) get a ``read_only`` session: on PostgreSQL it
runs without ``BEGIN``/``COMMIT`` (each statement its own transaction, which at READ COMMITTED
sees what a statement inside a transaction would see: every statement takes its own snapshot),
so a one-query read costs one round trip; on both databases it refuses to write
(docs/performance.md, "Read paths"). No ``pool_pre_ping``: a connection the server closed fails
one statement, SQLAlchemy drops it and the whole pool's older connections (disconnect
invalidation), and the next checkout connects anew.

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
READ_ONLY_OPTION = "closerdesk_read_only"
_READ_STATEMENTS = ("SELECT", "WITH", "BEGIN", "SHOW")


class WriteInReadRequest(RuntimeError):
    """A statement other than a read in a ``read_only`` session: a read request must not write
    (it would not be atomic on PostgreSQL, where those sessions run without a transaction)."""


def create_engine(
    url: str,
    *,
    echo: bool = False,
    foreign_keys: bool = True,
    pool_size: int = 20,
    max_overflow: int = 0,
    connect_args: dict[str, Any] | None = None,
) -> AsyncEngine:
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
    else:
        # ``pool_size`` connections stay open; overflow ones are closed on return, so a pool
        # too small for the load opens a connection per request (docs/performance.md).
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_recycle=3600,
            hide_parameters=True,
            connect_args=connect_args or {},
        )
    _refuse_writes_in_read_sessions(engine)
    return engine


def _refuse_writes_in_read_sessions(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _check(conn: Connection, _cursor: Any, statement: str, *_args: Any, **_kwargs: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION)
        if read_only and not statement.lstrip()[:6].upper().startswith(_READ_STATEMENTS):
            raise WriteInReadRequest(f"a read-only session sent {statement.split()[0]}")


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
    """The engine and three session factories on one pool: ``reader``, ``writer`` and
    ``read_only``.

    ``reader`` and ``writer`` differ only on SQLite (``BEGIN`` vs ``BEGIN IMMEDIATE``).
    ``read_only`` (read requests) refuses anything but reads (``WriteInReadRequest``) and, on
    PostgreSQL, sends no ``BEGIN``/``COMMIT`` (autocommit).
    """

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int = 20,
        max_overflow: int = 0,
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        """``connect_args`` go to the PostgreSQL driver (``asyncpg.connect``)."""
        self.url = url
        self.engine = create_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_args=connect_args,
        )
        self.reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self.writer = async_sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )
        read_only: dict[str, Any] = {READ_ONLY_OPTION: True}
        if self.engine.dialect.name == "postgresql":
            read_only["isolation_level"] = "AUTOCOMMIT"
        self.read_only = async_sessionmaker(
            self.engine.execution_options(**read_only), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def dispose(self) -> None:
        await self.engine.dispose()


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the endpoint returns, rolled back if it raises.

    Read requests get ``Database.read_only`` (no transaction on PostgreSQL), the others
    ``Database.writer``. A read request's session is only closed (it wrote nothing: its
    connection goes back to the pool without a ``COMMIT``, and without the ORM's commit
    bookkeeping).

    Runs with ``scope="function"``, so the commit happens before the response is sent: a client
    never sees a success whose commit failed.
    """
    database: Database = request.app.state.database
    read = request.method in _READ_METHODS
    factory = database.read_only if read else database.writer
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        if not read and session.in_transaction():
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
