"""Lead shapes (docs/api.md, "Leads")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import EmailStr, Field, StringConstraints

from closerdesk.kit.schemas import (
    E164Phone,
    RequestSchema,
    Schema,
    TimeZoneName,
    UTCDateTime,
)

LeadStatus = Literal["new", "booked", "qualified", "disqualified", "won", "lost"]
LeadText = Annotated[str, StringConstraints(max_length=200)]
"""``full_name``/``company``: at most 200 characters, the width of their columns."""


class Lead(Schema):
    """A prospect. ``metadata`` is free JSON (utm, CRM ids, …)."""

    id: str
    email: str
    full_name: str | None
    phone: str | None
    company: str | None
    time_zone: str | None
    status: LeadStatus
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_at: UTCDateTime
    updated_at: UTCDateTime


class LeadCreate(RequestSchema):
    email: EmailStr
    full_name: LeadText | None = None
    phone: E164Phone | None = None
    company: LeadText | None = None
    time_zone: TimeZoneName | None = None
    status: LeadStatus = "new"
    metadata: dict[str, Any] = Field(default_factory=dict)


class LeadUpdate(RequestSchema):
    """Only the fields present change; ``null`` clears an optional field."""

    email: EmailStr | None = None
    full_name: LeadText | None = None
    phone: E164Phone | None = None
    company: LeadText | None = None
    time_zone: TimeZoneName | None = None
    status: LeadStatus | None = None
    metadata: dict[str, Any] | None = None
