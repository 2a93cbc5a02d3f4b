"""The background worker: calendar clean-ups and syncs run beside the webhook dispatcher."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import CalendarCleanup, CalendarEvent
from closerdesk.providers import Providers
from closerdesk.webhooks.dispatcher import Dispatcher
from closerdesk.worker import CalendarWorker, run_background
from tests.factories import Org, create_call, create_lead, create_member


async def test_the_worker_retries_due_calendar_cleanups(
    session: AsyncSession, org: Org, database: Database, settings: Settings, providers: Providers
) -> None:
    """An orphaned event (``old_event_orphaned``) is removed by the running worker."""
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    due = CalendarCleanup(
        id=new_id("clean"),
        organization_id=org.id,
        connection_id=call.calendar_grant_id,
        provider="builtin",
        event_id=call.calendar_event_id,
        call_id=call.id,
        attempts=1,
        next_attempt_at=utcnow() - timedelta(seconds=1),
    )
    later = CalendarCleanup(
        id=new_id("clean"),
        organization_id=org.id,
        connection_id=call.calendar_grant_id,
        provider="builtin",
        event_id="evt_not_due_yet",
        call_id=call.id,
        attempts=1,
        next_attempt_at=utcnow() + timedelta(hours=1),
    )
    session.add_all([due, later])
    await session.commit()
    dispatcher = Dispatcher(database, settings, poll_interval=0.02)
    worker = CalendarWorker(database, settings, providers, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(run_background(stop, dispatcher, worker))
    try:
        for _ in range(250):
            async with database.reader() as s:
                row = await s.get(CalendarCleanup, due.id)
            if row is not None and row.resolved_at is not None:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        await dispatcher.aclose()
    async with database.reader() as s:
        row = await s.get(CalendarCleanup, due.id)
        untouched = await s.get(CalendarCleanup, later.id)
        event = await s.get(CalendarEvent, call.calendar_event_id)
    assert row is not None
    assert row.resolved_at is not None
    assert row.attempts == 2
    assert untouched is not None
    assert untouched.resolved_at is None
    assert untouched.attempts == 1
    assert event is not None
    assert event.status == "cancelled"
