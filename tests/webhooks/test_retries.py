"""Retries (SPEC §6) with an injected clock: the schedule, Retry-After, 410, five days."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import pytest

from closerdesk.webhooks.dispatcher import (
    MAX_RETRY_AFTER,
    RETRY_SCHEDULE,
    Dispatcher,
    parse_retry_after,
)
from tests.webhooks.helpers import Clock, Hooks, attempt_rows, delivery_rows, subscription_row
from tests.webhooks.receiver import Reply
from tests.webhooks.test_delivery import record

NOMINAL = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
]


async def step(dispatcher: Dispatcher, clock: Clock, hooks: Hooks, sub_id: str) -> None:
    """Move the clock to the delivery's next attempt and make it."""
    [row] = await delivery_rows(hooks.database, sub_id)
    clock.move_to(row.next_attempt_at)
    assert await dispatcher.drain() == 1


def test_the_schedule_is_the_specified_one() -> None:
    assert list(RETRY_SCHEDULE) == NOMINAL


async def test_retry_schedule_then_failed(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(500, body="down"))
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)
    [event_id] = await record(hooks.database, hooks.org)

    assert await dispatcher.drain() == 1
    delays = []
    for nominal in NOMINAL:
        [row] = await delivery_rows(hooks.database, sub["id"])
        assert row.status == "pending"
        last = (await attempt_rows(hooks.database, row.id))[-1]
        delay = row.next_attempt_at - last.attempted_at
        assert nominal * 0.9 - timedelta(seconds=0.5) <= delay <= nominal * 1.1, (nominal, delay)
        delays.append(delay)
        # not due a moment before
        clock.move_to(row.next_attempt_at - timedelta(seconds=1))
        assert await dispatcher.drain() == 0
        await step(dispatcher, clock, hooks, sub["id"])

    [row] = await delivery_rows(hooks.database, sub["id"])
    assert row.status == "failed"
    assert row.attempt_count == 8
    assert row.last_status_code == 500
    assert row.last_error == "HTTP 500; gave up after 8 attempts"
    assert any(abs(d / n - 1) > 0.001 for d, n in zip(delays, NOMINAL, strict=True)), "jitter"
    clock.advance(timedelta(days=2))
    assert await dispatcher.drain() == 0

    requests = hooks.receiver.requests(sub["name"])
    assert len(requests) == 8
    assert {r.webhook_id for r in requests} == {event_id}  # the same webhook-id every time
    assert len({r.body for r in requests}) == 1
    attempts = await attempt_rows(hooks.database, row.id)
    assert [a.status_code for a in attempts] == [500] * 8
    assert all(a.response_excerpt == "down" for a in attempts)
    assert (await subscription_row(hooks.database, sub["id"])).is_active is True


