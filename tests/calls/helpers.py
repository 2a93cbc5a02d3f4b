"""Small helpers shared by the Calls API tests: times, envelopes, API shortcuts, DB reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Select, select

from closerdesk.db import Database
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import (
    CalendarConnection,
    CalendarEvent,
    Call,
    CallEvent,
    ConferencingLink,
    Lead,
    TeamMember,
    WebhookEvent,
)
from tests.conftest import PUBLIC_BASE_URL
from tests.envelopes import error, ok
from tests.factories import Org

MEET_PREFIX = f"{PUBLIC_BASE_URL}/meet/"

SEED_004_FIELDS = frozenset(
    {
        "id",
        "call_kind",
        "lead_id",
        "closer_id",
        "setter_id",
        "booking_link_id",
        "product_id",
        "scheduled_at",
        "started_at",
        "ended_at",
        "duration_minutes",
        "status",
        "conferencing_link",
        "expected_deal_value",
        "linked_payment_id",
        "ai_summary",
        "action_items",
        "form_data",
        "notes",
        "recording_url",
        "has_recording",
        "has_analysis",
        "transcript_data",
        "guest_rsvp_status",
        "guest_rsvp_confirmed_at",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "referral",
        "created_at",
        "updated_at",
    }
)
SPEC_EXTRA_FIELDS = frozenset(
    {
        "closer_name",
        "closer_email",
        "time_zone",
        "calendar_event_id",
        "cancelled_at",
        "cancel_reason",
        "confirmed_at",
        "declined_at",
        "decline_reason",
        "reschedule_count",
        # docs/sales-floor.md, "Reason codes" and "Absence"
        "host_no_show",
        "reason_code",
        "loss_reason",
    }
)
REASSIGN_RESULT_FIELDS = frozenset(
    {
        "call_id",
        "conferencing_link",
        "new_closer_id",
        "new_closer_name",
        "new_event_id",
        "old_event_orphaned",
        "previous_closer_id",
        "previous_closer_name",
    }
)


# --- time ----------------------------------------------------------------------------------------
def future(*, days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """An aware UTC time from now, whole seconds (so it round-trips exactly through the API)."""
    return (utcnow() + timedelta(days=days, hours=hours, minutes=minutes)).replace(microsecond=0)


def past(*, days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    return future(days=-days, hours=-hours, minutes=-minutes)


def iso(value: datetime) -> str:
    return isoformat_z(value)


def meet_path(link: str) -> str:
    """``/meet/{token}`` for a conferencing link handed out by the built-in provider."""
    assert link.startswith(MEET_PREFIX), link
    return link[len(PUBLIC_BASE_URL) :]


async def assert_link_live(client: httpx.AsyncClient, link: str) -> str:
    """The link redirects (302) to a room; returns the room URL."""
    r = await client.get(meet_path(link))
    assert r.status_code == 302, r.text
    room = r.headers["location"]
    assert room.startswith("https://meet.example.test/"), room
    return room


async def assert_link_revoked(client: httpx.AsyncClient, link: str) -> None:
    error(await client.get(meet_path(link)), 410, "LINK_REVOKED")


# --- API shortcuts -------------------------------------------------------------------------------
async def book(
    client: httpx.AsyncClient,
    org: Org,
    *,
    lead: Lead,
    closer: TeamMember,
    start: datetime,
    minutes: int = 45,
    **extra: Any,
) -> dict[str, Any]:
    """Book a call through ``POST /v1/calls``; returns the call object."""
    body = {
        "lead_id": lead.id,
        "scheduled_at": iso(start),
        "duration_minutes": minutes,
        "closer_id": closer.id,
        **extra,
    }
    return ok(await client.post("/v1/calls", headers=org.headers, json=body), 201)


async def get_call(client: httpx.AsyncClient, org: Org, call_id: str) -> dict[str, Any]:
    return ok(await client.get(f"/v1/calls/{call_id}", headers=org.headers))


async def history(client: httpx.AsyncClient, org: Org, call_id: str) -> list[dict[str, Any]]:
    return ok(await client.get(f"/v1/calls/{call_id}/history", headers=org.headers))


async def add_busy_block(
    client: httpx.AsyncClient, org: Org, member_id: str, start: datetime, end: datetime
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/team/{member_id}/busy-blocks",
        headers=org.headers,
        json={"start": iso(start), "end": iso(end), "title": "Dentist"},
    )
    return ok(r, 201)


async def create_product(
    client: httpx.AsyncClient, org: Org, *, active: bool = True
) -> dict[str, Any]:
    r = await client.post(
        "/v1/products",
        headers=org.headers,
        json={"name": "Coaching", "price": 500000, "currency": "USD", "is_active": active},
    )
    return ok(r, 201)


# --- database reads (a fresh read session each time: sees what the API committed) -----------------
async def fetch_all(database: Database, stmt: Select[Any]) -> Sequence[Any]:
    async with database.reader() as s:
        return (await s.scalars(stmt)).all()


async def fetch_one(database: Database, stmt: Select[Any]) -> Any:
    async with database.reader() as s:
        return await s.scalar(stmt)


async def call_row(database: Database, call_id: str) -> Call:
    row = await fetch_one(database, select(Call).where(Call.id == call_id))
    assert row is not None
    return row


async def event_row(database: Database, event_id: str) -> CalendarEvent:
    row = await fetch_one(database, select(CalendarEvent).where(CalendarEvent.id == event_id))
    assert row is not None, event_id
    return row


async def events_of_call(database: Database, call_id: str) -> Sequence[CalendarEvent]:
    return await fetch_all(
        database,
        select(CalendarEvent)
        .where(CalendarEvent.call_id == call_id)
        .order_by(CalendarEvent.created_at, CalendarEvent.id),
    )


async def connection_of(database: Database, member_id: str) -> CalendarConnection:
    row = await fetch_one(
        database, select(CalendarConnection).where(CalendarConnection.member_id == member_id)
    )
    assert row is not None
    return row


async def webhooks(database: Database, org: Org, event_type: str) -> Sequence[WebhookEvent]:
    return await fetch_all(
        database,
        select(WebhookEvent)
        .where(WebhookEvent.organization_id == org.id, WebhookEvent.type == event_type)
        .order_by(WebhookEvent.created_at, WebhookEvent.id),
    )


async def webhooks_for_call(
    database: Database, org: Org, event_type: str, call_id: str
) -> list[WebhookEvent]:
    rows = await webhooks(database, org, event_type)
    return [r for r in rows if _payload_call_id(r.payload) == call_id]


def _payload_call_id(payload: dict[str, Any]) -> str | None:
    data = payload.get("data", {})
    if "call_id" in data:
        return data["call_id"]
    call = data.get("call") or {}
    return call.get("id")


async def call_events(database: Database, call_id: str) -> Sequence[CallEvent]:
    return await fetch_all(
        database, select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.id)
    )


async def links_of_call(database: Database, call_id: str) -> Sequence[ConferencingLink]:
    return await fetch_all(
        database, select(ConferencingLink).where(ConferencingLink.call_id == call_id)
    )


async def create_booking_link(database: Database, org: Org, link_id: str) -> str:
    """A bare booking link row (calls reference one by foreign key)."""
    from closerdesk.models import BookingLink

    async with database.writer() as s:
        s.add(
            BookingLink(
                id=link_id,
                organization_id=org.id,
                slug=link_id.replace("_", "-"),
                title="Strategy call",
                duration_minutes=45,
            )
        )
        await s.commit()
    return link_id
