"""Declarative base: naming convention, UTC timestamps, JSON that works on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, MetaData, String, Text, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from closerdesk.kit.time import as_utc, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware.

    PostgreSQL keeps ``timestamptz``; SQLite keeps the naive UTC text, made aware on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        # SQLite hands back the stored UTC text ("2026-01-20 15:00:00.000000"). Parsing it with
        # its offset appended is one C call that yields the UTC singleton, about 7 times faster
        # than the generic processor plus ``replace(tzinfo=…)``; slot queries read tens of
        # thousands of these.
        def process(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value + "+00:00")

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        # Hot: busy-time queries read tens of thousands of these per slot query.
        if value is None or value.tzinfo is UTC:
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class epoch_us(FunctionElement[int]):
    """``epoch_us(column)``: a ``UTCDateTime`` column as integer microseconds since the Unix
    epoch, computed by the database, so a query reads plain ints and no timestamp is parsed
    in Python (the span form of ``closerdesk.scheduling._spans``; docs/performance.md, "Slots
    through the API"). Exact on both databases:

    * PostgreSQL (14 and later): ``EXTRACT(EPOCH …)`` is ``numeric``, times 10⁶, cast to bigint;
    * SQLite: the whole seconds of the text's first 19 characters (``julianday`` of a whole
      second, rounded: its float error is far below a second; the whole text would be rounded
      to milliseconds) plus its six fraction digits, which ``UTCDateTime`` always writes
      (``YYYY-MM-DD HH:MM:SS.ffffff``; none counts as zero). ``julianday`` is a direct float,
      cheaper than ``strftime('%s', …)``, which formats text to be cast back.
    """

    type = BigInteger()
    inherit_cache = True
    name = "epoch_us"


@compiles(epoch_us, "postgresql")
def _epoch_us_postgresql(element: epoch_us, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)"


@compiles(epoch_us, "sqlite")
def _epoch_us_sqlite(element: epoch_us, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return (
        f"(CAST(round((julianday(substr({column}, 1, 19)) - 2440587.5) * 86400) AS INTEGER)"
        " * 1000000"
        f" + CAST(substr({column}, 21, 6) AS INTEGER))"
    )


class _IntList(TypeDecorator[list[int]]):
    """What :class:`epoch_us_list` answers: a PostgreSQL array (a list from the driver) or
    SQLite's JSON array text, both read as ``list[int]``."""

    impl = Text()
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> list[int] | None:
        if value is None or isinstance(value, list):
            return value
        loaded: list[int] = json.loads(value)
        return loaded


class epoch_us_list(FunctionElement[list[int]]):
    """``epoch_us_list(column)``: the aggregate of :class:`epoch_us` over a group, as one
    ``list[int]`` (PostgreSQL ``array_agg``, SQLite ``json_group_array``). Reading a group's
    busy time as two such lists, one row per group, costs far less than one row per interval
    (docs/performance.md, "Slots through the API"). Several of them in one query see the
    group's rows in the same order (each database feeds every aggregate of a group the same
    rows in one pass), so their items pair up by position."""

    type = _IntList()
    inherit_cache = True
    name = "epoch_us_list"


@compiles(epoch_us_list, "postgresql")
def _epoch_us_list_postgresql(element: epoch_us_list, compiler: SQLCompiler, **kw: Any) -> str:
    return f"array_agg({compiler.process(epoch_us(*element.clauses), **kw)})"


@compiles(epoch_us_list, "sqlite")
def _epoch_us_list_sqlite(element: epoch_us_list, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array({compiler.process(epoch_us(*element.clauses), **kw)})"


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), str: String()}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


def org_fk() -> Any:
    """``organization_id`` column: every row belongs to one organization (docs/architecture.md)."""
    from sqlalchemy import ForeignKey

    return mapped_column(String(40), ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
