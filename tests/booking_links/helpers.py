"""Shared helpers for the booking-link tests (and the round-robin / calendar-link call tests):
request bodies, API shortcuts, and dates relative to now (the API refuses the past)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.kit.ids import ulid
from closerdesk.kit.time import isoformat_z, utcnow
from tests.envelopes import error, ok  # noqa: F401 - re-exported to the tests of this package
from tests.factories import Org, create_lead

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


# --- bodies --------------------------------------------------------------------------------------
def schedule(
    time_zone: str = "UTC",
    start: str = "09:00",
    end: str = "17:00",
    *,
    weekdays: Sequence[str] = WEEKDAYS,
    overrides: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A weekly schedule: the same local window on each of ``weekdays``."""
    return {
        "time_zone": time_zone,
        "weekly": [{"weekday": d, "start": start, "end": end} for d in weekdays],
        "overrides": list(overrides),
    }


def host(
    member_id: str,
    *,
    priority: str = "medium",
    weight: int = 100,
    sched: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "priority": priority,
        "weight": weight,
        "schedule": sched if sched is not None else schedule(),
    }


def unique_slug(prefix: str = "link") -> str:
    return f"{prefix}-{ulid()[-10:].lower()}"


def link_body(hosts: Sequence[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A round-robin link of 30-minute calls (override any field with ``extra``)."""
    body: dict[str, Any] = {
        "slug": unique_slug(),
        "title": "Strategy call",
        "duration_minutes": 30,
        "hosts": list(hosts),
    }
    body.update(extra)
    return body


# --- API shortcuts -------------------------------------------------------------------------------


async def create_link(
    client: httpx.AsyncClient, org: Org, hosts: Sequence[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    r = await client.post("/v1/booking-links", headers=org.headers, json=link_body(hosts, **extra))
    return ok(r, 201)


async def patch_link(
    client: httpx.AsyncClient, org: Org, link_id: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.patch(f"/v1/booking-links/{link_id}", headers=org.headers, json=body)


async def slots_response(
    client: httpx.AsyncClient,
    org: Org,
    link_id: str,
    start: datetime,
    end: datetime,
    time_zone: str | None = None,
) -> httpx.Response:
    params = {"start": iso(start), "end": iso(end)}
    if time_zone is not None:
        params["time_zone"] = time_zone
    return await client.get(
        f"/v1/booking-links/{link_id}/slots", headers=org.headers, params=params
    )


async def get_slots(
    client: httpx.AsyncClient,
    org: Org,
    link_id: str,
    start: datetime,
    end: datetime,
    time_zone: str | None = None,
) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = ok(
        await slots_response(client, org, link_id, start, end, time_zone)
    )
    return data


def starts(slots: Sequence[dict[str, Any]]) -> list[datetime]:
    return [parse(s["start"]) for s in slots]


async def add_busy_block(
    client: httpx.AsyncClient, org: Org, member_id: str, start: datetime, end: datetime
) -> None:
    r = await client.post(
        f"/v1/team/{member_id}/busy-blocks",
        headers=org.headers,
        json={"start": iso(start), "end": iso(end), "title": "Time off"},
    )
    ok(r, 201)


# --- time ----------------------------------------------------------------------------------------
def iso(value: datetime) -> str:
    return isoformat_z(value)


def parse(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.tzinfo is not None, text
    return value


def day(days_ahead: int, hour: int = 0, minute: int = 0) -> datetime:
    """UTC midnight ``days_ahead`` days from today, plus ``hour:minute``."""
    today = utcnow().date()
    return datetime.combine(today + timedelta(days=days_ahead), time(hour, minute), UTC)


def next_transitions(zone_name: str) -> tuple[date, date]:
    """The next two local dates (after today + 2 days) on which ``zone_name`` changes its UTC
    offset: one spring-forward and one fall-back, in the order they come."""
    zone = ZoneInfo(zone_name)
    found: list[date] = []
    current = utcnow().date() + timedelta(days=2)
    while len(found) < 2:
        noon_before = datetime.combine(current, time(12), zone).utcoffset()
        noon_after = datetime.combine(current + timedelta(days=1), time(12), zone).utcoffset()
        if noon_before != noon_after:
            found.append(current + timedelta(days=1))
        current += timedelta(days=1)
        assert current < utcnow().date() + timedelta(days=800), "zone without DST"
    return found[0], found[1]


def spring_and_fall(zone_name: str) -> tuple[date, date]:
    """(next spring-forward date, next fall-back date) of ``zone_name``."""
    zone = ZoneInfo(zone_name)
    first, second = next_transitions(zone_name)

    def springs(d: date) -> bool:
        before = datetime.combine(d - timedelta(days=1), time(12), zone).utcoffset()
        after = datetime.combine(d, time(12), zone).utcoffset()
        assert before is not None
        assert after is not None
        return after > before

    return (first, second) if springs(first) else (second, first)


async def book_through_link(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    link_id: str,
    start: datetime,
    **extra: Any,
) -> httpx.Response:
    """``POST /v1/calls`` through the link for a fresh lead: round robin picks the closer unless
    ``extra`` names one (``closer_id``) or a ``reservation_id``."""
    lead = await create_lead(session, org)
    body = {"lead_id": lead.id, "booking_link_id": link_id, "scheduled_at": iso(start), **extra}
    return await client.post("/v1/calls", headers=org.headers, json=body)
