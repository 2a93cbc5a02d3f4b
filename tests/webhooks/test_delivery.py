"""Delivery to a real receiver on 127.0.0.1: signatures, attempts, rotation, the test ping,
redeliver, recover, deleted and disabled subscriptions, receiver down then up, pinning."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from closerdesk.app import create_app
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.secrets import secret_box
from closerdesk.kit.time import utcnow
from closerdesk.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from closerdesk.webhooks import dispatcher as dispatcher_module
from closerdesk.webhooks.service import record_event
from closerdesk.webhooks.signing import new_secret
from closerdesk.webhooks.targets import ResolvedTarget
from tests.factories import Org
from tests.webhooks.helpers import (
    Clock,
    Hooks,
    attempt_rows,
    delivery_rows,
    error,
    lead_created,
    lead_updated,
    matching_secrets,
    ok,
    signature_count,
)
from tests.webhooks.receiver import Reply


async def new_lead(hooks: Hooks, **body: Any) -> dict[str, Any]:
    """``POST /v1/leads`` (fires ``lead.created``)."""
    body = {"email": f"{new_id('l').lower()}@example.com", "full_name": "Dana Lead", **body}
    r = await hooks.client.post("/v1/leads", headers=hooks.org.headers, json=body)
    return dict(ok(r, 201))


async def record(database: Database, org: Org, count: int = 1) -> list[str]:
    """``count`` ``lead.created`` events straight into the outbox; returns their ids."""
    ids = []
    async with database.writer() as s:
        for i in range(count):
            event = await record_event(s, org.id, lead_created(f"lead_{i}", f"{i}@x.test"))
            ids.append(event.id)
        await s.commit()
    return ids


# --- delivery and signature ----------------------------------------------------------------------
async def test_delivery_is_signed_and_recorded(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(200, body='{"received": true}'))
    lead = await new_lead(hooks, full_name="Zoë Ångström 日本", company="Ærø")
    assert await hooks.dispatcher().drain() == 1

    [request] = hooks.receiver.requests(sub["name"])
    [payload] = hooks.payloads(sub["name"])
    assert payload["event"] == "lead.created"
    assert payload["organization_id"] == hooks.org.id
    assert payload["data"]["lead"]["id"] == lead["id"]
    assert payload["data"]["lead"]["full_name"] == "Zoë Ångström 日本"
    assert "Zoë".encode() in request.body  # UTF-8 on the wire, signed as sent
    assert request.headers["user-agent"].startswith("closerdesk-webhooks/")
    assert signature_count(request.headers) == 1
    assert matching_secrets([sub["secret"]], request.headers, request.body) == [sub["secret"]]
    with pytest.raises(WebhookVerificationError):  # another secret does not verify it
        Webhook(new_secret()).verify(request.body, request.headers)
    tampered = request.body.replace(b"Dana", b"Evil") + b" "
    assert matching_secrets([sub["secret"]], request.headers, tampered) == []

    [delivery] = await hooks.deliveries(sub["id"])
    assert delivery["status"] == "succeeded"
    assert delivery["event_id"] == payload["id"]
    assert delivery["event_type"] == "lead.created"
    assert delivery["attempt_count"] == 1
    assert delivery["delivered_at"] is not None
    assert delivery["next_attempt_at"] is None
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["succeeded"] is True
    assert attempt["response_excerpt"] == '{"received": true}'
    assert attempt["latency_ms"] >= 0
    assert attempt["error"] is None


async def test_events_go_only_to_matching_subscriptions_of_the_organization(
    hooks: Hooks, other_org: Org
) -> None:
    leads = await hooks.subscribe(event_types=["lead.created", "lead.updated"])
    calls = await hooks.subscribe(event_types=["call.booked"])
    foreign_name = hooks.new_name()
    r = await hooks.client.post(
        "/v1/webhooks",
        headers=other_org.headers,
        json={"target_url": hooks.receiver.url(foreign_name), "event_types": ["lead.created"]},
    )
    hooks.secrets[foreign_name] = [ok(r, 201)["secret"]]
    lead = await new_lead(hooks)
    await hooks.dispatcher().drain()
    assert [p["data"]["lead"]["id"] for p in hooks.payloads(leads["name"])] == [lead["id"]]
    assert hooks.receiver.requests(calls["name"]) == []
    assert hooks.receiver.requests(foreign_name) == []


async def test_excerpt_is_capped_at_2_kb(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(200, body="x" * 10_000))
    await new_lead(hooks)
    await hooks.dispatcher().drain()
    [delivery] = await hooks.deliveries(sub["id"])
    assert delivery["attempts"][0]["response_excerpt"] == "x" * 2048


async def test_a_redirect_is_a_failure_and_is_not_followed(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    elsewhere = hooks.receiver.url("elsewhere")
    hooks.receiver.always(sub["name"], Reply(302, headers={"location": elsewhere}))
    await new_lead(hooks)
    await hooks.dispatcher().drain()
    assert hooks.receiver.requests("elsewhere") == []
    [delivery] = await hooks.deliveries(sub["id"])
    assert delivery["status"] == "pending"
    assert delivery["last_status_code"] == 302
    assert delivery["attempts"][0]["succeeded"] is False


async def test_a_slow_target_times_out(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "TIMEOUT_SECONDS", 0.3)
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(200, delay=2))
    await new_lead(hooks)
    await hooks.dispatcher().drain()
    [delivery] = await hooks.deliveries(sub["id"])
    assert delivery["status"] == "pending"
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] is None
    assert "timed out" in attempt["error"]
    assert 250 <= attempt["latency_ms"] < 2000


# --- rotation ------------------------------------------------------------------------------------
async def test_rotation_signs_with_both_secrets_for_24_hours(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    old = sub["secret"]
    new = await hooks.rotate(sub)
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock)

    await new_lead(hooks)
    await dispatcher.drain()
    [during] = hooks.receiver.requests(sub["name"])
    assert signature_count(during.headers) == 2
    assert matching_secrets([old, new], during.headers, during.body) == [old, new]
    for secret in (old, new):  # each secret alone verifies, with either verifier
        assert matching_secrets([secret], during.headers, during.body) == [secret]
        Webhook(secret).verify(during.body, during.headers)

    clock.advance(timedelta(hours=23, minutes=55))
    await new_lead(hooks)
    await dispatcher.drain()
    assert signature_count(hooks.receiver.requests(sub["name"])[-1].headers) == 2

    clock.advance(timedelta(minutes=10))  # the overlap is over
    await new_lead(hooks)
    await dispatcher.drain()
    after = hooks.receiver.requests(sub["name"])[-1]
    assert signature_count(after.headers) == 1
    assert matching_secrets([old, new], after.headers, after.body) == [new]
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


# --- POST /v1/webhooks/{id}/test ---------------------------------------------------------------
async def test_ping_answers_status_and_latency(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.script(sub["name"], [Reply(200, delay=0.2)])
    r = await hooks.client.post(f"/v1/webhooks/{sub['id']}/test", headers=hooks.org.headers)
    ping = ok(r)
    assert ping["success"] is True
    assert ping["status_code"] == 200
    assert 200 <= ping["latency_ms"] < 5000
    assert ping["error"] is None
    [payload] = hooks.payloads(sub["name"])
    assert payload["event"] == "ping"
    assert payload["data"] == {"webhook_id": sub["id"], "message": "closerdesk test ping"}
    [delivery] = await hooks.deliveries(sub["id"])
    assert delivery["id"] == ping["delivery_id"]
    assert delivery["event_type"] == "ping"
    assert delivery["status"] == "succeeded"


async def test_ping_reports_a_failing_target(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.script(sub["name"], [Reply(500, body="boom")])
    ping = ok(await hooks.client.post(f"/v1/webhooks/{sub['id']}/test", headers=hooks.org.headers))
    assert ping["success"] is False
    assert ping["status_code"] == 500
    hooks.receiver.stop()
    ping = ok(await hooks.client.post(f"/v1/webhooks/{sub['id']}/test", headers=hooks.org.headers))
    assert ping["success"] is False
    assert ping["status_code"] is None
    assert "Connect" in ping["error"]


async def test_ping_of_a_disabled_subscription_is_not_sent(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    await hooks.client.patch(
        f"/v1/webhooks/{sub['id']}", headers=hooks.org.headers, json={"is_active": False}
    )
    ping = ok(await hooks.client.post(f"/v1/webhooks/{sub['id']}/test", headers=hooks.org.headers))
    assert ping == {
        "delivery_id": None,
        "success": False,
        "status_code": None,
        "latency_ms": 0,
        "error": ping["error"],
    }
    assert "disabled" in ping["error"]
    assert hooks.receiver.requests() == []


async def test_ping_is_sent_once_while_a_dispatcher_runs(hooks: Hooks) -> None:
    """The ping is leased to the request: a running dispatcher does not send it as well."""
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(200, delay=0.3))
    dispatcher = hooks.dispatcher(poll_interval=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        for _ in range(3):
            r = await hooks.client.post(f"/v1/webhooks/{sub['id']}/test", headers=hooks.org.headers)
            assert ok(r)["success"] is True
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await task
    ids = [r.webhook_id for r in hooks.receiver.requests(sub["name"])]
    assert len(ids) == len(set(ids)) == 3


# --- redeliver and recover -----------------------------------------------------------------------
async def test_redeliver_sends_again_with_the_same_webhook_id(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    await new_lead(hooks)
    dispatcher = hooks.dispatcher()
    await dispatcher.drain()
    [delivery] = await hooks.deliveries(sub["id"])
    r = await hooks.client.post(
        f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=hooks.org.headers
    )
    queued = ok(r, 202)
    assert queued["id"] == delivery["id"]
    assert queued["status"] == "pending"
    await dispatcher.drain()
    first, second = hooks.receiver.requests(sub["name"])
    assert first.webhook_id == second.webhook_id == delivery["event_id"]
    assert first.body == second.body
    [again] = await hooks.deliveries(sub["id"])
    assert again["status"] == "succeeded"
    assert again["attempt_count"] == 1  # a fresh retry schedule; the history keeps both
    assert len(again["attempts"]) == 2


async def test_recover_requeues_failed_deliveries_since(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    name = sub["name"]
    dispatcher = hooks.dispatcher()
    hooks.receiver.always(name, Reply(410))
    await new_lead(hooks)  # before ``since``: stays failed
    await dispatcher.drain()
    assert (await hooks.get(sub["id"]))["is_active"] is False
    await asyncio.sleep(0.01)
    since = utcnow()
    await asyncio.sleep(0.01)
    later = [await new_lead(hooks) for _ in range(3)]  # while disabled: failed, not sent
    await dispatcher.drain()
    assert len(hooks.receiver.requests(name)) == 1
    deliveries = await hooks.deliveries(sub["id"])
    assert [d["status"] for d in deliveries] == ["failed"] * 4
    assert [len(d["attempts"]) for d in deliveries] == [1, 0, 0, 0]
    assert all("not sent" in d["last_error"] for d in deliveries[1:])

    hooks.receiver.always(name, Reply(200))
    ok(
        await hooks.client.patch(
            f"/v1/webhooks/{sub['id']}", headers=hooks.org.headers, json={"is_active": True}
        )
    )
    r = await hooks.client.post(
        f"/v1/webhooks/{sub['id']}/recover",
        headers=hooks.org.headers,
        params={"since": since.isoformat()},
    )
    assert ok(r, 202) == {"requeued": 3}
    await dispatcher.drain()
    delivered = [p["data"]["lead"]["id"] for p in hooks.payloads(name)[1:]]
    assert sorted(delivered) == sorted(lead["id"] for lead in later)
    statuses = [d["status"] for d in await hooks.deliveries(sub["id"])]
    assert statuses == ["failed", "succeeded", "succeeded", "succeeded"]
    filtered = await hooks.deliveries(sub["id"], status="failed")
    assert [d["id"] for d in filtered] == [deliveries[0]["id"]]


# --- deleted and disabled subscriptions ----------------------------------------------------------
async def test_deliveries_of_a_deleted_subscription_vanish(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    keep = await hooks.subscribe(event_types=["lead.created"])
    await record(hooks.database, hooks.org, 3)
    [first, *_] = await hooks.deliveries(sub["id"])
    ok(await hooks.client.delete(f"/v1/webhooks/{sub['id']}", headers=hooks.org.headers))
    assert await delivery_rows(hooks.database, sub["id"]) == []
    await hooks.dispatcher().drain()
    assert hooks.receiver.requests(sub["name"]) == []
    assert len(hooks.receiver.requests(keep["name"])) == 3
    error(
        await hooks.client.post(
            f"/v1/webhooks/deliveries/{first['id']}/redeliver", headers=hooks.org.headers
        ),
        404,
        "DELIVERY_NOT_FOUND",
    )


async def test_deleting_during_an_attempt_loses_nothing_else(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.always(sub["name"], Reply(200, delay=0.5))
    await record(hooks.database, hooks.org, 2)
    dispatcher = hooks.dispatcher()
    sending = asyncio.create_task(dispatcher.run_once())
    await hooks.receiver.wait_async(lambda seen: len(seen) == 2)
    ok(await hooks.client.delete(f"/v1/webhooks/{sub['id']}", headers=hooks.org.headers))
    assert await sending == 2
    async with hooks.database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(WebhookAttempt)) == 0


async def test_deliveries_of_a_disabled_subscription_fail_without_being_sent(
    hooks: Hooks,
) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    await record(hooks.database, hooks.org, 2)
    ok(
        await hooks.client.patch(
            f"/v1/webhooks/{sub['id']}", headers=hooks.org.headers, json={"is_active": False}
        )
    )
    await record(hooks.database, hooks.org, 1)  # while disabled
    await hooks.dispatcher().drain()
    assert hooks.receiver.requests() == []
    deliveries = await hooks.deliveries(sub["id"])
    assert [d["status"] for d in deliveries] == ["failed"] * 3
    for d in deliveries:
        assert d["attempts"] == []
        assert d["attempt_count"] == 0
        assert d["last_error"].startswith("not sent: the subscription is disabled")
        assert "disabled through the API" in d["last_error"]


async def test_a_subscription_disabled_after_the_claim_is_not_sent(hooks: Hooks) -> None:
    """Disabled behind the API's back (or between claim and attempt): still not sent."""
    sub = await hooks.subscribe(event_types=["lead.created"])
    await record(hooks.database, hooks.org, 2)
    async with hooks.database.writer() as s:
        await s.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == sub["id"])
            .values(is_active=False, disabled_reason="operator")
        )
        await s.commit()
    await hooks.dispatcher().drain()
    assert hooks.receiver.requests() == []
    rows = await delivery_rows(hooks.database, sub["id"])
    assert [r.status for r in rows] == ["failed", "failed"]
    assert all("operator" in (r.last_error or "") for r in rows)


