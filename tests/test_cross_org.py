"""Cross-organization probes (SPEC §1, §2): another organization's resource is indistinguishable
from a missing one, on every route that takes an id, in the path or in the body.

Each probe is sent twice with the caller's admin key: once naming the other organization's row,
once naming an id that exists nowhere. Both must answer the same 404 with the resource's own
code, and nothing of the other organization may change. The routes are enumerated from the
app, so a new route with an id and no probe fails ``test_every_route_with_an_id_is_probed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import Database
from closerdesk.kit.ids import new_id, ulid
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import (
    BookingLink,
    BusyBlock,
    CalendarConnection,
    CalendarEvent,
    Call,
    CallEvent,
    ConferencingLink,
    Lead,
    Payment,
    Product,
    SlotReservation,
    TeamMember,
    WebhookEvent,
)
from tests.factories import Org, create_call, create_lead, create_member

try:  # FastAPI ≥ 0.120 keeps included routers lazily; this walks into them.
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI lists flat routes
    iter_route_contexts = None

# Routes with an id in the path that need no probe, and why.
EXEMPT: dict[tuple[str, str], str] = {
    ("GET", "/meet/{token}"): "a public capability link (no API key, no organization); "
    "tests/test_envelope.py covers unknown and revoked tokens",
    ("HEAD", "/meet/{token}"): "GET /meet/{token} without its body; tests/test_lead_links.py",
    ("GET", "/ics/{token}"): "a public signed link (no API key, no organization): the signature "
    "names the call; tests/test_lead_links.py covers forged, foreign-key and unknown tokens",
    ("HEAD", "/ics/{token}"): "GET /ics/{token} without its body; tests/test_lead_links.py",
    ("GET", "/oauth/{provider}/callback"): "no API key, no organization in the path: the "
    "sealed state names the member; tests/calendars/test_calls_on_cloud.py covers forged state",
}

Ids = dict[str, str]
Request = tuple[str, dict[str, Any] | None, dict[str, str] | None]  # url, json, params


def _future(days: int = 5) -> str:
    return isoformat_z((utcnow() + timedelta(days=days)).replace(microsecond=0))


@dataclass(frozen=True)
class Probe:
    """``build(own, x)`` makes the request naming ``x`` (of kind ``kind``) with the caller's own
    rows in ``own`` for everything else."""

    method: str
    path: str
    kind: str
    code: str
    build: Callable[[Ids, str], Request]
    name: str = ""

    @property
    def label(self) -> str:
        return f"{self.method} {self.path} {self.name or self.kind}"


def _p(method: str, path: str, kind: str, code: str, body: Any = None, **kw: Any) -> Probe:
    """A probe whose path's first parameter is the probed id (``{x}``) and whose other
    parameters are the caller's own rows."""
    params = kw.pop("params", None)
    name = kw.pop("name", "")
    own_args: dict[str, str] = kw.pop("own", {})

    def build(own: Ids, x: str) -> Request:
        url = path
        for placeholder, key in own_args.items():
            url = url.replace("{" + placeholder + "}", own[key])
        first = url.index("{")
        url = url[:first] + x + url[url.index("}", first) + 1 :]
        json = body(own) if callable(body) else body
        return url, json, params() if callable(params) else params

    return Probe(method, path, kind, code, build, name)


def _ref(method: str, path: str, kind: str, code: str, field: str, body: Any, **kw: Any) -> Probe:
    """A probe naming the id in the body field ``field``; the path's ids are the caller's."""
    own_args: dict[str, str] = kw.pop("own", {})

    def build(own: Ids, x: str) -> Request:
        url = path
        for placeholder, key in own_args.items():
            url = url.replace("{" + placeholder + "}", own[key])
        return url, {**body(own), field: x}, None

    return Probe(method, path, kind, code, build, f"body.{field}")


def _busy_range() -> dict[str, str]:
    return {"start": _future(1), "end": _future(2)}


