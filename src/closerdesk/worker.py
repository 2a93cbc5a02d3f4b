"""Background work: webhook deliveries, calendar clean-ups and the calendar busy mirror.

``closerdesk worker`` runs it standalone (any number of them against one PostgreSQL: every job
is claimed with a lease or ``FOR UPDATE SKIP LOCKED``); ``closerdesk serve`` runs one in
process. ``docs/calendars.md`` and ``docs/webhooks.md`` describe each job.
"""

from __future__ import annotations

import asyncio

import structlog

from closerdesk.calendars.cleanup import retry_due_cleanups
from closerdesk.calendars.mirror import SyncResult, sync_due
from closerdesk.calendars.push import renew_channels
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.providers import Providers
from closerdesk.webhooks.dispatcher import Dispatcher

log = structlog.get_logger(__name__)

CALENDAR_POLL_SECONDS = 15.0
"""How often the calendar worker looks for due clean-ups and due syncs."""


class CalendarWorker:
    """Retries orphaned-event clean-ups and keeps every external calendar's mirror fresh."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        providers: Providers,
        *,
        poll_interval: float = CALENDAR_POLL_SECONDS,
    ) -> None:
        self.database = database
        self.settings = settings
        self.providers = providers
        self.poll_interval = poll_interval

    async def run_once(self) -> tuple[int, list[SyncResult]]:
        """One round: due clean-ups, push channels to open or renew, then due syncs, each
        guarded on its own (a broken
        clean-up must not stop the mirrors). Returns (clean-ups resolved, syncs)."""
        resolved, synced = 0, []
        try:
            resolved = await retry_due_cleanups(self.database, self.providers)
        except Exception:
            log.exception("calendar.cleanup_round_failed")
        try:
            await renew_channels(self.database, self.providers, self.settings)
        except Exception:
            log.exception("calendar.push_round_failed")
        try:
            synced = await sync_due(self.database, self.providers, self.settings)
        except Exception:
            log.exception("calendar.sync_round_failed")
        return resolved, synced

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop`` is set; a failing round is logged and the next one runs."""
        log.info("calendar.worker_started", poll_seconds=self.poll_interval)
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("calendar.worker_round_failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.poll_interval)
            except TimeoutError:
                pass


async def run_background(
    stop: asyncio.Event, dispatcher: Dispatcher, calendars: CalendarWorker
) -> None:
    """Run the webhook dispatcher and the calendar worker until ``stop`` is set."""
    await asyncio.gather(dispatcher.run(stop), calendars.run(stop))
