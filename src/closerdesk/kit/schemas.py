"""Base schemas and field types shared by every resource (SPEC §2 wire conventions)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)

from closerdesk.kit.time import as_utc, is_valid_time_zone, isoformat_z


class Schema(BaseModel):
    """Base of every response schema: built from ORM rows by attribute."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class RequestSchema(BaseModel):
    """Base of every request body: unknown fields are a 400, never silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a UTC offset, e.g. 2026-01-20T15:00:00Z")
    return as_utc(value)


UTCDateTime = Annotated[
    datetime,
    AfterValidator(_require_aware),
    PlainSerializer(isoformat_z, return_type=str, when_used="json"),
    Field(json_schema_extra={"format": "date-time"}),
]
"""RFC 3339 timestamp: offsets accepted and normalised to UTC; a naive one is a 400 (SPEC §1)."""


def _check_time_zone(value: str) -> str:
    if not is_valid_time_zone(value):
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
"""A team member id (seed 000: ``^user_[A-Za-z0-9]+$``)."""

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


class Envelope(BaseModel, Generic[DataT]):
    """``{"success": true, "data": …}``."""

    success: Literal[True] = True
    data: DataT


class Pagination(BaseModel):
    next_cursor: str | None
    has_more: bool


class ListEnvelope(BaseModel, Generic[DataT]):
    """``{"success": true, "data": [...], "pagination": {...}}``."""

    success: Literal[True] = True
    data: list[DataT]
    pagination: Pagination


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorEnvelope(BaseModel):
    """Every non-2xx answer (SPEC §2)."""

    success: Literal[False] = False
    error: str = Field(description="A human sentence")
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", examples=["CALL_NOT_FOUND"])
    requestId: str = Field(examples=["req_01JD0000000000000000000000"])
    details: Any = None
