"""Subscriptions API (SPEC §6): CRUD, secrets shown once, every error code, SSRF refusals."""

from __future__ import annotations

import base64

import httpx
import pytest

from closerdesk.db import Database
from closerdesk.webhooks.service import record_event
from tests.factories import Org
from tests.webhooks.helpers import ALL_EVENT_TYPES, Hooks, error, lead_created, ok

PUBLIC = "https://1.1.1.1/hooks/closerdesk"


async def create(client: httpx.AsyncClient, org: Org, **body: object) -> httpx.Response:
    payload = {"target_url": PUBLIC, "event_types": ["call.booked"], **body}
    return await client.post("/v1/webhooks", headers=org.headers, json=payload)


# --- create, read, list, update, delete ----------------------------------------------------------
async def test_create_shows_the_secret_once(client: httpx.AsyncClient, org: Org) -> None:
    created = ok(
        await create(
            client,
            org,
            event_types=["call.closer_reassigned", "call.booked"],
            description="CRM sync",
        ),
        201,
    )
    assert created["id"].startswith("wh_")
    assert created["target_url"] == PUBLIC
    assert created["event_types"] == ["call.closer_reassigned", "call.booked"]
    assert created["description"] == "CRM sync"
    assert created["is_active"] is True
    assert created["disabled_reason"] is None
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32

    fetched = ok(await client.get(f"/v1/webhooks/{created['id']}", headers=org.headers))
    listed = ok(await client.get("/v1/webhooks", headers=org.headers))
    assert "secret" not in fetched
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert {k: v for k, v in created.items() if k != "secret"} == fetched == listed[0]
    for shown in (fetched, listed[0]):
        assert secret not in str(shown)


async def test_public_ipv6_literal_is_accepted(client: httpx.AsyncClient, org: Org) -> None:
    ok(await create(client, org, target_url="https://[2606:4700:4700::1111]/hook"), 201)


async def test_list_is_paginated_and_per_organization(
    client: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    ids = [ok(await create(client, org), 201)["id"] for _ in range(3)]
    ok(await create(client, other_org), 201)
    first = await client.get("/v1/webhooks", headers=org.headers, params={"limit": 2})
    body = first.json()
    assert [w["id"] for w in body["data"]] == ids[:2]
    assert body["pagination"]["has_more"] is True
    second = await client.get(
        "/v1/webhooks",
        headers=org.headers,
        params={"limit": 2, "cursor": body["pagination"]["next_cursor"]},
    )
    assert [w["id"] for w in second.json()["data"]] == ids[2:]
    assert second.json()["pagination"] == {"next_cursor": None, "has_more": False}


async def test_patch_changes_only_given_fields(client: httpx.AsyncClient, org: Org) -> None:
    created = ok(await create(client, org, description="old"), 201)
    path = f"/v1/webhooks/{created['id']}"
    patched = ok(
        await client.patch(
            path,
            headers=org.headers,
            json={"event_types": ["lead.created", "payment.recorded"], "description": None},
        )
    )
    assert patched["event_types"] == ["lead.created", "payment.recorded"]
    assert patched["description"] is None
    assert patched["target_url"] == PUBLIC
    assert "secret" not in patched
    moved = ok(
        await client.patch(path, headers=org.headers, json={"target_url": "https://8.8.8.8/h"})
    )
    assert moved["target_url"] == "https://8.8.8.8/h"
    assert moved["event_types"] == ["lead.created", "payment.recorded"]


async def test_patch_disables_and_enables_with_a_reason(
    client: httpx.AsyncClient, org: Org
) -> None:
    created = ok(await create(client, org), 201)
    path = f"/v1/webhooks/{created['id']}"
    off = ok(await client.patch(path, headers=org.headers, json={"is_active": False}))
    assert off["is_active"] is False
    assert off["disabled_reason"] == "disabled through the API"
    assert off["disabled_at"] is not None
    on = ok(await client.patch(path, headers=org.headers, json={"is_active": True}))
    assert on["is_active"] is True
    assert on["disabled_reason"] is None
    assert on["disabled_at"] is None


@pytest.mark.parametrize("field", ["target_url", "event_types", "is_active"])
async def test_patch_refuses_null_for_required_fields(
    client: httpx.AsyncClient, org: Org, field: str
) -> None:
    created = ok(await create(client, org), 201)
    r = await client.patch(f"/v1/webhooks/{created['id']}", headers=org.headers, json={field: None})
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field


async def test_delete_removes_it(client: httpx.AsyncClient, org: Org) -> None:
    created = ok(await create(client, org), 201)
    path = f"/v1/webhooks/{created['id']}"
    assert ok(await client.delete(path, headers=org.headers)) == {"deleted": True}
    error(await client.get(path, headers=org.headers), 404, "WEBHOOK_NOT_FOUND")
    error(await client.delete(path, headers=org.headers), 404, "WEBHOOK_NOT_FOUND")
    assert ok(await client.get("/v1/webhooks", headers=org.headers)) == []


async def test_rotate_answers_a_new_secret_once(client: httpx.AsyncClient, org: Org) -> None:
    created = ok(await create(client, org), 201)
    rotated = ok(
        await client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=org.headers)
    )
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    fetched = ok(await client.get(f"/v1/webhooks/{created['id']}", headers=org.headers))
    assert "secret" not in fetched
    assert "previous_secret" not in fetched


