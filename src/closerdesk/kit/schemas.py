"""Base schemas and field types shared by every resource (docs/api.md, "Requests")."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from closerdesk.kit.time import as_utc, is_valid_time_zone


class Schema(BaseModel):
    """Base of every response schema: built from ORM rows by attribute."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class StrictSchema(Schema):
    """A shape that goes in as well as out (nested in a request body): as strict as
    ``RequestSchema`` about JSON types."""

    model_config = ConfigDict(strict=True)


class RequestSchema(BaseModel):
    """Base of every request body: unknown fields are a 400, never silently dropped.

    Strict: a value of the wrong JSON type is a 400 too (``0`` is not ``false``, ``"100"`` and
    ``true`` are not cents), as the OpenAPI document says; timestamps parse from RFC 3339 text
    (``UTCDateTime``). Nested response-style shapes (``Schema``) keep their own config.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        """Values the databases cannot store are a 400, wherever they sit (free JSON included):
        NUL (PostgreSQL refuses it), lone surrogates (not UTF-8 at all) and the non-finite
        numbers Python's JSON parser lets through (``NaN``, ``Infinity``, ``-Infinity``, and
        ``1e400``, which overflows to infinity): PostgreSQL's ``json`` refuses them and SQLite
        stores ``null`` (docs/architecture.md, "Request bodies")."""
        found = _unstorable_text(data, "")
        if found is not None:
            from closerdesk.errors import ValidationFailed  # errors imports this module

            raise ValidationFailed.field(found[0] or "body", found[1])
        return data

    @model_validator(mode="after")
    def _email_local_part(self) -> Any:
        """RFC 5321 §4.5.3.1.1: the part before the ``@`` is at most 64 octets (pydantic's
        ``EmailStr`` checks only the whole address). Raises ``ValidationFailed`` (400)."""
        for name in _email_fields(type(self)):
            value = getattr(self, name, None)
            if isinstance(value, str) and len(value.rpartition("@")[0].encode()) > 64:
                from closerdesk.errors import ValidationFailed  # errors imports this module

                raise ValidationFailed.field(
                    name, "the part before @ must be at most 64 characters (RFC 5321)"
                )
        return self


_EMAIL_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _email_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """Names of ``model``'s fields typed ``EmailStr`` (or ``EmailStr | None``)."""
    found = _EMAIL_FIELDS.get(model)
    if found is None:
        found = tuple(
            name
            for name, info in model.model_fields.items()
            if info.annotation is EmailStr or EmailStr in get_args(info.annotation)
        )
        _EMAIL_FIELDS[model] = found
    return found


def _unstorable_text(value: Any, path: str) -> tuple[str, str] | None:
    """``(field path, problem)`` of the first string (or key) no database can store, or the
    first number that is not finite, in document order. Walks with its own stack, not by
    recursion: a body nested a thousand levels deep is an answer, not a ``RecursionError``."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        problem = _unstorable_scalar(item)
        if problem is not None:
            return where, problem
        children: list[tuple[str, Any]] = []
        if isinstance(item, dict):
            for key, child in item.items():
                key_problem = _unstorable_scalar(key) if isinstance(key, str) else None
                if key_problem is not None:
                    return where, key_problem
                children.append((f"{where}.{key}" if where else str(key), child))
        elif isinstance(item, list | tuple):
            children = [(f"{where}.{i}" if where else str(i), c) for i, c in enumerate(item)]
        stack.extend(reversed(children))
    return None


def _unstorable_scalar(value: Any) -> str | None:
    """What no database can store in one number or string, else None."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "numbers must be finite (no NaN, Infinity or overflowing values)"
        return None
    if isinstance(value, str):
        if "\x00" in value:
            return "text must not contain NUL (U+0000) characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text must be valid Unicode (no lone surrogates)"
    return None


# Far enough from datetime's own limits that adding a duration, buffers or a query window never
# overflows (an OverflowError would be a 500 instead of the 400 it is).
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})?$"
)


def _parse_rfc3339(value: object) -> object:
    """Text must be an RFC 3339 timestamp: not a Unix time (``0``), not a bare date."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 timestamp, e.g. 2026-01-20T15:00:00Z")
    # fromisoformat takes at most microseconds: cut nanoseconds to six digits.
    text = re.sub(
        r"\.(\d+)", lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.upper().replace(" ", "T")
    )
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an RFC 3339 timestamp, e.g. 2026-01-20T15:00:00Z") from None


def _parse_iso_date(value: object) -> object:
    """A calendar date is ``YYYY-MM-DD`` text: not a number of seconds, not a timestamp."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("must be a date, YYYY-MM-DD")


