"""Generate the example bodies of docs/webhooks.md from real payloads.

Runs the demo organization (``closerdesk demo``) in a throw-away SQLite database, subscribes an
endpoint to every event type, performs each operation that fires an event through the Partner
API, and prints (or, with ``--write``, splices into docs/webhooks.md between the ``examples``
markers) one recorded body per event type, exactly as the dispatcher sends it.

    .venv/bin/python scripts/webhook_examples.py --write
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from closerdesk.app import create_app
from closerdesk.calendars.connections import mark_invalid
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.demo import load_demo
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.migrate import upgrade
from closerdesk.models import CalendarConnection, WebhookEvent
from closerdesk.webhooks.dispatcher import Dispatcher, body_of
from closerdesk.webhooks.events import EventType

DOCS = Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"
BEGIN, END = "<!-- examples:begin -->", "<!-- examples:end -->"

WHEN = {
    "call.booked": "a call is booked (`POST /v1/calls`). Through a booking link with "
    "`requires_confirmation` the call is `pending` (no calendar event or meeting link yet) until "
    "`call.confirmed` or `call.declined`.",
    "call.updated": "fields of a call change in place (`PATCH /v1/calls/{id}`, or a payment "
    "linked to the call).",
    "call.rescheduled": "a call moves to a new time (`POST /v1/calls/{id}/reschedule`).",
    "call.cancelled": "a call is cancelled (`POST /v1/calls/{id}/cancel`).",
    "call.closer_reassigned": "a call gets another closer (`POST /v1/calls/{id}/reassign-closer`"
    ", or a reschedule with `new_closer_id`). Carries everything needed to email the lead: the "
    "reassign response fields, `reason`, `scheduled_at`, `duration_minutes`, `time_zone`, the "
    "new closer's name and email, the new conferencing link, the lead's contact and who did it. "
    "`assignment` is `manual` or `round_robin` (auto-reassign). The event is written with the "
    "change, before the old calendar event is removed, so `old_event_orphaned` is always "
    "`false` here; the API response says whether the removal failed (it is then retried).",
    "call.outcome_set": "an outcome is set on a call (`POST /v1/calls/{id}/outcome`).",
    "call.no_show": "the outcome set is `no_show` (sent together with `call.outcome_set`, same "
    "`data`), or a call becomes `no_show` because its lead was marked absent (sent with "
    "`call.absence_marked`).",
    "lead.created": "a lead is created (`POST /v1/leads`, or booking with an inline new lead). "
    "`data.lead` is the lead object, as `GET /v1/leads/{id}` answers it.",
    "lead.updated": "fields of a lead change (`PATCH /v1/leads/{id}`, or its status moving to "
    "`booked` when its first call is booked).",
    "payment.recorded": "a payment is recorded (`POST /v1/payments`).",
    "calendar.connection_invalid": "a closer's calendar refuses closerdesk's credentials "
    "(HTTP 401/403 while placing a call, removing an event or syncing; see docs/calendars.md). "
    "Sent once per refusal: the connection is `invalid` until it is connected again, and new "
    "calls for the closer answer `409 CALENDAR_NOT_CONNECTED`. Never carries a credential.",
    "webhook.failing": "another subscription of the organization has failed every attempt "
    "for an hour (once per run of failures; a success ends the run). `data.webhook` is that "
    "subscription as `GET /v1/webhooks/{id}` answers it (never its secret), `failing_since` "
    "when the run began, `last_error` the last attempt's error or HTTP status. Never sent to "
    "the failing subscription itself.",
    "webhook.disabled": "closerdesk disables another subscription of the organization (its "
    "target answered `410 Gone`, or every attempt failed for 5 days); `reason` says which. "
    "Not sent when a subscription is disabled through the API, nor to the disabled one.",
    "ping": "`POST /v1/webhooks/{id}/test` is called; sent to that subscription only.",
    "call.absence_marked": "someone missed a call that has started (`POST /v1/calls/{id}/"
    "absence`; docs/sales-floor.md, \"Absence\"). `absence` is what the request said; the call "
    "is `no_show` when the lead was absent (`call.no_show` is sent too when the status became "
    "`no_show`) and has `host_no_show: true` when the host was.",
    "call.confirmed": "a pending call is confirmed (`POST /v1/calls/{id}/confirm`; "
    'docs/sales-floor.md, "Confirmation"). `data.call` is `scheduled` now, with its '
    "calendar event and conferencing link.",
    "call.declined": "a pending call is declined (`POST /v1/calls/{id}/decline`); its slot is "
    "free again. `reason` and `reason_code` are the request's.",
}


def ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()["data"]


async def collect(url: str) -> dict[str, dict[str, Any]]:
    """One real payload per event type (the first recorded of each)."""
    settings = Settings(
        database_url=url,
        public_base_url="https://closerdesk.example.com",
        webhook_allow_private_targets=True,
        log_level="WARNING",
    )
    database = Database(url)
    demo = await load_demo(database, settings)
    app = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=app)
    h = {"Authorization": f"Bearer {demo.api_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        sub = ok(
            await client.post(
                "/v1/webhooks",
                headers=h,
                json={
                    "target_url": "http://127.0.0.1:9/closerdesk",
                    "event_types": ["*"],
                    "description": "CRM sync",
                },
            )
        )
        started = utcnow()
        lead = ok(
            await client.post(
                "/v1/leads",
                headers=h,
                json={
                    "email": "june@example.com",
                    "full_name": "June Okafor",
                    "phone": "+14155550142",
                    "time_zone": "America/Los_Angeles",
                    "metadata": {"utm_source": "newsletter", "crm_id": "0031x00000Hana"},
                },
            )
        )
        ok(
            await client.patch(
                f"/v1/leads/{lead['id']}", headers=h, json={"company": "Sato Studio"}
            )
        )
        start = (utcnow() + timedelta(days=6)).replace(hour=17, minute=0, second=0)
        ok(
            await client.post(
                "/v1/calls",
                headers=h,
                json={
                    "lead_id": lead["id"],
                    "closer_id": "user_chloe",
                    "setter_id": "user_sam",
                    "scheduled_at": isoformat_z(start.replace(microsecond=0)),
                    "duration_minutes": 45,
                    "utm_source": "newsletter",
                },
            )
        )
        ok(
            await client.patch(
                f"/v1/calls/{demo.reassign_call_id}",
                headers=h,
                json={"notes": "Wants the 12-week plan", "expected_deal_value": 650000},
            )
        )
        ok(
            await client.post(
                f"/v1/calls/{demo.reschedule_call_id}/reschedule",
                headers=h,
                json={
                    "scheduled_at": isoformat_z(demo.reschedule_to),
                    "reason": "Lead asked for a later slot",
                    "reason_code": "lead_requested",
                },
            )
        )
        ok(
            await client.post(
                f"/v1/calls/{demo.reassign_call_id}/reassign-closer",
                headers=h,
                json={
                    "new_closer_id": demo.reassign_to,
                    "reason": "Alice is out sick",
                    "reason_code": "closer_unavailable",
                },
            )
        )
        ok(
            await client.post(
                f"/v1/calls/{demo.cancel_call_id}/cancel",
                headers=h,
                json={"reason": "Lead bought elsewhere", "reason_code": "lead_requested"},
            )
        )
        past = ok(
            await client.post(
                f"/v1/calls/{demo.past_call_id}/outcome",
                headers=h,
                json={"status": "no_show", "notes": "Did not join; texted a new link"},
            )
        )
        ok(
            await client.post(
                "/v1/payments",
                headers=h,
                json={
                    "amount": 250000,
                    "currency": "USD",
                    "provider": "stripe",
                    "provider_payment_id": "pi_3QxDemo",
                    "lead_id": past["lead_id"],
                    "call_id": demo.past_call_id,
                },
            )
        )
        ok(
            await client.post(
                f"/v1/calls/{demo.past_call_id}/absence",
                headers=h,
                json={"host": True, "lead": False, "notes": "Alice's previous call overran"},
            )
        )
        await confirmation(client, h, lead["id"])
        ok(await client.post(f"/v1/webhooks/{sub['id']}/test", headers=h))
        await health_events(client, h, database, settings, lead["id"])
    # Chloe's calendar, as if it were a CalDAV calendar whose password was changed.
    async with database.writer() as session:
        connection = await session.scalar(
            select(CalendarConnection).where(
                CalendarConnection.organization_id == demo.organization_id,
                CalendarConnection.member_id == "user_chloe",
            )
        )
        if connection is None:
            raise RuntimeError("the demo has no calendar for user_chloe")
        connection.provider = "caldav"
        connection.calendar_id = (
            "https://caldav.fastmail.com/dav/calendars/user/chloe@demo.closerdesk.dev/Default/"
        )
        connection.sync_status, connection.last_synced_at = "ok", utcnow()
        await session.flush()
        await mark_invalid(
            session,
            demo.organization_id,
            connection.id,
            "CalDAV server refused the credentials: 401 Unauthorized",
        )
        await session.commit()
    async with database.reader() as session:
        events = list(
            await session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.created_at >= started)
                .order_by(WebhookEvent.id)
            )
        )
    await app.state.dispatcher.aclose()
    await database.dispose()
    examples: dict[str, dict[str, Any]] = {}
    for event in events:
        examples.setdefault(event.type, json.loads(body_of(event.payload)))
    missing = {e.value for e in EventType} - set(examples)
    if missing:
        raise RuntimeError(f"no example for {sorted(missing)}")
    return examples


async def confirmation(client: httpx.AsyncClient, h: dict[str, str], lead_id: str) -> None:
    """A booking link requiring confirmation; two pending calls, one confirmed, one declined."""
    weekly = [
        {"weekday": d, "start": "00:00", "end": "24:00"}
        for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    ]
    link = ok(
        await client.post(
            "/v1/booking-links",
            headers=h,
            json={
                "slug": "discovery-call",
                "title": "Discovery call",
                "duration_minutes": 30,
                "requires_confirmation": True,
                "hosts": [
                    {
                        "member_id": "user_bruno",
                        "schedule": {"time_zone": "Europe/Berlin", "weekly": weekly},
                    }
                ],
            },
        )
    )
    for days, action, body in (
        (8, "confirm", {}),
        (9, "decline", {"reason": "Outside our market", "reason_code": "not_qualified"}),
    ):
        start = (utcnow() + timedelta(days=days)).replace(hour=14, minute=0, second=0)
        pending = ok(
            await client.post(
                "/v1/calls",
                headers=h,
                json={
                    "lead_id": lead_id,
                    "closer_id": "user_bruno",
                    "booking_link_id": link["id"],
                    "scheduled_at": isoformat_z(start.replace(microsecond=0)),
                },
            )
        )
        ok(await client.post(f"/v1/calls/{pending['id']}/{action}", headers=h, json=body))


async def health_events(
    client: httpx.AsyncClient,
    h: dict[str, str],
    database: Database,
    settings: Settings,
    lead_id: str,
) -> None:
    """A second subscription watches the first one's health; both targets refuse connections.
    A dispatcher on a clock moved forward sees an hour of failures (``webhook.failing``), then
    five days of them (``webhook.disabled``), as every 12 hours the lead changes."""
    ok(
        await client.post(
            "/v1/webhooks",
            headers=h,
            json={
                "target_url": "http://127.0.0.1:9/ops-alerts",
                "event_types": ["webhook.failing", "webhook.disabled"],
                "description": "Ops alerts",
            },
        )
    )
    offset = timedelta()

    def clock() -> datetime:
        return utcnow() + offset

    dispatcher = Dispatcher(database, settings, clock=clock)
    try:
        await dispatcher.drain()
        offset += timedelta(minutes=61)
        await dispatcher.drain()
        for step in range(11):
            offset += timedelta(hours=12)
            ok(
                await client.patch(
                    f"/v1/leads/{lead_id}", headers=h, json={"company": f"Sato Studio {step}"}
                )
            )
            await dispatcher.drain()
    finally:
        await dispatcher.aclose()


def render(examples: dict[str, dict[str, Any]]) -> str:
    parts = [BEGIN, ""]
    for event_type in (e.value for e in EventType):
        parts += [
            f"### `{event_type}`",
            "",
            f"Sent when {WHEN[event_type]}",
            "",
            "```json",
            json.dumps(examples[event_type], indent=2, ensure_ascii=False),
            "```",
            "",
        ]
    parts.append(END)
    return "\n".join(parts)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/examples.db"
        upgrade(url)
        section = render(asyncio.run(collect(url)))
    if "--write" not in sys.argv:
        print(section)  # noqa: T201
        return
    text = DOCS.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOCS.write_text(head + section + tail, encoding="utf-8")
    print(f"wrote {len(section)} characters of examples into {DOCS}")  # noqa: T201


if __name__ == "__main__":
    main()