def _link_body(host_id: str, slug: str) -> dict[str, Any]:
    schedule = {
        "time_zone": "America/New_York",
        "weekly": [{"weekday": "monday", "start": "09:00", "end": "17:00"}],
    }
    return {
        "slug": slug,
        "title": "Strategy call",
        "duration_minutes": 45,
        "hosts": [{"member_id": host_id, "schedule": schedule}],
    }


CALL = "/v1/calls/{call_id}"
LINK = "/v1/booking-links/{link_id}"
MEMBER = "/v1/team/{member_id}"
WEBHOOK = "/v1/webhooks/{webhook_id}"

PROBES: list[Probe] = [
    # --- calls, by path ---
    _p("GET", CALL, "call", "CALL_NOT_FOUND"),
    _p("PATCH", CALL, "call", "CALL_NOT_FOUND", {"notes": "probe"}),
    _p("POST", f"{CALL}/outcome", "call", "CALL_NOT_FOUND", {"status": "shown"}),
    _p(
        "POST",
        f"{CALL}/reassign-closer",
        "call",
        "CALL_NOT_FOUND",
        lambda own: {"new_closer_id": own["closer2"]},
    ),
    _p(
        "POST",
        f"{CALL}/reschedule",
        "call",
        "CALL_NOT_FOUND",
        lambda _: {"scheduled_at": _future(9)},
    ),
    _p("POST", f"{CALL}/cancel", "call", "CALL_NOT_FOUND", {}),
    _p("GET", f"{CALL}/history", "call", "CALL_NOT_FOUND"),
    _p("POST", f"{CALL}/auto-reassign", "call", "CALL_NOT_FOUND", {}),
    _p("POST", f"{CALL}/absence", "call", "CALL_NOT_FOUND", {"host": True, "lead": True}),
    _p("GET", f"{CALL}/reassign-candidates", "call", "CALL_NOT_FOUND"),
    _p("POST", f"{CALL}/confirm", "call", "CALL_NOT_FOUND", {}),
    _p("POST", f"{CALL}/decline", "call", "CALL_NOT_FOUND", {}),
    _p("GET", f"{CALL}/calendar-links", "call", "CALL_NOT_FOUND"),
    _p("GET", f"{CALL}/ics", "call", "CALL_NOT_FOUND"),
    # --- calls, by body reference ---
    _ref(
        "POST",
        "/v1/calls",
        "lead",
        "LEAD_NOT_FOUND",
        "lead_id",
        lambda own: {
            "closer_id": own["closer"],
            "scheduled_at": _future(7),
            "duration_minutes": 30,
        },
    ),
    _ref(
        "POST",
        "/v1/calls/bulk-reassign",
        "member",
        "CLOSER_NOT_FOUND",
        "from_closer_id",
        lambda _: {"to": "auto", "dry_run": True},
    ),
    _ref(
        "POST",
        "/v1/calls",
        "member",
        "CLOSER_NOT_FOUND",
        "closer_id",
        lambda own: {"lead_id": own["lead"], "scheduled_at": _future(7), "duration_minutes": 30},
    ),
    _ref(
        "POST",
        "/v1/calls",
        "member",
        "SETTER_NOT_FOUND",
        "setter_id",
        lambda own: {
            "lead_id": own["lead"],
            "closer_id": own["closer"],
            "scheduled_at": _future(7),
            "duration_minutes": 30,
        },
    ),
    _ref(
        "POST",
        "/v1/calls",
        "product",
        "PRODUCT_NOT_FOUND",
        "product_id",
        lambda own: {
            "lead_id": own["lead"],
            "closer_id": own["closer"],
            "scheduled_at": _future(7),
            "duration_minutes": 30,
        },
    ),
    _ref(
        "POST",
        "/v1/calls",
        "member",
        "CLOSER_NOT_FOUND",
        "closer_id",
        lambda own: {"lead_id": own["lead"], "call_kind": "intent"},
    ),
    _ref(
        "POST",
        "/v1/calls",
        "booking_link",
        "BOOKING_LINK_NOT_FOUND",
        "booking_link_id",
        lambda own: {"lead_id": own["lead"], "scheduled_at": _future(7), "duration_minutes": 30},
    ),
    _ref(
        "PATCH",
        CALL,
        "product",
        "PRODUCT_NOT_FOUND",
        "product_id",
        lambda _: {},
        own={"call_id": "call"},
    ),
    _ref(
        "PATCH",
        CALL,
        "member",
        "SETTER_NOT_FOUND",
        "setter_id",
        lambda _: {},
        own={"call_id": "call"},
    ),
    _ref(
        "PATCH",
        CALL,
        "payment",
        "PAYMENT_NOT_FOUND",
        "linked_payment_id",
        lambda _: {},
        own={"call_id": "call"},
    ),
    _ref(
        "POST",
        f"{CALL}/reassign-closer",
        "member",
        "CLOSER_NOT_FOUND",
        "new_closer_id",
        lambda _: {},
        own={"call_id": "call"},
    ),
    _ref(
        "POST",
        f"{CALL}/reschedule",
        "member",
        "CLOSER_NOT_FOUND",
        "new_closer_id",
        lambda _: {"scheduled_at": _future(8)},
        own={"call_id": "call"},
    ),
    # --- leads ---
    _p("GET", "/v1/leads/{lead_id}", "lead", "LEAD_NOT_FOUND"),
    _p("PATCH", "/v1/leads/{lead_id}", "lead", "LEAD_NOT_FOUND", {"full_name": "Probe"}),
    # --- team ---
    _p("GET", MEMBER, "member", "MEMBER_NOT_FOUND"),
    _p("PATCH", MEMBER, "member", "MEMBER_NOT_FOUND", {"name": "Probe"}),
    _p("PATCH", MEMBER, "member", "MEMBER_NOT_FOUND", {"is_active": False}, name="deactivate"),
    _p("PUT", f"{MEMBER}/calendar", "member", "MEMBER_NOT_FOUND", {"provider": "builtin"}),
    _p("DELETE", f"{MEMBER}/calendar", "member", "MEMBER_NOT_FOUND"),
    _p("GET", f"{MEMBER}/calendar", "member", "MEMBER_NOT_FOUND"),
    _p("POST", f"{MEMBER}/calendar/sync", "member", "MEMBER_NOT_FOUND"),
    _p("GET", f"{MEMBER}/busy", "member", "MEMBER_NOT_FOUND", params=_busy_range),
    _p("GET", f"{MEMBER}/busy-blocks", "member", "MEMBER_NOT_FOUND"),
    _p("POST", f"{MEMBER}/busy-blocks", "member", "MEMBER_NOT_FOUND", lambda _: _busy_range()),
    _p(
        "DELETE",
        f"{MEMBER}/busy-blocks/{{block_id}}",
        "member",
        "MEMBER_NOT_FOUND",
        own={"block_id": "busy"},
    ),
    Probe(
        "DELETE",
        f"{MEMBER}/busy-blocks/{{block_id}}",
        "busy",
        "BUSY_BLOCK_NOT_FOUND",
        lambda own, x: (f"/v1/team/{own['closer']}/busy-blocks/{x}", None, None),
        "block of own member",
    ),
    # --- booking links ---
    _p("GET", LINK, "booking_link", "BOOKING_LINK_NOT_FOUND"),
    _p("PATCH", LINK, "booking_link", "BOOKING_LINK_NOT_FOUND", {"title": "Probe"}),
    _p(
        "GET",
        f"{LINK}/slots",
        "booking_link",
        "BOOKING_LINK_NOT_FOUND",
        params=lambda: {**_busy_range(), "time_zone": "UTC"},
    ),
    _p(
        "POST",
        f"{LINK}/reservations",
        "booking_link",
        "BOOKING_LINK_NOT_FOUND",
        lambda own: {"start": own["reserved_start"]},
    ),
    _p(
        "DELETE",
        f"{LINK}/reservations/{{reservation_id}}",
        "booking_link",
        "BOOKING_LINK_NOT_FOUND",
        own={"reservation_id": "reservation"},
    ),
    Probe(
        "DELETE",
        f"{LINK}/reservations/{{reservation_id}}",
        "reservation",
        "RESERVATION_NOT_FOUND",
        lambda own, x: (f"/v1/booking-links/{own['booking_link']}/reservations/{x}", None, None),
        "reservation of own link",
    ),
    _ref(
        "POST",
        "/v1/calls",
        "reservation",
        "RESERVATION_NOT_FOUND",
        "reservation_id",
        lambda own: {
            "lead_id": own["lead"],
            "booking_link_id": own["booking_link"],
            "scheduled_at": own["reserved_start"],
        },
    ),
    Probe(
        "POST",
        "/v1/booking-links",
        "member",
        "CLOSER_NOT_FOUND",
        lambda own, x: ("/v1/booking-links", _link_body(x, f"probe-{ulid().lower()}"), None),
        "body.hosts.member_id",
    ),
    Probe(
        "PATCH",
        LINK,
        "member",
        "CLOSER_NOT_FOUND",
        lambda own, x: (
            f"/v1/booking-links/{own['booking_link']}",
            {"hosts": _link_body(x, "unused")["hosts"]},
            None,
        ),
        "body.hosts.member_id",
    ),
    # --- products ---
    _p("GET", "/v1/products/{product_id}", "product", "PRODUCT_NOT_FOUND"),
    _p("PATCH", "/v1/products/{product_id}", "product", "PRODUCT_NOT_FOUND", {"price": 1}),
    # --- payments ---
    _p("GET", "/v1/payments/{payment_id}", "payment", "PAYMENT_NOT_FOUND"),
    _ref(
        "POST",
        "/v1/payments",
        "lead",
        "LEAD_NOT_FOUND",
        "lead_id",
        lambda _: {"amount": 100, "provider": "stripe"},
    ),
    _ref(
        "POST",
        "/v1/payments",
        "call",
        "CALL_NOT_FOUND",
        "call_id",
        lambda own: {"amount": 100, "provider": "stripe", "lead_id": own["lead"]},
    ),
    _ref(
        "POST",
        "/v1/payments",
        "product",
        "PRODUCT_NOT_FOUND",
        "product_id",
        lambda own: {"amount": 100, "provider": "stripe", "lead_id": own["lead"]},
    ),
    # --- webhooks ---
    _p("GET", WEBHOOK, "webhook", "WEBHOOK_NOT_FOUND"),
    _p("PATCH", WEBHOOK, "webhook", "WEBHOOK_NOT_FOUND", {"description": "probe"}),
    _p("PATCH", WEBHOOK, "webhook", "WEBHOOK_NOT_FOUND", {"is_active": False}, name="disable"),
    _p("DELETE", WEBHOOK, "webhook", "WEBHOOK_NOT_FOUND"),
    _p("POST", f"{WEBHOOK}/rotate-secret", "webhook", "WEBHOOK_NOT_FOUND"),
    _p("POST", f"{WEBHOOK}/test", "webhook", "WEBHOOK_NOT_FOUND"),
    _p("GET", f"{WEBHOOK}/deliveries", "webhook", "WEBHOOK_NOT_FOUND"),
    _p(
        "POST",
        f"{WEBHOOK}/recover",
        "webhook",
        "WEBHOOK_NOT_FOUND",
        params=lambda: {"since": "2020-01-01T00:00:00Z"},
    ),
    _p(
        "POST",
        "/v1/webhooks/deliveries/{delivery_id}/redeliver",
        "delivery",
        "DELIVERY_NOT_FOUND",
    ),
]


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    flat = iter_route_contexts(app.routes) if iter_route_contexts else app.routes
    for route in flat:
        if isinstance(getattr(route, "original_route", route), APIRoute):
            routes |= {(m, route.path) for m in route.methods or ()}
    return routes


