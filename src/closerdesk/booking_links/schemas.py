"""Booking link shapes (docs/api.md): the same names go in (``POST``) and come back (``GET``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from closerdesk.kit.schemas import (
    CalendarDate,
    MemberId,
    RequestSchema,
    Schema,
    StrictSchema,
    TimeZoneName,
    UTCDateTime,
    UTCDateTimeOut,
)
from closerdesk.models.call import MAX_CALL_MINUTES

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
Priority = Literal["high", "medium", "low"]
Assignment = Literal["round_robin", "fixed"]
FairnessPeriod = Literal["month", "week", "rolling_30_days"]
"""What round robin counts each host's share over (docs/sales-floor.md "Round-robin controls"):
the calendar month (UTC), the ISO week (UTC, from Monday) or the last 30 days."""
LocalTime = Annotated[
    str,
    Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", examples=["09:00"]),
]
Minutes = Annotated[int, Field(ge=0, le=24 * 60)]
PublicDescription = Annotated[
    str,
    Field(
        max_length=2000,
        description="Public text for the lead: written into calendar events, the .ics file and "
        "add-to-calendar links",
    ),
]


class LocalInterval(StrictSchema):
    """``start``–``end`` in local wall time, ``"HH:MM"`` (``end`` may be ``"24:00"``)."""

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _ordered(self) -> LocalInterval:
        if self.start == "24:00" or not self.start < self.end:
            raise ValueError("start must be before end")
        return self


class WeeklyWindow(LocalInterval):
    weekday: Weekday


class DateOverride(StrictSchema):
    """A local date whose windows replace the weekly ones; ``intervals: []`` is a day off."""

    date: CalendarDate
    intervals: list[LocalInterval] = Field(default_factory=list, max_length=24)


class HostSchedule(StrictSchema):
    """A weekly schedule in the host's IANA zone, with date overrides."""

    time_zone: TimeZoneName
    weekly: list[WeeklyWindow] = Field(default_factory=list, max_length=100)
    overrides: list[DateOverride] = Field(default_factory=list, max_length=400)

    @field_validator("overrides")
    @classmethod
    def _unique_dates(cls, overrides: list[DateOverride]) -> list[DateOverride]:
        if len({o.date for o in overrides}) != len(overrides):
            raise ValueError("each date may be overridden once")
        return overrides


class BookingLinkHost(StrictSchema):
    """A closer taking calls of the link: round-robin ``priority`` and ``weight``, schedule."""

    member_id: MemberId
    priority: Priority = "medium"
    weight: int = Field(default=100, ge=0, le=10_000)
    schedule: HostSchedule


class BookingLink(Schema):
    id: str
    slug: str
    title: str
    description: str | None
    duration_minutes: int
    assignment: Assignment
    minimum_notice_minutes: int
    slot_interval_minutes: int | None
    buffer_before_minutes: int
    buffer_after_minutes: int
    is_active: bool
    fairness_period: FairnessPeriod
    requires_confirmation: bool
    hosts: list[BookingLinkHost]
    created_at: UTCDateTime
    updated_at: UTCDateTime


def _check_hosts(hosts: list[BookingLinkHost]) -> list[BookingLinkHost]:
    if len({h.member_id for h in hosts}) != len(hosts):
        raise ValueError("a member may be a host once")
    return hosts


class BookingLinkCreate(RequestSchema):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$", examples=["strategy-call"])
    title: str = Field(min_length=1, max_length=200)
    description: PublicDescription | None = None
    duration_minutes: int = Field(ge=5, le=MAX_CALL_MINUTES)
    assignment: Assignment = "round_robin"
    minimum_notice_minutes: int = Field(default=0, ge=0, le=365 * 24 * 60)
    slot_interval_minutes: int | None = Field(default=None, ge=5, le=24 * 60)
    buffer_before_minutes: Minutes = 0
    buffer_after_minutes: Minutes = 0
    fairness_period: FairnessPeriod = "month"
    requires_confirmation: bool = Field(
        default=False,
        description="Calls booked through the link are pending until confirmed "
        '(docs/sales-floor.md, "Confirmation")',
    )
    hosts: list[BookingLinkHost] = Field(min_length=1, max_length=100)

    _hosts = field_validator("hosts")(_check_hosts)

    @model_validator(mode="after")
    def _fixed_has_one_host(self) -> BookingLinkCreate:
        if self.assignment == "fixed" and len(self.hosts) != 1:
            raise ValueError("a fixed booking link has exactly one host")
        return self


class BookingLinkUpdate(RequestSchema):
    """Only the fields present change; ``hosts`` replaces the whole list."""

    slug: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: PublicDescription | None = None
    duration_minutes: int | None = Field(default=None, ge=5, le=MAX_CALL_MINUTES)
    assignment: Assignment | None = None
    minimum_notice_minutes: int | None = Field(default=None, ge=0, le=365 * 24 * 60)
    slot_interval_minutes: int | None = Field(default=None, ge=5, le=24 * 60)
    buffer_before_minutes: Minutes | None = None
    buffer_after_minutes: Minutes | None = None
    is_active: bool | None = None
    fairness_period: FairnessPeriod | None = None
    requires_confirmation: bool | None = None
    hosts: list[BookingLinkHost] | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[BookingLinkHost] | None) -> list[BookingLinkHost] | None:
        return None if hosts is None else _check_hosts(hosts)


class Slot(Schema):
    """A bookable start: UTC ``start``/``end`` and ``local_start`` in the requested zone."""

    start: UTCDateTimeOut
    end: UTCDateTimeOut
    local_start: str = Field(
        examples=["2027-03-15T09:00:00-04:00"],
        json_schema_extra={"format": "date-time"},
        description="RFC 3339 with the offset of the requested time zone",
    )


class ReservationCreate(RequestSchema):
    """``POST /v1/booking-links/{id}/reservations``: the offered slot to hold (RFC 3339)."""

    start: UTCDateTime


class Reservation(Schema):
    """A slot held for one lead until ``expires_at`` (docs/sales-floor.md "Slot reservations").

    ``start``/``end`` are the call's span (UTC, without buffers). The held host is not shown:
    the answer goes to lead-facing clients, and the booking made with ``reservation_id`` names
    the closer.
    """

    id: str = Field(examples=["rsv_01JH2Q4V7Z8X9Y0A1B2C3D4E5F"])
    booking_link_id: str
    start: UTCDateTime = Field(validation_alias="starts_at")
    end: UTCDateTime = Field(validation_alias="ends_at")
    expires_at: UTCDateTime
