"""Declarative base: naming convention, UTC timestamps, JSON that works on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, MetaData, String, TypeDecorator
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
    * SQLite: whole seconds from ``strftime('%s', …)`` plus the six fraction digits of the
      stored text, which ``UTCDateTime`` always writes as ``YYYY-MM-DD HH:MM:SS.ffffff``
      (text without a fraction counts as ``.000000``).
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
        f"(CAST(strftime('%s', {column}) AS INTEGER) * 1000000"
        f" + CAST(substr({column}, 21, 6) AS INTEGER))"
    )


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
