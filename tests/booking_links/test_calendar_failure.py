"""A host's calendar that cannot answer "when are you busy?" live: round-robin bookings and
auto-reassign answer 502 ``CALENDAR_PROVIDER_ERROR`` and change nothing (a call placed on a
guess could double-book the host), while slots are still served from what closerdesk keeps
(they never ask a provider: docs/calendars.md, the busy mirror)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.provider import CalendarAccount, CalendarError, CalendarProvider
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.models import Call, WebhookEvent
from closerdesk.providers import Providers, default_providers
from tests.booking_links.helpers import create_link, day, error, host, iso, ok, slots_response
from tests.factories import Org, create_call, create_lead, create_member

SECRET = "calendar-down-5d1e"


class _Switch:
    def __init__(self) -> None:
        self.failing_members: set[str] = set()


class _BusyFails:
    """The built-in calendar behaving as an external one (not in the transaction, so it is
    asked live before a call is placed), except ``busy`` raises for the switched members."""

    in_transaction = False

    def __init__(self, inner: CalendarProvider, switch: _Switch) -> None:
        self.inner, self.switch = inner, switch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def busy(self, account: CalendarAccount, start: Any, end: Any) -> Any:
        if account.member_id in self.switch.failing_members:
            raise CalendarError(f"{SECRET}: busy")
        return await self.inner.busy(account, start, end)


@pytest.fixture
def switch() -> _Switch:
    return _Switch()


@pytest.fixture
def providers(settings: Settings, switch: _Switch) -> Providers:
    """Overrides conftest's: built-in providers, with a switchable ``busy``."""
    real = default_providers(settings)

    def calendars(session: AsyncSession, name: str) -> CalendarProvider:
        wrapped: Any = _BusyFails(real.calendars(session, name), switch)
        provider: CalendarProvider = wrapped
        return provider

    return Providers(calendars=calendars, conferencing=real.conferencing, secrets=real.secrets)


async def _count(database: Database, model: Any) -> int:
    async with database.reader() as s:
        return len((await s.scalars(select(model))).all())


async def test_booking_and_auto_reassign_answer_502_and_slots_still_answer(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database, switch: _Switch
) -> None:
    a = await create_member(session, org)
    b = await create_member(session, org)
    link = await create_link(client, org, [host(a.id, priority="high"), host(b.id)])
    ok(await slots_response(client, org, link["id"], day(3), day(4)))
    lead = await create_lead(session, org)
    call = await create_call(
        session, org, lead=lead, closer=a, scheduled_at=day(3, 12), booking_link_id=link["id"]
    )
    calls_before = await _count(database, Call)
    hooks_before = await _count(database, WebhookEvent)

    offered = ok(await slots_response(client, org, link["id"], day(3), day(4)))
    switch.failing_members.update({a.id, b.id})
    assert ok(await slots_response(client, org, link["id"], day(3), day(4))) == offered

    # Round robin picks a (high priority), whose calendar cannot confirm the time live.
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={"lead_id": lead.id, "booking_link_id": link["id"], "scheduled_at": iso(day(3, 10))},
    )
    error(r, 502, "CALENDAR_PROVIDER_ERROR")

    # Auto-reassign picks b, the only other host, whose calendar cannot confirm either.
    r = await client.post(f"/v1/calls/{call.id}/auto-reassign", headers=org.headers, json={})
    error(r, 502, "CALENDAR_PROVIDER_ERROR")

    assert await _count(database, Call) == calls_before
    assert await _count(database, WebhookEvent) == hooks_before
    # The calendar answers again: all is well.
    switch.failing_members.clear()
    ok(await slots_response(client, org, link["id"], day(3), day(4)))
    moved = ok(
        await client.post(f"/v1/calls/{call.id}/auto-reassign", headers=org.headers, json={})
    )
    assert moved["new_closer_id"] == b.id