# --- validation and scopes -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        {"event_types": []},
        {"event_types": ["call.exploded"]},
        {"event_types": ["ping"]},
        {"event_types": ["call.booked", "call.booked"]},
        {"target_url": ""},
        {"target_url": "x" * 2001},
        {"description": "d" * 501},
        {"unknown": 1},
    ],
)
async def test_create_validation(client: httpx.AsyncClient, org: Org, body: dict) -> None:
    r = await create(client, org, **body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] in {"VALIDATION_ERROR", "WEBHOOK_TARGET_NOT_ALLOWED"}
    if set(body) & {"event_types", "description", "unknown"}:
        assert r.json()["code"] == "VALIDATION_ERROR"


async def test_every_event_type_is_subscribable(client: httpx.AsyncClient, org: Org) -> None:
    assert ok(await create(client, org, event_types=ALL_EVENT_TYPES), 201)["event_types"] == (
        ALL_EVENT_TYPES
    )


async def test_scopes(client: httpx.AsyncClient, org: Org) -> None:
    created = ok(await create(client, org), 201)
    wid = created["id"]
    for scope in ("read", "write"):
        headers = org.auth(scope)
        body = {"target_url": PUBLIC, "event_types": ["call.booked"]}
        error(await client.post("/v1/webhooks", headers=headers, json=body), 403, "FORBIDDEN")
        error(
            await client.patch(f"/v1/webhooks/{wid}", headers=headers, json={"description": "x"}),
            403,
            "FORBIDDEN",
        )
        error(await client.delete(f"/v1/webhooks/{wid}", headers=headers), 403, "FORBIDDEN")
        error(
            await client.post(f"/v1/webhooks/{wid}/rotate-secret", headers=headers),
            403,
            "FORBIDDEN",
        )
    assert ok(await client.get("/v1/webhooks", headers=org.auth("read")))[0]["id"] == wid
    error(await client.get("/v1/webhooks"), 401, "UNAUTHORIZED")


