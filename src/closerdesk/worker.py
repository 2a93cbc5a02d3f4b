"""Background work: webhook deliveries, calendar clean-ups, the calendar busy mirror and
retention (pruning old deliveries and expired idempotency keys).

``closerdesk worker`` runs it standalone (any number of them against one PostgreSQL: every job
is claimed with a lease or ``FOR UPDATE SKIP LOCKED``; pruning deletes in short batches);
``closerdesk serve`` runs one in process. ``docs/calendars.md``, ``docs/webhooks.md`` and
``docs/idempotency.md`` ("Retention") describe each job.
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
from closerdesk.retention import prune
from closerdesk.webhooks.dispatcher import Dispatcher

log = structlog.get_logger(__name__)

CALENDAR_POLL_SECONDS = 15.0
"""How often the calendar worker looks for due clean-ups and due syncs."""
RETENTION_SECONDS = 600.0
"""How often the retention worker prunes."""


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


class RetentionWorker:
    """Prunes delivered webhook deliveries, their attempts and expired idempotency keys
    (``closerdesk.retention``) every ``interval`` seconds."""

    def __init__(
        self, database: Database, settings: Settings, *, interval: float = RETENTION_SECONDS
    ) -> None:
        self.database = database
        self.settings = settings
        self.interval = interval

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop`` is set; a failing round is logged and the next one runs."""
        while not stop.is_set():
            try:
                pruned = await prune(self.database, self.settings)
                if pruned.deliveries or pruned.idempotency_keys or pruned.reservations:
                    log.info(
                        "retention.pruned",
                        deliveries=pruned.deliveries,
                        attempts=pruned.attempts,
                        idempotency_keys=pruned.idempotency_keys,
                        reservations=pruned.reservations,
                    )
            except Exception:
                log.exception("retention.round_failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                pass


async def run_background(
    stop: asyncio.Event,
    dispatcher: Dispatcher,
    calendars: CalendarWorker,
    retention: RetentionWorker | None = None,
) -> None:
    """Run the webhook dispatcher, the calendar worker and retention until ``stop`` is set
    (``retention`` defaults to one on the calendar worker's database and settings)."""
    retention = retention or RetentionWorker(calendars.database, calendars.settings)
    await asyncio.gather(dispatcher.run(stop), calendars.run(stop), retention.run(stop))
