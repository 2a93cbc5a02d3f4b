"""Team member shapes (SPEC §4)."""

from __future__ import annotations

from typing import Literal

from pydantic import EmailStr, Field, model_validator

from closerdesk.kit.schemas import MemberId, RequestSchema, Schema, TimeZoneName, UTCDateTime

Role = Literal["closer", "setter", "admin"]


class CalendarConnection(Schema):
    """A member's connected calendar ("grant")."""

    id: str
    provider: str
    provider_grant_id: str
    calendar_id: str
    status: Literal["valid", "invalid"]
    created_at: UTCDateTime


class TeamMember(Schema):
    id: str
    name: str
    email: str
    role: Role
    time_zone: str
    is_active: bool
    calendar: CalendarConnection | None = None
    created_at: UTCDateTime
    updated_at: UTCDateTime


class TeamMemberCreate(RequestSchema):
    """``id`` may be the partner's own identity-provider id (``user_…``); else one is made."""

    id: MemberId | None = None
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    role: Role
    time_zone: TimeZoneName = "UTC"


class TeamMemberUpdate(RequestSchema):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = None
    role: Role | None = None
    time_zone: TimeZoneName | None = None
    is_active: bool | None = None


class CalendarConnect(RequestSchema):
    """Connect a calendar. This build ships the ``builtin`` provider (events kept by closerdesk)."""

    provider: Literal["builtin"]


class BusyBlock(Schema):
    id: str
    member_id: str
    start: UTCDateTime = Field(validation_alias="starts_at")
    end: UTCDateTime = Field(validation_alias="ends_at")
    title: str
    created_at: UTCDateTime


class BusyBlockCreate(RequestSchema):
    start: UTCDateTime
    end: UTCDateTime
    title: str = Field(default="Busy", max_length=200)

    @model_validator(mode="after")
    def _check_span(self) -> BusyBlockCreate:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if (self.end - self.start).days > 366:
            raise ValueError("a busy block spans at most 366 days")
        return self


class BusyInterval(Schema):
    """A merged busy span ``[start, end)`` in UTC."""

    start: UTCDateTime
    end: UTCDateTime


class Disconnected(Schema):
    member_id: str
    disconnected: bool
