"""Opaque cursor (keyset) pagination: ``limit`` 1–100 (default 50), stable order, no offsets.

The cursor is the sort key of the last row returned, base64url-encoded JSON. Sort keys are a
list of columns; the first may be nullable (nulls sort last), the last must be unique (``id``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from closerdesk.errors import ValidationFailed
from closerdesk.kit.schemas import ListEnvelope, Pagination
from closerdesk.kit.time import as_utc

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1–100")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page")
]


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None

    def envelope(self, data: list[Any]) -> ListEnvelope[Any]:
        return ListEnvelope(
            data=data, pagination=Pagination(next_cursor=self.next_cursor, has_more=self.has_more)
        )


def _dump(value: object) -> object:
    if isinstance(value, datetime):
        return {"t": as_utc(value).isoformat()}
    return value


def _load(value: object) -> object:
    if isinstance(value, dict) and isinstance(value.get("t"), str):
        loaded = datetime.fromisoformat(value["t"])
        if loaded.tzinfo is None:  # we only ever write aware times; a naive one is forged
            raise ValueError("naive time")
        return loaded
    return value


def encode_cursor(values: Sequence[object]) -> str:
    raw = json.dumps([_dump(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> list[object]:
    """Raises ``ValidationFailed`` (400, field ``cursor``) for anything not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != width:
            raise ValueError("wrong width")
        loaded = [_load(v) for v in values]
        if not all(v is None or isinstance(v, str | datetime) for v in loaded):
            raise ValueError("wrong type")
        return loaded
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed.field("cursor", "not a cursor returned by this API") from None


Key = InstrumentedAttribute[Any]


def _after(keys: Sequence[Key], values: Sequence[object]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in ``keys`` order (first key nullable, nulls last)."""
    head, head_value = keys[0], values[0]
    if len(keys) == 1:
        return head > head_value
    rest = _after(keys[1:], values[1:])
    if head_value is None:
        return and_(head.is_(None), rest)
    return or_(head > head_value, and_(head == head_value, rest), head.is_(None))


def _python_type(key: Key) -> type[Any]:
    sql_type = key.type
    # A TypeDecorator (UTCDateTime) answers ``object``; its implementation knows better.
    python_type: type[Any] = getattr(sql_type, "impl", sql_type).python_type
    return python_type


async def paginate(
    session: AsyncSession,
    stmt: Select[T],
    *,
    keys: Sequence[Key],
    limit: int,
    cursor: str | None,
) -> Page[T]:
    """One page of ``stmt`` ordered by ``keys``; fetches ``limit + 1`` rows to know if more."""
    if cursor is not None:
        values = decode_cursor(cursor, len(keys))
        # A cursor of the right width but the wrong types would reach the database (a 500).
        for index, (key, value) in enumerate(zip(keys, values, strict=True)):
            if (value is None and index > 0) or (
                value is not None and not isinstance(value, _python_type(key))
            ):
                raise ValidationFailed.field("cursor", "not a cursor returned by this API")
        stmt = stmt.where(_after(keys, values))
    order = [keys[0].asc().nulls_last(), *(k.asc() for k in keys[1:])]
    rows = list((await session.scalars(stmt.order_by(*order).limit(limit + 1))).all())
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    last = rows[-1]
    return Page(rows, encode_cursor([getattr(last, k.key) for k in keys]))