async def test_a_success_ends_the_retries(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.script(sub["name"], [Reply(500), Reply(502), Reply(200)])
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    await step(dispatcher, clock, hooks, sub["id"])
    await step(dispatcher, clock, hooks, sub["id"])
    [row] = await delivery_rows(hooks.database, sub["id"])
    assert row.status == "succeeded"
    assert row.attempt_count == 3
    sub_row = await subscription_row(hooks.database, sub["id"])
    assert sub_row.failing_since is None


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_is_honoured(hooks: Hooks, status: int) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.script(sub["name"], [Reply(status, headers={"retry-after": "120"})])
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    [row] = await delivery_rows(hooks.database, sub["id"])
    [attempt] = await attempt_rows(hooks.database, row.id)
    delay = row.next_attempt_at - attempt.attempted_at
    assert timedelta(seconds=120) <= delay < timedelta(seconds=121)
    clock.advance(timedelta(seconds=100))
    assert await dispatcher.drain() == 0
    clock.advance(timedelta(seconds=21))
    assert await dispatcher.drain() == 1
    assert (await delivery_rows(hooks.database, sub["id"]))[0].status == "succeeded"


async def test_a_short_retry_after_never_shortens_the_schedule(hooks: Hooks) -> None:
    """``Retry-After: 1`` after the 2nd attempt still waits the scheduled ~5 min: a target
    cannot burn the whole schedule in seconds."""
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.script(
        sub["name"], [Reply(500), Reply(503, headers={"retry-after": "1"}), Reply(200)]
    )
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    clock.advance(timedelta(seconds=6))
    assert await dispatcher.drain() == 1
    [row] = await delivery_rows(hooks.database, sub["id"])
    second = (await attempt_rows(hooks.database, row.id))[-1]
    assert second.status_code == 503
    assert row.next_attempt_at - second.attempted_at >= timedelta(minutes=4, seconds=30)


async def test_retry_after_as_an_http_date_is_honoured(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    clock = Clock()
    when = (clock() + timedelta(minutes=42)).replace(microsecond=0)
    header = email.utils.format_datetime(when, usegmt=True)
    hooks.receiver.script(sub["name"], [Reply(503, headers={"retry-after": header})])
    dispatcher = hooks.dispatcher(clock=clock)
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    [row] = await delivery_rows(hooks.database, sub["id"])
    assert abs(row.next_attempt_at - when) < timedelta(seconds=1)


async def test_retry_after_is_ignored_on_other_statuses(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.script(sub["name"], [Reply(500, headers={"retry-after": "3600"})])
    dispatcher = hooks.dispatcher()
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    [row] = await delivery_rows(hooks.database, sub["id"])
    [attempt] = await attempt_rows(hooks.database, row.id)
    assert row.next_attempt_at - attempt.attempted_at < timedelta(seconds=6)


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 20, 15, 0, tzinfo=UTC)
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after(" 30 ", now) == timedelta(seconds=30)
    assert parse_retry_after("0", now) == timedelta(seconds=1)
    assert parse_retry_after("99999999", now) == MAX_RETRY_AFTER
    assert parse_retry_after("Tue, 20 Jan 2026 15:10:00 GMT", now) == timedelta(minutes=10)
    assert parse_retry_after("Tue, 20 Jan 2026 14:00:00 GMT", now) == timedelta(seconds=1)


# --- disabling -----------------------------------------------------------------------------------
async def test_410_disables_the_subscription_with_a_reason(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    other = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.script(sub["name"], [Reply(500)] * 3 + [Reply(410, body="gone")])
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock, batch_size=1)
    await record(hooks.database, hooks.org, 3)
    await dispatcher.drain()  # sub: three 500s, each retried in ~5 s; other: delivered
    clock.advance(timedelta(seconds=6))
    assert await dispatcher.run_once() == 1  # the first retry answers 410
    fetched = await hooks.get(sub["id"])
    assert fetched["is_active"] is False
    assert fetched["disabled_reason"] == "the target answered 410 Gone"
    assert fetched["disabled_at"] is not None
    deliveries = await hooks.deliveries(sub["id"])
    assert [d["status"] for d in deliveries] == ["failed"] * 3
    gone = [d for d in deliveries if d["last_status_code"] == 410]
    assert len(gone) == 1
    assert [a["status_code"] for a in gone[0]["attempts"]] == [500, 410]
    assert gone[0]["attempts"][1]["response_excerpt"] == "gone"
    for d in deliveries:
        if d is not gone[0]:  # pending at the time: failed, not sent again
            assert len(d["attempts"]) == 1
            assert d["last_error"].startswith("not sent: the subscription is disabled")
            assert "410 Gone" in d["last_error"]
    clock.advance(timedelta(days=2))
    await dispatcher.drain()
    assert len(hooks.receiver.requests(sub["name"])) == 4
    assert len(hooks.receiver.requests(other["name"])) == 3
    assert (await hooks.get(other["id"]))["is_active"] is True


async def test_a_failure_after_a_quiet_week_starts_a_new_run(hooks: Hooks) -> None:
    """One event whose attempts all failed, then nothing for 6 days, then one 503: that is not
    5 days of continuous failure, so the subscription stays active."""
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(500))
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)
    await record(hooks.database, hooks.org)
    for _ in range(24):  # walk through the whole retry schedule (~27.6 h), 3 h a step
        await dispatcher.drain()
        clock.advance(timedelta(hours=3))
    [first] = await delivery_rows(hooks.database, sub["id"])
    assert first.status == "failed"
    clock.advance(timedelta(days=6))
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    row = await subscription_row(hooks.database, sub["id"])
    assert row.is_active is True
    assert row.failing_since is not None
    assert clock() - row.failing_since < timedelta(minutes=1)


async def test_redeliver_and_recover_refuse_a_disabled_subscription(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(410))
    await record(hooks.database, hooks.org)
    await hooks.dispatcher().drain()
    [delivery] = await hooks.deliveries(sub["id"])
    r = await hooks.client.post(
        f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=hooks.org.headers
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "WEBHOOK_DISABLED"
    r = await hooks.client.post(
        f"/v1/webhooks/{sub['id']}/recover",
        headers=hooks.org.headers,
        params={"since": "2020-01-01T00:00:00Z"},
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "WEBHOOK_DISABLED"


async def test_five_days_of_continuous_failure_disable(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(500))
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    started = (await subscription_row(hooks.database, sub["id"])).failing_since
    assert started is not None
    # a new event every 12 h, every due retry made: still failing, still active, until 5 days
    for _ in range(9):
        clock.advance(timedelta(hours=12))
        await record(hooks.database, hooks.org)
        await dispatcher.drain()
        row = await subscription_row(hooks.database, sub["id"])
        assert row.is_active is True
        assert row.failing_since == started
    clock.move_to(started + timedelta(days=5, minutes=1))
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    row = await subscription_row(hooks.database, sub["id"])
    assert row.is_active is False
    assert row.disabled_reason == "every delivery failed for 5 days"
    deliveries = await delivery_rows(hooks.database, sub["id"])
    assert {d.status for d in deliveries} == {"failed"}
    sent = len(hooks.receiver.requests(sub["name"]))
    clock.advance(timedelta(days=3))
    await dispatcher.drain()
    assert len(hooks.receiver.requests(sub["name"])) == sent


async def test_a_success_resets_the_five_days(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)

    async def half_days(count: int) -> None:
        for _ in range(count):
            await record(hooks.database, hooks.org)
            await dispatcher.drain()
            clock.advance(timedelta(hours=12))

    hooks.receiver.always(sub["name"], Reply(500))
    await half_days(8)  # four days of failures
    assert (await subscription_row(hooks.database, sub["id"])).failing_since is not None
    hooks.receiver.always(sub["name"], Reply(200))
    await half_days(1)
    assert (await subscription_row(hooks.database, sub["id"])).failing_since is None
    hooks.receiver.always(sub["name"], Reply(500))
    await half_days(8)  # four more days of failures: 8.5 days failing, but not continuously
    row = await subscription_row(hooks.database, sub["id"])
    assert row.is_active is True
    assert row.failing_since is not None
