"""Team member shapes (SPEC §4)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AnyHttpUrl, EmailStr, Field, SecretStr, field_validator, model_validator

from closerdesk.kit.schemas import MemberId, RequestSchema, Schema, TimeZoneName, UTCDateTime

Role = Literal["closer", "setter", "admin"]


class CalendarConnection(Schema):
    """A member's connected calendar ("grant"); never a credential (``docs/calendars.md``).

    ``status`` turns ``invalid`` when the provider refuses the credentials
    (``invalid_reason`` says why; connect again to fix it). ``sync_status`` and
    ``last_synced_at`` tell how fresh the busy mirror of an external calendar is
    (``pending`` until the first sync; the built-in calendar is always ``ok``).
    """

    id: str
    provider: Literal["builtin", "caldav"]
    provider_grant_id: str
    calendar_id: str
    status: Literal["valid", "invalid"]
    invalid_reason: str | None = None
    sync_status: Literal["pending", "ok", "failed"]
    last_synced_at: UTCDateTime | None = None
    sync_error: str | None = None
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


class BuiltinCalendarConnect(RequestSchema):
    """The built-in calendar: events and busy blocks kept by closerdesk itself."""

    provider: Literal["builtin"]


class CalDavCalendarConnect(RequestSchema):
    """Any CalDAV server (Fastmail, iCloud, Nextcloud, Radicale, Xandikos, Zoho).

    ``url`` may be the server's root, a principal or a calendar collection; without
    ``calendar_url`` the first calendar that accepts events is used. Use an app-specific
    password where the server offers one. The credentials are checked before anything is
    saved, and stored encrypted.
    """

    provider: Literal["caldav"]
    url: AnyHttpUrl
    username: str | None = Field(default=None, max_length=320)
    password: SecretStr | None = Field(default=None, max_length=1000)
    calendar_url: AnyHttpUrl | None = None

    @field_validator("url", "calendar_url")
    @classmethod
    def _no_userinfo(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        # A password inside a URL would be stored and shown as the calendar's address.
        if value is not None and (value.username or value.password):
            raise ValueError("put the user name and password in username/password, not the URL")
        return value


CalendarConnect = Annotated[
    BuiltinCalendarConnect | CalDavCalendarConnect, Field(discriminator="provider")
]
"""``PUT /v1/team/{id}/calendar`` body, by ``provider``."""


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
