"""Team member shapes (docs/api.md, "Team")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AnyHttpUrl, EmailStr, Field, SecretStr, field_validator, model_validator

from closerdesk.kit.schemas import MemberId, RequestSchema, Schema, TimeZoneName, UTCDateTime

Role = Literal["closer", "setter", "admin"]
BookingCap = Annotated[
    int,
    Field(
        ge=1,
        le=10_000,
        description="Round robin gives the member at most this many live calls per local day "
        "(or week, from Monday) of its time_zone; null = no cap",
    ),
]


CalendarProviderName = Literal["builtin", "caldav", "google", "microsoft", "nylas"]


class CalendarConnection(Schema):
    """A member's connected calendar ("grant"); never a credential (``docs/calendars.md``).

    ``status`` turns ``invalid`` when the provider refuses the credentials
    (``invalid_reason`` says why; connect again to fix it). ``sync_status`` and
    ``last_synced_at`` tell how fresh the busy mirror of an external calendar is
    (``pending`` until the first sync; the built-in calendar is always ``ok``).
    """

    id: str
    provider: CalendarProviderName
    provider_grant_id: str
    calendar_id: str
    status: Literal["valid", "invalid"]
    invalid_reason: str | None = None
    sync_status: Literal["pending", "ok", "failed"]
    last_synced_at: UTCDateTime | None = None
    sync_error: str | None = None
    created_at: UTCDateTime


class CalendarAuthorization(Schema):
    """202 to ``PUT /v1/team/{id}/calendar`` for Google or Microsoft without a refresh token:
    open ``authorization_url`` in the member's browser before ``expires_at``; the provider
    then returns to ``GET /oauth/{provider}/callback``, which saves the connection."""

    member_id: str
    provider: Literal["google", "microsoft"]
    authorization_url: str
    expires_at: UTCDateTime


class TeamMember(Schema):
    id: str
    name: str
    email: str
    role: Role
    time_zone: str
    is_active: bool
    max_bookings_per_day: int | None = None
    max_bookings_per_week: int | None = None
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
    max_bookings_per_day: BookingCap | None = None
    max_bookings_per_week: BookingCap | None = None


class TeamMemberUpdate(RequestSchema):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = None
    role: Role | None = None
    time_zone: TimeZoneName | None = None
    is_active: bool | None = None
    max_bookings_per_day: BookingCap | None = None
    max_bookings_per_week: BookingCap | None = None


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


class NylasCalendarConnect(RequestSchema):
    """A Nylas v3 grant (Aura's provider): the partner ran Nylas's hosted authentication
    and passes the ``grant_id`` it got. closerdesk calls Nylas with
    ``CLOSERDESK_NYLAS_API_KEY``; ``conferencing`` asks Nylas to create a room with each event
    (Zoom also needs the closer's Zoom grant, ``conf_grant_id``).
    """

    provider: Literal["nylas"]
    grant_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$")
    calendar_id: str = Field(default="primary", min_length=1, max_length=500)
    conferencing: Literal["google_meet", "teams", "zoom"] | None = None
    conf_grant_id: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_\-]+$"
    )
    """The closer's Zoom grant at Nylas; needed with ``conferencing: "zoom"``."""

    @model_validator(mode="after")
    def _zoom_needs_its_grant(self) -> NylasCalendarConnect:
        if self.conferencing == "zoom" and self.conf_grant_id is None:
            raise ValueError("conferencing 'zoom' needs conf_grant_id (the closer's Zoom grant)")
        return self


class GoogleCalendarConnect(RequestSchema):
    """Google Calendar. With a ``refresh_token`` (from the partner's own consent screen, for
    closerdesk's OAuth client) it is checked and saved at once; without one the answer is 202
    with an ``authorization_url`` for the member to open. ``conferencing: "google_meet"`` adds
    a Meet room to every event."""

    provider: Literal["google"]
    refresh_token: SecretStr | None = Field(default=None, min_length=1, max_length=2000)
    calendar_id: str = Field(default="primary", min_length=1, max_length=500)
    conferencing: Literal["google_meet"] | None = None


class MicrosoftCalendarConnect(RequestSchema):
    """Microsoft 365 / Outlook through Microsoft Graph; as Google (``refresh_token`` or a 202
    with an ``authorization_url``). Without ``calendar_id`` the mailbox's default calendar is
    used. ``conferencing: "teams"`` makes every event a Teams meeting."""

    provider: Literal["microsoft"]
    refresh_token: SecretStr | None = Field(default=None, min_length=1, max_length=4000)
    calendar_id: str | None = Field(default=None, min_length=1, max_length=500)
    conferencing: Literal["teams"] | None = None


CalendarConnect = Annotated[
    BuiltinCalendarConnect
    | CalDavCalendarConnect
    | NylasCalendarConnect
    | GoogleCalendarConnect
    | MicrosoftCalendarConnect,
    Field(discriminator="provider"),
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