# --- 404s ----------------------------------------------------------------------------------------
async def test_unknown_and_foreign_subscriptions_are_404(
    client: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    foreign = ok(await create(client, other_org), 201)["id"]
    for wid in ("wh_01UNKNOWN", foreign):
        base = f"/v1/webhooks/{wid}"
        calls = [
            client.get(base, headers=org.headers),
            client.patch(base, headers=org.headers, json={"description": "x"}),
            client.delete(base, headers=org.headers),
            client.post(f"{base}/rotate-secret", headers=org.headers),
            client.post(f"{base}/test", headers=org.headers),
            client.get(f"{base}/deliveries", headers=org.headers),
            client.post(
                f"{base}/recover",
                headers=org.headers,
                params={"since": "2026-01-01T00:00:00Z"},
            ),
        ]
        for call in calls:
            error(await call, 404, "WEBHOOK_NOT_FOUND")
    # the foreign one is untouched
    assert ok(await client.get(f"/v1/webhooks/{foreign}", headers=other_org.headers))["id"]


async def test_unknown_and_foreign_deliveries_are_404(
    hooks: Hooks, other_org: Org, database: Database
) -> None:
    client, org = hooks.client, hooks.org
    error(
        await client.post("/v1/webhooks/deliveries/dlv_01UNKNOWN/redeliver", headers=org.headers),
        404,
        "DELIVERY_NOT_FOUND",
    )
    foreign = ok(
        await client.post(
            "/v1/webhooks",
            headers=other_org.headers,
            json={"target_url": hooks.receiver.url("foreign"), "event_types": ["lead.created"]},
        ),
        201,
    )
    async with database.writer() as s:
        await record_event(s, other_org.id, lead_created("lead_x"))
        await s.commit()
    [delivery] = await hooks.deliveries(foreign["id"], other_org)
    error(
        await client.post(
            f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=org.headers
        ),
        404,
        "DELIVERY_NOT_FOUND",
    )
    ok(
        await client.post(
            f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=other_org.headers
        ),
        202,
    )


async def test_recover_needs_an_aware_since(client: httpx.AsyncClient, org: Org) -> None:
    wid = ok(await create(client, org), 201)["id"]
    for params in ({}, {"since": "2026-01-01T00:00:00"}, {"since": "yesterday"}):
        r = await client.post(f"/v1/webhooks/{wid}/recover", headers=org.headers, params=params)
        error(r, 400, "VALIDATION_ERROR")


# --- SSRF (allow_private is False in the default settings) ---------------------------------------
REFUSED = [
    pytest.param("http://crm.example.com/hook", "https", id="plain-http"),
    pytest.param("ftp://1.1.1.1/hook", "https", id="ftp"),
    pytest.param("https://127.0.0.1/hook", "127.0.0.1", id="loopback"),
    pytest.param("https://127.0.0.1:8443/hook", "127.0.0.1", id="loopback-port"),
    pytest.param("https://10.1.2.3/hook", "10.1.2.3", id="private-10"),
    pytest.param("https://172.16.5.4/hook", "172.16.5.4", id="private-172"),
    pytest.param("https://192.168.1.10/hook", "192.168.1.10", id="private-192"),
    pytest.param("https://169.254.169.254/latest/meta-data", "169.254.169.254", id="link-local"),
    pytest.param("https://100.64.0.1/hook", "100.64.0.1", id="cgnat"),
    pytest.param("https://100.127.255.254/hook", "100.127.255.254", id="cgnat-top"),
    pytest.param("https://224.0.0.1/hook", "224.0.0.1", id="multicast"),
    pytest.param("https://239.255.255.250/hook", "239.255.255.250", id="multicast-ssdp"),
    pytest.param("https://0.0.0.0/hook", "0.0.0.0", id="unspecified"),  # noqa: S104
    pytest.param("https://255.255.255.255/hook", "255.255.255.255", id="broadcast"),
    pytest.param("https://[::1]/hook", "::1", id="ipv6-loopback"),
    pytest.param("https://[fe80::1]/hook", "fe80::1", id="ipv6-link-local"),
    pytest.param("https://[fc00::1]/hook", "fc00::1", id="ipv6-unique-local"),
    pytest.param("https://[ff02::1]/hook", "ff02::1", id="ipv6-multicast"),
    pytest.param("https://[::ffff:10.0.0.1]/hook", "10.0.0.1", id="ipv4-mapped"),
    pytest.param("https://[::ffff:127.0.0.1]/hook", "127.0.0.1", id="ipv4-mapped-loopback"),
    pytest.param("https://[64:ff9b::a00:1]/hook", "64:ff9b::a00:1", id="nat64"),
    pytest.param("https://[2002:a00:1::1]/hook", "2002:a00:1::1", id="6to4"),
    pytest.param("https://localhost/hook", "127.0.0.1", id="localhost"),
    pytest.param("https://2130706433/hook", "127.0.0.1", id="decimal-loopback"),
    pytest.param("https://127.1/hook", "127.0.0.1", id="short-loopback"),
    pytest.param("https://nowhere.invalid/hook", "does not resolve", id="unresolvable"),
    pytest.param("https://user:pw@1.1.1.1/hook", "credentials", id="credentials"),
    pytest.param("https://[::1/hook", "not valid", id="broken-ipv6"),
    pytest.param("https://1.1.1.1:99999/hook", "not valid", id="port-out-of-range"),
    pytest.param("https://1.1.1.1:abc/hook", "not valid", id="port-not-a-number"),
    pytest.param("https://exa mple.com/hook", "not valid", id="space-in-host"),
    pytest.param("https://" + "a" * 70 + ".example/hook", "does not resolve", id="label-too-long"),
    pytest.param("https:///hook", "no host", id="no-host"),
]


@pytest.mark.parametrize(("target", "why"), REFUSED)
async def test_private_targets_are_refused(
    client: httpx.AsyncClient, org: Org, target: str, why: str
) -> None:
    body = error(await create(client, org, target_url=target), 400, "WEBHOOK_TARGET_NOT_ALLOWED")
    assert why in body["error"]
    assert body["details"] == [{"field": "target_url", "message": body["details"][0]["message"]}]
    assert why in body["details"][0]["message"]
    assert ok(await client.get("/v1/webhooks", headers=org.headers)) == []


@pytest.mark.parametrize(
    "target",
    [
        "http://1.1.1.1/hook",
        "https://10.0.0.7/hook",
        "https://[::ffff:10.0.0.1]/",
        "https://localhost/",
    ],
)
async def test_patch_to_a_private_target_is_refused(
    client: httpx.AsyncClient, org: Org, target: str
) -> None:
    wid = ok(await create(client, org), 201)["id"]
    r = await client.patch(f"/v1/webhooks/{wid}", headers=org.headers, json={"target_url": target})
    error(r, 400, "WEBHOOK_TARGET_NOT_ALLOWED")
    assert ok(await client.get(f"/v1/webhooks/{wid}", headers=org.headers))["target_url"] == PUBLIC


async def test_private_targets_are_allowed_when_the_operator_says_so(hooks: Hooks) -> None:
    """``CLOSERDESK_WEBHOOK_ALLOW_PRIVATE_TARGETS=true``: http and loopback are fine."""
    sub = await hooks.subscribe()
    assert sub["target_url"].startswith("http://127.0.0.1:")
