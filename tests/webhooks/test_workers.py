"""``closerdesk worker`` processes: SIGKILL mid-batch and restart loses nothing; three workers
on one PostgreSQL share 2,000 events without losing or (without crashes) repeating any."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.models import WebhookDelivery
from tests.webhooks.helpers import Hooks
from tests.webhooks.receiver import Reply
from tests.webhooks.test_delivery import record

CLOSERDESK = Path(sys.executable).with_name("closerdesk")


class Workers:
    """Starts ``closerdesk worker`` subprocesses against the test database."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, lease_seconds: float | None = None) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "CLOSERDESK_DATABASE_URL": self.settings.database_url,
            "CLOSERDESK_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
            "CLOSERDESK_LOG_LEVEL": "WARNING",
            "CLOSERDESK_LOG_JSON": "false",
        }
        if lease_seconds is not None:
            env["CLOSERDESK_WEBHOOK_LEASE_SECONDS"] = str(lease_seconds)
        log = (self.logs / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [str(CLOSERDESK), "worker", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
        """SIGTERM: the worker finishes what it has in flight and exits."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def output(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.logs.glob("worker-*.log"))
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(private_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(private_settings, tmp_path)
    yield w
    w.close()


async def count_status(database: Database, status: str) -> int:
    async with database.reader() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.status == status)
            )
            or 0
        )


async def wait_all_succeeded(
    database: Database, total: int, workers: Workers, seconds: float
) -> float:
    started = time.monotonic()
    while (done := await count_status(database, "succeeded")) < total:
        if time.monotonic() - started > seconds:
            raise AssertionError(f"{done}/{total} delivered\n{workers.output()}")
        for proc in workers.procs:
            if proc.poll() not in (None, -signal.SIGKILL):
                raise AssertionError(f"a worker exited ({proc.returncode})\n{workers.output()}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_worker_killed_mid_batch_loses_nothing(
    hooks: Hooks, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    total = 150
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(200, delay=0.25))  # slow: batches stay in flight
    event_ids = await record(hooks.database, hooks.org, total)
    options = ("--concurrency", "10", "--batch-size", "20")

    first = workers.start(*options, lease_seconds=3)
    await hooks.receiver.wait_async(lambda seen: len(seen) >= 40, seconds=60)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    received_before = {r.webhook_id for r in hooks.receiver.requests(sub["name"])}
    async with hooks.database.reader() as s:
        unrecorded = (
            set(
                await s.scalars(
                    select(WebhookDelivery.event_id).where(WebhookDelivery.status == "pending")
                )
            )
            & received_before
        )
    # killed mid-batch: some requests reached the receiver but their results were never written
    assert unrecorded, "the worker was not killed mid-batch"
    assert await count_status(hooks.database, "succeeded") < total

    second = workers.start(*options, lease_seconds=3)
    elapsed = await wait_all_succeeded(hooks.database, total, workers, seconds=90)
    assert workers.stop(second) == 0

    received = Counter(r.webhook_id for r in hooks.receiver.requests(sub["name"]))
    lost = set(event_ids) - set(received)
    duplicates = sum(received.values()) - len(received)
    with capsys.disabled():
        print(  # noqa: T201
            f"\n[crash test, {hooks.database.dialect}] events={total} "
            f"delivered={len(received)} duplicates={duplicates} lost={len(lost)} "
            f"in flight at SIGKILL={len(unrecorded)} restart→done={elapsed:.1f}s"
        )
    assert not lost
    assert set(received) == set(event_ids)
    assert duplicates <= len(unrecorded) + 20  # only what was in flight or awaiting its record
    assert await count_status(hooks.database, "pending") == 0


@pytest.mark.skipif(
    not os.environ.get("CLOSERDESK_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="several dispatchers share work on PostgreSQL (FOR UPDATE SKIP LOCKED)",
)
async def test_three_workers_share_2000_events(
    hooks: Hooks, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    total = 2000
    sub = await hooks.subscribe(event_types=["lead.created"])
    event_ids = await record(hooks.database, hooks.org, total)
    procs = [workers.start("--concurrency", "50", "--batch-size", "100") for _ in range(3)]
    elapsed = await wait_all_succeeded(hooks.database, total, workers, seconds=90)
    assert [workers.stop(p) for p in procs] == [0, 0, 0]

    received = Counter(r.webhook_id for r in hooks.receiver.requests(sub["name"]))
    lost = set(event_ids) - set(received)
    duplicates = sum(received.values()) - len(received)
    with capsys.disabled():
        print(  # noqa: T201
            f"\n[three workers, {hooks.database.dialect}] events={total} "
            f"delivered={len(received)} duplicates={duplicates} lost={len(lost)} "
            f"in {elapsed:.1f}s ({total / elapsed:.0f}/s)"
        )
    assert not lost
    assert duplicates == 0
    assert await count_status(hooks.database, "pending") == 0