# --- receiver down, then up ----------------------------------------------------------------------
async def test_receiver_down_then_up_delivers_everything(hooks: Hooks) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    hooks.receiver.stop()
    event_ids = await record(hooks.database, hooks.org, 30)
    clock = Clock()
    dispatcher = hooks.dispatcher(clock=clock, poll_interval=0.02, concurrency=8)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        for _ in range(500):  # every delivery tried once, refused, and rescheduled
            rows = await delivery_rows(hooks.database, sub["id"])
            if all(r.attempt_count == 1 for r in rows):
                break
            await asyncio.sleep(0.02)
        assert all(r.status == "pending" and r.last_status_code is None for r in rows)
        assert all(r.last_error and "ConnectError" in r.last_error for r in rows)
        hooks.receiver.start()
        clock.advance(timedelta(seconds=6))  # past the first retry (5 s ±10 %)
        await hooks.receiver.wait_async(lambda seen: len(seen) >= 30)
    finally:
        stop.set()
        await task
    received = [r.webhook_id for r in hooks.receiver.requests(sub["name"])]
    assert sorted(received) == sorted(event_ids)
    rows = await delivery_rows(hooks.database, sub["id"])
    assert {r.status for r in rows} == {"succeeded"}
    assert {r.attempt_count for r in rows} == {2}
    attempts = await attempt_rows(hooks.database, rows[0].id)
    assert [a.succeeded for a in attempts] == [False, True]


