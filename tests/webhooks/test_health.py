"""Webhook health (docs/webhooks.md, "Webhook health"): ``failing_since`` and
``disabled_reason`` on the subscription, ``webhook.failing`` once a run of failures has lasted an
hour, ``webhook.disabled`` when closerdesk disables one; both only to the organization's OTHER
subscriptions that ask for them (by name or ``"*"``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from closerdesk.webhooks.events import EventType
from closerdesk.webhooks.payloads import EVENT_MODELS
from tests.webhooks.helpers import Clock, Hooks, subscription_row
from tests.webhooks.receiver import Reply
from tests.webhooks.test_delivery import record


def health_events(hooks: Hooks, name: str) -> list[dict[str, Any]]:
    return [p for p in hooks.payloads(name) if p["event"].startswith("webhook.")]


async def test_an_hour_of_failures_is_announced_once_to_the_others(hooks: Hooks) -> None:
    broken = await hooks.subscribe(event_types=["lead.created", "webhook.failing"])
    watcher = await hooks.subscribe(event_types=["webhook.failing"])
    everything = await hooks.subscribe(event_types=["*"])
    deaf = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(broken["name"], Reply(500, body="down"))
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    row = await subscription_row(hooks.database, broken["id"])
    started = row.failing_since
    assert started is not None
    shown = await hooks.get(broken["id"])
    assert shown["failing_since"] is not None
    assert shown["disabled_reason"] is None
    assert health_events(hooks, watcher["name"]) == []  # not an hour yet

    # retries at ~5 s and ~5 min, then a new event 50 min in: still under an hour
    for _ in range(2):
        clock.advance(timedelta(minutes=6))
        await dispatcher.drain()
    clock.move_to(started + timedelta(minutes=50))
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    assert health_events(hooks, watcher["name"]) == []

    clock.move_to(started + timedelta(minutes=61))
    await record(hooks.database, hooks.org, 2)
    await dispatcher.drain()
    for name in (watcher["name"], everything["name"]):
        [event] = health_events(hooks, name)
        assert event["event"] == "webhook.failing"
        assert event["data"]["webhook"]["id"] == broken["id"]
        assert event["data"]["webhook"]["failing_since"] == event["data"]["failing_since"]
        assert event["data"]["last_error"] == "HTTP 500"
        assert "secret" not in event["data"]["webhook"]
        EVENT_MODELS[EventType.webhook_failing].model_validate(event)
    assert health_events(hooks, deaf["name"]) == []
    assert health_events(hooks, broken["name"]) == []  # never told about itself

    # more failures in the same run: not announced again
    clock.advance(timedelta(hours=3))
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    assert len(health_events(hooks, watcher["name"])) == 1


async def test_a_success_ends_the_run_and_a_new_run_is_announced_again(hooks: Hooks) -> None:
    broken = await hooks.subscribe(event_types=["lead.created"])
    watcher = await hooks.subscribe(event_types=["webhook.failing"])
    hooks.receiver.always(broken["name"], Reply(503))
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)
    for _ in range(2):
        await record(hooks.database, hooks.org)
        await dispatcher.drain()
        clock.advance(timedelta(minutes=65))
        await record(hooks.database, hooks.org)
        await dispatcher.drain()
        hooks.receiver.always(broken["name"], Reply(200))
        clock.advance(timedelta(hours=12))  # every retry due, and succeeding
        await dispatcher.drain()
        assert (await subscription_row(hooks.database, broken["id"])).failing_since is None
        hooks.receiver.always(broken["name"], Reply(503))
    assert [e["event"] for e in health_events(hooks, watcher["name"])] == ["webhook.failing"] * 2


async def test_a_410_is_announced_as_webhook_disabled(hooks: Hooks) -> None:
    gone = await hooks.subscribe(event_types=["*"])
    watcher = await hooks.subscribe(event_types=["webhook.disabled"])
    failing_only = await hooks.subscribe(event_types=["webhook.failing"])
    hooks.receiver.always(gone["name"], Reply(410))
    dispatcher = hooks.dispatcher()
    await record(hooks.database, hooks.org)
    await dispatcher.drain()
    shown = await hooks.get(gone["id"])
    assert shown["is_active"] is False
    assert shown["disabled_reason"] == "the target answered 410 Gone"
    [event] = health_events(hooks, watcher["name"])
    assert event["event"] == "webhook.disabled"
    assert event["data"]["reason"] == "the target answered 410 Gone"
    assert event["data"]["webhook"]["id"] == gone["id"]
    assert event["data"]["webhook"]["is_active"] is False
    EVENT_MODELS[EventType.webhook_disabled].model_validate(event)
    assert health_events(hooks, failing_only["name"]) == []
    # the disabled one is not sent its own news (not even as a failed, unsent delivery)
    kinds = {d["event_type"] for d in await hooks.deliveries(gone["id"])}
    assert kinds == {"lead.created"}


async def test_disabling_through_the_api_is_not_announced(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    watcher = await hooks.subscribe(event_types=["*"])
    r = await hooks.client.patch(
        f"/v1/webhooks/{sub['id']}", headers=hooks.org.headers, json={"is_active": False}
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["disabled_reason"] == "disabled through the API"
    await hooks.dispatcher().drain()
    assert health_events(hooks, watcher["name"]) == []
