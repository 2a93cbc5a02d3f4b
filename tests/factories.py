"""Factories: ``create_*(session, org, **overrides)`` build rows directly, for arranging tests
(e.g. calls in the past, which the API rightly refuses to book)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.auth.service import create_organization, issue_key
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id, ulid
from closerdesk.kit.time import utcnow
from closerdesk.models import (
    CalendarConnection,
    CalendarEvent,
    Call,
    ConferencingLink,
    Lead,
    TeamMember,
)


@dataclass(frozen=True)
class Org:
    id: str
    admin_key: str
    write_key: str
    read_key: str

    @property
    def headers(self) -> dict[str, str]:
        """Admin-scope headers (admin ⊇ write ⊇ read)."""
        return {"Authorization": f"Bearer {self.admin_key}"}

    def auth(self, scope: str) -> dict[str, str]:
        key = {"admin": self.admin_key, "write": self.write_key, "read": self.read_key}[scope]
        return {"Authorization": f"Bearer {key}"}


async def create_org(database: Database, settings: Settings, name: str) -> Org:
    async with database.writer() as session:
        org, admin = await create_organization(session, secret_key=settings.secret_key, name=name)
        write = await issue_key(
            session, secret_key=settings.secret_key, organization_id=org.id, scope="write"
        )
        read = await issue_key(
            session, secret_key=settings.secret_key, organization_id=org.id, scope="read"
        )
        await session.commit()
    return Org(org.id, admin.api_key, write.api_key, read.api_key)


async def create_member(
    session: AsyncSession,
    org: Org,
    *,
    role: str = "closer",
    calendar: bool = True,
    calendar_status: str = "valid",
    **overrides: Any,
) -> TeamMember:
    suffix = ulid()[-10:]
    values: dict[str, Any] = {
        "organization_id": org.id,
        "id": f"user_{suffix}",
        "name": f"{role.title()} {suffix}",
        "email": f"{role}-{suffix.lower()}@example.com",
        "role": role,
        "time_zone": "America/New_York",
        "is_active": True,
    }
    values.update(overrides)
    member = TeamMember(**values)
    session.add(member)
    await session.flush()
    if calendar:
        connection_id = new_id("cal")
        session.add(
            CalendarConnection(
                id=connection_id,
                organization_id=org.id,
                member_id=member.id,
                provider="builtin",
                provider_grant_id=connection_id,
                calendar_id=f"builtin:{member.id}",
                status=calendar_status,
                credentials=None,
            )
        )
    await session.commit()
    return member


async def create_lead(session: AsyncSession, org: Org, **overrides: Any) -> Lead:
    suffix = ulid()[-10:].lower()
    values: dict[str, Any] = {
        "id": new_id("lead"),
        "organization_id": org.id,
        "email": f"lead-{suffix}@example.com",
        "full_name": f"Lead {suffix}",
        "phone": "+14155550123",
        "time_zone": "America/Chicago",
        "status": "new",
        "metadata_": {},
    }
    values.update(overrides)
    lead = Lead(**values)
    session.add(lead)
    await session.commit()
    return lead


async def create_call(
    session: AsyncSession,
    org: Org,
    *,
    lead: Lead,
    closer: TeamMember | None,
    scheduled_at: datetime | None = None,
    duration_minutes: int = 45,
    with_event: bool = True,
    **overrides: Any,
) -> Call:
    """A booking call written directly (any time, past included), with a built-in calendar
    event and a live conferencing link like the API would make."""
    start = scheduled_at if scheduled_at is not None else utcnow() + timedelta(days=2)
    call_id = new_id("call")
    values: dict[str, Any] = {
        "id": call_id,
        "organization_id": org.id,
        "call_kind": "booking",
        "status": "scheduled",
        "lead_id": lead.id,
        "closer_id": closer.id if closer else None,
        "closer_name": closer.name if closer else None,
        "closer_email": closer.email if closer else None,
        "scheduled_at": start,
        "ends_at": start + timedelta(minutes=duration_minutes),
        "duration_minutes": duration_minutes,
        "time_zone": lead.time_zone,
        "action_items": [],
        "form_data": [],
        "reschedule_count": 0,
        "sequence": 0,
        # Arranged rows may share a closer's time (tests place calls freely), as if booked with
        # override_conflict; pass override_conflict=False for a call the PostgreSQL exclusion
        # constraint must see (docs/calendars.md, "No double booking").
        "override_conflict": True,
    }
    if values["call_kind"] == "booking" and closer is not None and with_event:
        from sqlalchemy import select

        connection = await session.scalar(
            select(CalendarConnection).where(
                CalendarConnection.organization_id == org.id,
                CalendarConnection.member_id == closer.id,
            )
        )
        if connection is not None:
            event_id = new_id("evt")
            session.add(
                CalendarEvent(
                    id=event_id,
                    organization_id=org.id,
                    connection_id=connection.id,
                    call_id=call_id,
                    title="Call",
                    starts_at=start,
                    ends_at=start + timedelta(minutes=duration_minutes),
                )
            )
            values["calendar_event_id"] = event_id
            values["calendar_grant_id"] = connection.id
        token = ulid().lower()
        session.add(
            ConferencingLink(
                id=new_id("conf"),
                organization_id=org.id,
                call_id=call_id,
                token=token,
                room_url=f"https://meet.example.test/room-{token}",
            )
        )
        values["conferencing_link"] = f"http://closerdesk.test/meet/{token}"
    values.update(overrides)
    if values["call_kind"] == "intent":
        values.update(scheduled_at=None, ends_at=None, duration_minutes=None)
    call = Call(**values)
    session.add(call)
    await session.commit()
    return call