async def test_the_app_runs_a_dispatcher_in_process(
    private_settings: Settings, database: Database, receiver: Any, org: Org
) -> None:
    """``create_app(background=True)`` (``closerdesk serve``) delivers without being asked."""
    app = create_app(
        private_settings, database=Database(private_settings.database_url), background=True
    )
    hooks = Hooks(httpx.AsyncClient(), org, receiver, database, private_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            hooks.client = client
            sub = await hooks.subscribe(event_types=["lead.created"])
            lead = await new_lead(hooks)
            await receiver.wait_async(lambda seen: len(seen) == 1, seconds=5)
    assert [p["data"]["lead"]["id"] for p in hooks.payloads(sub["name"])] == [lead["id"]]
    hooks.check_all()


# --- the target is checked again, and pinned, at every attempt -----------------------------------
async def test_a_private_target_is_refused_at_delivery_time(
    hooks: Hooks, settings: Settings
) -> None:
    """A row that slipped in with a loopback target (or a name that now resolves inside)."""
    name = hooks.new_name()
    secret = new_secret()
    hooks.secrets[name] = [secret]
    async with hooks.database.writer() as s:
        s.add(
            WebhookSubscription(
                id=new_id("wh"),
                organization_id=hooks.org.id,
                target_url=hooks.receiver.url(name),
                event_types=["lead.created"],
                secret=secret_box(settings).encrypt(secret),
                is_active=True,
            )
        )
        await s.commit()
    await record(hooks.database, hooks.org, 1)
    strict = hooks.dispatcher()
    strict.settings = settings  # webhook_allow_private_targets=False
    await strict.drain()
    assert hooks.receiver.requests() == []
    async with hooks.database.reader() as s:
        delivery = await s.scalar(select(WebhookDelivery))
    assert delivery is not None
    assert delivery.status == "pending"
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("target not allowed: webhook targets must use https")


async def test_the_attempt_connects_to_the_checked_ip(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved and checked once per attempt and the request goes to that IP,
    with the original name as ``Host`` (and TLS server name)."""
    sub = await hooks.subscribe(event_types=["lead.created"])
    port = hooks.receiver.port
    async with hooks.database.writer() as s:
        await s.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == sub["id"])
            .values(target_url=f"http://hooks.partner.test:{port}/hooks/{sub['name']}")
        )
        await s.commit()
    seen: list[str] = []

    async def resolve(url: str, *, allow_private: bool) -> ResolvedTarget:
        seen.append(url)
        return ResolvedTarget(
            f"http://127.0.0.1:{port}/hooks/{sub['name']}", "hooks.partner.test", pinned=True
        )

    monkeypatch.setattr(dispatcher_module, "resolve_target", resolve)
    await record(hooks.database, hooks.org, 2)
    await hooks.dispatcher().drain()
    requests = hooks.receiver.requests(sub["name"])
    assert len(requests) == 2
    assert len(seen) == 2
    assert {r.headers["host"] for r in requests} == {f"hooks.partner.test:{port}"}


async def test_an_unexpected_error_in_an_attempt_is_recorded_not_fatal(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    await record(hooks.database, hooks.org, 2)

    def broken(*args: Any, **kwargs: Any) -> dict[str, str]:
        raise RuntimeError("signing exploded")

    monkeypatch.setattr(dispatcher_module, "signed_headers", broken)
    dispatcher = hooks.dispatcher()
    assert await dispatcher.drain() == 2
    rows = await delivery_rows(hooks.database, sub["id"])
    assert [r.status for r in rows] == ["pending", "pending"]
    assert all(r.last_error == "RuntimeError: signing exploded" for r in rows)
    assert all(r.attempt_count == 1 for r in rows)
    assert hooks.receiver.requests() == []


async def test_a_slow_target_does_not_hold_up_the_others(hooks: Hooks) -> None:
    """The pipeline: a slow answer occupies one slot, not the batch it was claimed with."""
    slow = await hooks.subscribe(event_types=["lead.created"])
    fast = await hooks.subscribe(event_types=["lead.updated"])
    hooks.receiver.always(slow["name"], Reply(200, delay=2.5))
    async with hooks.database.writer() as s:
        await record_event(s, hooks.org.id, lead_created("lead_slow"))
        await s.commit()
    dispatcher = hooks.dispatcher(poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        await hooks.receiver.wait_async(lambda seen: len(seen) == 1)  # the slow one, in flight
        started = asyncio.get_running_loop().time()
        async with hooks.database.writer() as s:
            for i in range(5):
                await record_event(s, hooks.org.id, lead_updated(f"lead_{i}"))
            await s.commit()
        await hooks.receiver.wait_async(lambda seen: len(seen) == 6, seconds=2)
        assert asyncio.get_running_loop().time() - started < 2
        rows = await delivery_rows(hooks.database, fast["id"])
        for _ in range(50):
            if all(r.status == "succeeded" for r in rows):
                break
            await asyncio.sleep(0.02)
            rows = await delivery_rows(hooks.database, fast["id"])
        assert [r.status for r in rows] == ["succeeded"] * 5  # recorded while the slow one waits
        [slow_row] = await delivery_rows(hooks.database, slow["id"])
        assert slow_row.status == "pending"
    finally:
        stop.set()
        await task
    [slow_row] = await delivery_rows(hooks.database, slow["id"])
    assert slow_row.status == "succeeded"  # stopping finished and recorded what was in flight