def test_every_route_with_an_id_is_probed(app: FastAPI) -> None:
    routes = _routes(app)
    probed = {(p.method, p.path) for p in PROBES if not p.name.startswith("body.")}
    unprobed = {r for r in routes if "{" in r[1]} - probed - set(EXEMPT)
    assert not unprobed, f"routes with an id but no cross-organization probe: {sorted(unprobed)}"
    stale = ({(p.method, p.path) for p in PROBES} | set(EXEMPT)) - routes
    assert not stale, f"probes for routes that no longer exist: {sorted(stale)}"


# Body fields ending in ``_id`` that name no row of the organization, and why.
BODY_EXEMPT: dict[tuple[str, str, str], str] = {
    ("POST", "/v1/payments", "provider_payment_id"): "the payment provider's own id",
    ("POST", "/v1/calls", "form_data.field_id"): "the partner's own form field id",
}


def _body_id_fields(
    doc: dict[str, Any],
    schema: dict[str, Any],
    prefix: str = "",
    seen: frozenset[str] = frozenset(),
) -> set[str]:
    """Dotted names of the ``*_id`` fields of a body schema, nested objects and arrays too."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return set()
        return _body_id_fields(doc, doc["components"]["schemas"][name], prefix, seen | {name})
    fields: set[str] = set()
    for option in schema.get("anyOf", []) + schema.get("allOf", []):
        fields |= _body_id_fields(doc, option, prefix, seen)
    if "items" in schema:
        fields |= _body_id_fields(doc, schema["items"], prefix, seen)
    for field, sub in schema.get("properties", {}).items():
        if field.endswith("_id"):
            fields.add(prefix + field)
        fields |= _body_id_fields(doc, sub, f"{prefix}{field}.", seen)
    return fields


def test_every_id_in_a_request_body_is_probed(app: FastAPI) -> None:
    """A body field that names another row (``lead_id``, ``closer_id`` …) has its probe."""
    doc = app.openapi()
    probed = {(p.method, p.path, p.name.removeprefix("body.")) for p in PROBES}
    unprobed = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            for field in _body_id_fields(doc, content["schema"]):
                key = (method.upper(), path, field)
                if key not in probed and key not in BODY_EXEMPT:
                    unprobed.append(key)
    assert not unprobed, f"body references without a cross-organization probe: {unprobed}"


# --- the two organizations -----------------------------------------------------------------------
async def _post(client: httpx.AsyncClient, org: Org, url: str, body: dict[str, Any]) -> Any:
    r = await client.post(url, headers=org.headers, json=body)
    assert r.status_code in (200, 201), r.text
    return r.json()["data"]


async def _rows(session: AsyncSession, org: Org) -> Ids:
    """A full set of rows in ``org``: members, lead, product, call, payment, busy block,
    webhook subscription with a delivery."""
    closer = await create_member(session, org)
    closer2 = await create_member(session, org)
    setter = await create_member(session, org, role="setter", calendar=False)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer, setter_id=setter.id)
    return {
        "closer": closer.id,
        "closer2": closer2.id,
        "setter": setter.id,
        "lead": lead.id,
        "call": call.id,
        "meet": (call.conferencing_link or "").replace("http://closerdesk.test", ""),
    }


async def _api_rows(client: httpx.AsyncClient, org: Org, ids: Ids) -> Ids:
    product = await _post(client, org, "/v1/products", {"name": "Program", "price": 100_000})
    payment = await _post(
        client,
        org,
        "/v1/payments",
        {"amount": 100_000, "provider": "stripe", "lead_id": ids["lead"], "call_id": ids["call"]},
    )
    block = await _post(client, org, f"/v1/team/{ids['closer']}/busy-blocks", _busy_range())
    link = await _post(
        client, org, "/v1/booking-links", _link_body(ids["closer"], f"link-{ulid().lower()}")
    )
    # A held slot: the link's first offered start in the coming week (its host works Mondays).
    r = await client.get(
        f"/v1/booking-links/{link['id']}/slots",
        headers=org.headers,
        params={"start": _future(1), "end": _future(9)},
    )
    reserved_start = r.json()["data"][0]["start"]
    reservation = await _post(
        client, org, f"/v1/booking-links/{link['id']}/reservations", {"start": reserved_start}
    )
    webhook = await _post(
        client,
        org,
        "/v1/webhooks",
        {"target_url": "https://93.184.215.14/hooks", "event_types": ["lead.created"]},
    )
    await _post(client, org, "/v1/leads", {"email": f"hooked-{ulid().lower()}@example.com"})
    r = await client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=org.headers)
    deliveries = r.json()["data"]
    assert deliveries, r.text
    return {
        **ids,
        "product": product["id"],
        "payment": payment["id"],
        "busy": block["id"],
        "webhook": webhook["id"],
        "delivery": deliveries[0]["id"],
        "booking_link": link["id"],
        "reservation": reservation["id"],
        "reserved_start": reserved_start,
    }


@pytest.fixture
async def two_orgs(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, other_org: Org
) -> tuple[Ids, Ids]:
    own = await _api_rows(client, org, await _rows(session, org))
    theirs = await _api_rows(client, other_org, await _rows(session, other_org))
    return own, theirs


def _missing() -> Ids:
    """Ids of every kind that exist in no organization."""
    return {
        "call": new_id("call"),
        "lead": new_id("lead"),
        "member": f"user_{ulid()}",
        "product": new_id("prod"),
        "payment": new_id("pay"),
        "busy": new_id("busy"),
        "webhook": new_id("wh"),
        "delivery": new_id("dlv"),
        "booking_link": new_id("bl"),
        "reservation": new_id("rsv"),
    }


def _foreign(theirs: Ids) -> Ids:
    return {**theirs, "member": theirs["closer"]}


async def _snapshot(
    client: httpx.AsyncClient, database: Database, org: Org, ids: Ids
) -> dict[str, Any]:
    """Everything an organization can see of its rows, plus row counts per table."""
    h = org.headers
    gets = {
        "call": f"/v1/calls/{ids['call']}",
        "history": f"/v1/calls/{ids['call']}/history",
        "lead": f"/v1/leads/{ids['lead']}",
        "closer": f"/v1/team/{ids['closer']}",
        "closer2": f"/v1/team/{ids['closer2']}",
        "setter": f"/v1/team/{ids['setter']}",
        "team": "/v1/team",
        "blocks": f"/v1/team/{ids['closer']}/busy-blocks",
        "product": f"/v1/products/{ids['product']}",
        "payment": f"/v1/payments/{ids['payment']}",
        "payments": "/v1/payments",
        "calls": "/v1/calls",
        "leads": "/v1/leads",
        "booking_link": f"/v1/booking-links/{ids['booking_link']}",
        "booking_links": "/v1/booking-links",
        "webhook": f"/v1/webhooks/{ids['webhook']}",
        "deliveries": f"/v1/webhooks/{ids['webhook']}/deliveries",
    }
    snap: dict[str, Any] = {}
    for name, url in gets.items():
        r = await client.get(url, headers=h)
        assert r.status_code == 200, (name, r.text)
        snap[name] = r.json()["data"]
    snap["meet"] = (await client.get(ids["meet"])).status_code
    async with database.reader() as s:
        for model in (
            BookingLink,
            TeamMember,
            CalendarConnection,
            CalendarEvent,
            ConferencingLink,
            BusyBlock,
            Lead,
            Product,
            Call,
            CallEvent,
            Payment,
            SlotReservation,
            WebhookEvent,
        ):
            count = await s.scalar(
                select(func.count()).select_from(model).where(model.organization_id == org.id)
            )
            snap[f"rows.{model.__tablename__}"] = count
    return snap


async def _send(
    client: httpx.AsyncClient, org: Org, probe: Probe, own: Ids, x: str
) -> httpx.Response:
    url, body, params = probe.build(own, x)
    return await client.request(probe.method, url, headers=org.headers, json=body, params=params)


async def test_foreign_ids_answer_exactly_like_missing_ones(
    client: httpx.AsyncClient,
    database: Database,
    org: Org,
    other_org: Org,
    two_orgs: tuple[Ids, Ids],
) -> None:
    own, theirs = two_orgs
    before_theirs = await _snapshot(client, database, other_org, theirs)
    before_own = await _snapshot(client, database, org, own)
    foreign, missing = _foreign(theirs), _missing()

    failures: list[str] = []
    for probe in PROBES:
        r_foreign = await _send(client, org, probe, own, foreign[probe.kind])
        r_missing = await _send(client, org, probe, own, missing[probe.kind])
        seen = []
        for r in (r_foreign, r_missing):
            code = (
                r.json().get("code")
                if r.headers.get("content-type", "").startswith("application/json")
                else None
            )
            seen.append((r.status_code, code))
        if seen[0] != seen[1]:
            failures.append(f"{probe.label}: foreign {seen[0]} != missing {seen[1]}")
        elif seen[0] != (404, probe.code):
            failures.append(f"{probe.label}: {seen[0]}, expected (404, {probe.code!r})")
        else:
            # Same words too (modulo the id itself, which a message may echo).
            words = [
                r.json()["error"].replace(x, "<id>")
                for r, x in ((r_foreign, foreign[probe.kind]), (r_missing, missing[probe.kind]))
            ]
            assert words[0] == words[1], probe.label
    assert not failures, "\n".join(failures)

    assert await _snapshot(client, database, other_org, theirs) == before_theirs
    assert await _snapshot(client, database, org, own) == before_own


async def test_own_ids_reach_the_handlers(
    client: httpx.AsyncClient, org: Org, two_orgs: tuple[Ids, Ids]
) -> None:
    """The probes are meaningful: with the caller's own id, none of them answers that 404."""
    own, _ = two_orgs
    own_ids = {**own, "member": own["closer2"]}
    for probe in PROBES:
        if probe.method in ("GET",) or probe.kind in ("member", "call", "lead", "product"):
            r = await _send(client, org, probe, own, own_ids[probe.kind])
            body = r.json() if r.status_code >= 400 else {}
            assert (r.status_code, body.get("code")) != (404, probe.code), probe.label


