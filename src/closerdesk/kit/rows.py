"""Reads shaped straight from Core rows (docs/performance.md, "Read paths").

A response schema's fields are mostly its table's columns: selecting exactly those columns as
Core rows and validating them in one pydantic call (its Rust validator, from plain dicts) costs
a fraction of loading ORM objects (identity map, instance state, attribute instrumentation) and
validating each by attribute.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Column, Row, Select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from closerdesk.db import READ_ONLY_OPTION

S = TypeVar("S", bound=BaseModel)


@cache
def _columns(schema: type[BaseModel], model: Any) -> tuple[Column[Any], ...]:
    columns = model.__table__.c
    return tuple(columns[name] for name in schema.model_fields if name in columns)


def columns_of(schema: type[BaseModel], model: Any) -> tuple[Column[Any], ...]:
    """The columns of ``model``'s table that ``schema`` has a field for, in field order."""
    return _columns(schema, model)


def shaped(stmt: Select[Any], schema: type[BaseModel], *extra: Any) -> Select[Any]:
    """``stmt`` (a ``select(Model)…``) selecting only ``schema``'s columns (plus ``extra``)
    as Core rows; its FROM, WHERE, ORDER BY and LIMIT stay."""
    model = stmt.column_descriptions[0]["entity"]
    columns = columns_of(schema, model)
    names = {c.key for c in columns}
    return stmt.with_only_columns(*columns, *(e for e in extra if e.key not in names))


async def first_row(
    session: AsyncSession, stmt: Select[Any], params: Mapping[str, Any] | None = None
) -> Row[Any] | None:
    """The first row of a Core ``stmt`` (from ``shaped``), run on the session's connection:
    no ORM execution machinery. A statement built once with ``bindparam``s and reused (see
    ``closerdesk.calls.repository.call_row``) is neither rebuilt nor re-keyed per request."""
    async with _connection(session) as connection:
        row: Row[Any] | None = (await connection.execute(stmt, dict(params or {}))).first()
    return row


async def all_rows(session: AsyncSession, stmt: Select[Any]) -> Sequence[Row[Any]]:
    """Every row of a Core ``stmt`` (from ``shaped``), run on the session's connection."""
    async with _connection(session) as connection:
        rows: Sequence[Row[Any]] = (await connection.execute(stmt)).all()
    return rows


@asynccontextmanager
async def _connection(session: AsyncSession) -> AsyncIterator[AsyncConnection]:
    """The session's connection, except for a read-only session (``Database.read_only``) that
    has not begun: then a connection of its engine held only for this statement, without the
    ORM's transaction bookkeeping (a request never holds two at once). A writer's reads stay
    in its transaction."""
    bind = session.bind
    if (
        session.in_transaction()
        or not isinstance(bind, AsyncEngine)
        or not bind.get_execution_options().get(READ_ONLY_OPTION, False)
    ):
        yield await session.connection()
        return
    async with bind.connect() as connection:
        yield connection


@cache
def _list_adapter(schema: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[schema])  # type: ignore[valid-type]


def validate_rows(schema: type[S], rows: Iterable[Row[Any]]) -> list[S]:
    """``schema`` instances of ``rows`` (from ``shaped``), validated in one call."""
    validated: list[S] = _list_adapter(schema).validate_python([row._asdict() for row in rows])
    return validated


def validate_row(schema: type[S], row: Row[Any]) -> S:
    """One ``schema`` instance of one row."""
    return schema.model_validate(row._asdict())


__all__: Sequence[str] = (
    "all_rows",
    "columns_of",
    "first_row",
    "shaped",
    "validate_row",
    "validate_rows",
)