CalendarDate = Annotated[date, BeforeValidator(_parse_iso_date)]
"""A calendar date (no time, no zone), ``2026-12-24``."""


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is UTC and _EARLIEST <= value < _LATEST:
        return value  # what the databases hand back: no conversion needed
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a UTC offset, e.g. 2026-01-20T15:00:00Z")
    try:
        utc = as_utc(value)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None
    if not _EARLIEST <= utc < _LATEST:
        raise ValueError("timestamp must be between 1900-01-01 and 9000-01-01")
    return utc


UTCDateTime = Annotated[
    datetime,
    BeforeValidator(_parse_rfc3339),
    AfterValidator(_require_aware),
    Field(json_schema_extra={"format": "date-time"}),
]
"""RFC 3339 timestamp: offsets normalised to UTC; a naive one is a 400 (docs/api.md).

On the wire it is written by pydantic's own (Rust) serialiser, which writes a UTC time as
``2026-01-20T15:00:00Z`` (microseconds when there are some), as ``isoformat_z`` does; every
value held is UTC, the validator made it so."""

UTCDateTimeOut = Annotated[datetime, Field(json_schema_extra={"format": "date-time"})]
"""A response-only timestamp for values closerdesk computed itself, already aware UTC (slot
starts, say): validated and serialised by pydantic's Rust core, ``2026-01-20T15:00:00Z`` as
``UTCDateTime`` writes it, with no Python call per value; a list of hundreds costs next to
nothing (docs/performance.md, "Slots through the API"). The same OpenAPI shape as
``UTCDateTime``; never for input (it does not normalise offsets) or for stored values."""


# Names tzdata ships that are not zones a person lives in: the host's own zone, the POSIX
# and leap-second ("right") trees, and the placeholder zone.
_NOT_IANA_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@cache
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())  # walks tzdata: once per process


def _check_time_zone(value: str) -> str:
    """A canonical IANA name (or one of its links, ``US/Eastern``), never ``localtime``,
    ``posix/…``, ``right/…`` or ``Factory`` (docs/architecture.md, "Request bodies")."""
    if (
        value in _NOT_IANA_ZONES
        or value.startswith(("posix/", "right/"))
        or value not in _iana_zones()
        or not is_valid_time_zone(value)
    ):
        raise ValueError(f"'{value}' is not an IANA time zone name (e.g. America/New_York)")
    return value


TimeZoneName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(_check_time_zone),
    Field(examples=["America/New_York"]),
]
"""An IANA time zone name, checked against tzdata."""

MemberId = Annotated[
    str,
    StringConstraints(pattern=r"^user_[A-Za-z0-9]+$", max_length=64),
    Field(examples=["user_2abc123xyz"]),
]
"""A team member id (Aura Partner API: ``^user_[A-Za-z0-9]+$``)."""

E164Phone = Annotated[
    str,
    StringConstraints(pattern=r"^\+[1-9][0-9]{1,14}$"),
    Field(examples=["+14155550123"]),
]
"""A phone number in E.164 form."""

Cents = Annotated[int, Field(ge=0, le=10**13, description="Integer cents (500000 = $5,000.00)")]

ShortText = Annotated[str, StringConstraints(max_length=255)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    Field(examples=["USD"], description="ISO 4217 code, upper case"),
]

DataT = TypeVar("DataT")


def readable_name(params: tuple[Any, ...]) -> str:
    """A schema name code generators keep readable: ``Call``, ``SlotList``, ``StringMap``."""
    [param] = params
    origin = getattr(param, "__origin__", None)
    args = getattr(param, "__args__", ())
    if origin is list and args:
        return readable_name(args[:1]) + "List"
    if origin is dict and len(args) == 2:
        return readable_name(args[1:]) + "Map"
    names = {str: "String", bool: "Boolean", int: "Integer", float: "Number"}
    return names.get(param) or getattr(param, "__name__", None) or "Value"


class Envelope(BaseModel, Generic[DataT]):
    """``{"success": true, "data": …}``."""

    success: Literal[True] = True
    data: DataT

    @classmethod
    def model_parametrized_name(cls, params: tuple[Any, ...]) -> str:
        """``Envelope[Call]`` is ``CallEnvelope`` in the OpenAPI document."""
        return readable_name(params) + "Envelope"


class Pagination(BaseModel):
    next_cursor: str | None
    has_more: bool


class ListEnvelope(BaseModel, Generic[DataT]):
    """``{"success": true, "data": [...], "pagination": {...}}``."""

    success: Literal[True] = True
    data: list[DataT]
    pagination: Pagination

    @classmethod
    def model_parametrized_name(cls, params: tuple[Any, ...]) -> str:
        """``ListEnvelope[Call]`` is ``CallPage`` in the OpenAPI document."""
        return readable_name(params) + "Page"


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorEnvelope(BaseModel):
    """Every non-2xx answer (docs/api.md, "Errors")."""

    success: Literal[False] = False
    error: str = Field(description="A human sentence")
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", examples=["CALL_NOT_FOUND"])
    requestId: str = Field(examples=["req_01JD0000000000000000000000"])
    details: Any = None
