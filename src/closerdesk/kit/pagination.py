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
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from closerdesk.errors import ValidationFailed
from closerdesk.kit.rows import all_rows, shaped, validate_rows
from closerdesk.kit.schemas import ListEnvelope, Pagination
from closerdesk.kit.time import as_utc

T = TypeVar("T")
S = TypeVar("S", bound=BaseModel)

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


# The range request timestamps are held to (``UTCDateTime``): a cursor time outside it is
# forged, and one near datetime's own limits overflows when converted (an OverflowError).
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _load(value: object) -> object:
    if isinstance(value, dict):
        if set(value) != {"t"} or not isinstance(value["t"], str):
            raise ValueError("not a time")
        loaded = datetime.fromisoformat(value["t"])
        if loaded.tzinfo is None:  # we only ever write aware times; a naive one is forged
            raise ValueError("naive time")
        try:
            utc = loaded.astimezone(UTC)
        except OverflowError:
            raise ValueError("time out of range") from None
        if not _EARLIEST <= utc < _LATEST:
            raise ValueError("time out of range")
        return utc
    if isinstance(value, str) and not _storable(value):
        raise ValueError("unstorable text")
    return value


def _storable(text: str) -> bool:
    """Text a database can compare: no NUL (PostgreSQL refuses it), valid UTF-8 (no lone
    surrogates, which JSON's ``\\udc80`` escapes can carry)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_cursor(values: Sequence[object]) -> str:
    raw = json.dumps([_dump(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> list[object]:
    """The sort key a cursor carries: ``width`` values, each text, an aware UTC time (within
    1900–9000) or ``null``.

    Raises ``ValidationFailed`` (400 ``VALIDATION_ERROR``, field ``cursor``) for anything not
    made by us: not base64url, not UTF-8 JSON, non-finite numbers, the wrong width or types,
    text with NUL or lone surrogates, times out of range (docs/architecture.md, "Pagination").
    """
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        values = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        if not isinstance(values, list) or len(values) != width:
            raise ValueError("wrong width")
        if values[-1] is None:  # the last key is the unique id: never null
            raise ValueError("null id")
        loaded = [_load(v) for v in values]
        if not all(v is None or isinstance(v, str | datetime) for v in loaded):
            raise ValueError("wrong type")
        return loaded
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        raise ValidationFailed.field("cursor", "not a cursor returned by this API") from None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


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


def _nullable(key: Key) -> bool:
    return bool(getattr(key.expression, "nullable", True))


def _page_query(
    stmt: Select[Any], keys: Sequence[Key], limit: int, cursor: str | None
) -> Select[Any]:
    if cursor is not None:
        values = decode_cursor(cursor, len(keys))
        # A cursor of the right width but the wrong types would reach the database (a 500).
        for index, (key, value) in enumerate(zip(keys, values, strict=True)):
            # Only a nullable first key of several can be null (``head > NULL`` is no SQL).
            null_allowed = index == 0 and len(keys) > 1 and _nullable(key)
            if (value is None and not null_allowed) or (
                value is not None and not isinstance(value, _python_type(key))
            ):
                raise ValidationFailed.field("cursor", "not a cursor returned by this API")
        stmt = stmt.where(_after(keys, values))
    order = [keys[0].asc().nulls_last(), *(k.asc() for k in keys[1:])]
    return stmt.order_by(*order).limit(limit + 1)


async def paginate(
    session: AsyncSession,
    stmt: Select[T],
    *,
    keys: Sequence[Key],
    limit: int,
    cursor: str | None,
) -> Page[T]:
    """One page of ``stmt`` ordered by ``keys``; fetches ``limit + 1`` rows to know if more.

    Raises ``ValidationFailed`` (400, field ``cursor``) for a cursor not made by this API."""
    query = _page_query(stmt, keys, limit, cursor)
    rows = list((await session.scalars(query)).all())
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    last = rows[-1]
    return Page(rows, encode_cursor([getattr(last, k.key) for k in keys]))


async def paginate_as(
    session: AsyncSession,
    schema: type[S],
    stmt: Select[Any],
    *,
    keys: Sequence[Key],
    limit: int,
    cursor: str | None,
) -> ListEnvelope[S]:
    """``paginate`` answering the page itself: ``stmt`` (a ``select(Model)…``) reads only
    ``schema``'s columns as Core rows, validated in one pass (``closerdesk.kit.rows``).

    Raises ``ValidationFailed`` (400, field ``cursor``) for a cursor not made by this API."""
    query = _page_query(shaped(stmt, schema, *keys), keys, limit, cursor)
    rows = await all_rows(session, query)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([getattr(rows[-1], k.key) for k in keys])
    # Built without a second validation: the items were just validated, the rest is ours.
    return ListEnvelope[schema].model_construct(  # type: ignore[valid-type]
        data=validate_rows(schema, rows),
        pagination=Pagination(next_cursor=next_cursor, has_more=next_cursor is not None),
    )