async def test_lists_and_filters_never_show_another_org(
    client: httpx.AsyncClient, org: Org, two_orgs: tuple[Ids, Ids]
) -> None:
    _, theirs = two_orgs
    checks = [
        ("/v1/calls", {"lead_id": theirs["lead"]}),
        ("/v1/calls", {"closer_id": theirs["closer"]}),
        ("/v1/calls", {"setter_id": theirs["setter"]}),
        ("/v1/calls", {"booking_link_id": theirs["booking_link"]}),
        ("/v1/booking-links", {}),
        ("/v1/payments", {"lead_id": theirs["lead"]}),
        ("/v1/payments", {"call_id": theirs["call"]}),
        ("/v1/leads", {}),
        ("/v1/team", {}),
        ("/v1/products", {}),
        ("/v1/payments", {}),
        ("/v1/calls", {}),
        ("/v1/webhooks", {}),
    ]
    foreign_values = {v for k, v in theirs.items() if k not in ("meet", "reserved_start")}
    for url, params in checks:
        r = await client.get(url, headers=org.headers, params=params)
        assert r.status_code == 200, r.text
        for item in r.json()["data"]:
            assert item["id"] not in foreign_values, (url, params)
            assert not (set(map(str, item.values())) & foreign_values), (url, params, item)
        if params:
            assert r.json()["data"] == [], (url, params)


async def test_ids_and_emails_of_another_org_are_free(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    """Uniqueness is per organization: taking another org's member id or email reveals nothing."""
    theirs = await create_member(session, other_org)
    their_lead = await create_lead(session, other_org)
    r = await client.post(
        "/v1/team",
        headers=org.headers,
        json={"id": theirs.id, "name": "Twin", "email": theirs.email, "role": "closer"},
    )
    assert r.status_code == 201, r.text
    r = await client.post("/v1/leads", headers=org.headers, json={"email": their_lead.email})
    assert r.status_code == 201, r.text
    # The other organization's member is untouched.
    got = (await client.get(f"/v1/team/{theirs.id}", headers=other_org.headers)).json()["data"]
    assert got["name"] == theirs.name
