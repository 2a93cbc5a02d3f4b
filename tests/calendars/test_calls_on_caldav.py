"""End to end: closers connected to real CalDAV servers (Radicale without and with auth,
Xandikos), driven through the Partner API on the suite's database.

What a sales team sees (docs/calendars.md): a foreign event on the closer's own calendar blocks
a reassign (live check) and, after a sync, the slots; a reassign moves the event from the old
closer's calendar to the new one's with the new join link; reschedule moves it; cancel removes
it; a server that is down or refuses the password takes the documented failure path.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import icalendar
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.cleanup import retry_due_cleanups
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import (
    CalendarBusy,
    CalendarCleanup,
    CalendarConnection,
    Call,
    TeamMember,
    WebhookEvent,
)
from closerdesk.providers import Providers
from closerdesk.worker import CalendarWorker
from tests.booking_links.helpers import create_link, host, schedule
from tests.calendars.helpers import at
from tests.calendars.servers import DavCalendar, DavServer, weekly_event
from tests.envelopes import error, ok
from tests.factories import Org, create_lead, create_member
from tests.webhooks.test_events import documented_examples, shape


async def connect(
    client: httpx.AsyncClient, org: Org, member: TeamMember, calendar: DavCalendar, **extra: str
) -> dict[str, Any]:
    body = {"provider": "caldav", **calendar.credentials(), **extra}
    data: dict[str, Any] = ok(
        await client.put(f"/v1/team/{member.id}/calendar", headers=org.headers, json=body)
    )
    return data


async def closer_on(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    server: DavServer,
    **member: Any,
) -> tuple[TeamMember, DavCalendar]:
    """A closer whose calendar is a fresh collection on ``server``."""
    closer = await create_member(session, org, calendar=False, **member)
    calendar = server.new_calendar(server.new_user())
    await connect(client, org, closer, calendar)
    return closer, calendar


async def book(
    client: httpx.AsyncClient, org: Org, closer: TeamMember, lead_id: str, start: datetime
) -> dict[str, Any]:
    body = {
        "lead_id": lead_id,
        "closer_id": closer.id,
        "scheduled_at": isoformat_z(start),
        "duration_minutes": 45,
        "notes": "internal: budget 40k, decision maker is the CFO",
    }
    data: dict[str, Any] = ok(await client.post("/v1/calls", headers=org.headers, json=body), 201)
    return data


def event_of(calendar: DavCalendar, uid: str) -> icalendar.Event | None:
    """The VEVENT with ``uid`` on the server, read directly (None when gone)."""
    for href in calendar.hrefs():
        text = calendar.get(href)
        if text is None:
            continue
        for component in icalendar.Calendar.from_ical(text).walk("VEVENT"):
            if str(component.get("UID")) == uid:
                return component
    return None


async def sync(client: httpx.AsyncClient, org: Org, member: TeamMember) -> dict[str, Any]:
    data: dict[str, Any] = ok(
        await client.post(f"/v1/team/{member.id}/calendar/sync", headers=org.headers)
    )
    return data


# --- connecting ----------------------------------------------------------------------------------
async def test_connect_answers_no_credential_and_a_pending_mirror(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    dav_server: DavServer,
    database: Database,
) -> None:
    closer = await create_member(session, org, calendar=False)
    user = dav_server.new_user()
    calendar = dav_server.new_calendar(user)
    # The server's root: discovery finds the user's calendar.
    data = await connect(client, org, closer, calendar, url=dav_server.root_url)
    assert data["provider"] == "caldav"
    assert data["status"] == "valid"
    assert data["sync_status"] == "pending"
    # A calendar of this user (Xandikos's default user also has its own default calendar).
    assert data["calendar_id"].startswith(user.home_url)
    assert data["calendar_id"] != user.home_url
    shown = ok(await client.get(f"/v1/team/{closer.id}/calendar", headers=org.headers))
    assert shown == data
    async with database.reader() as s:
        stored = await s.scalar(
            text("SELECT credentials FROM calendar_connections WHERE id = :id"), {"id": data["id"]}
        )
    assert stored.startswith("gAAAAA")  # a Fernet token: encrypted at rest
    if user.password:
        assert user.password not in str(shown)
        assert user.password not in stored
    synced = await sync(client, org, closer)
    assert synced["sync_status"] == "ok"
    assert synced["last_synced_at"] is not None


async def test_connect_with_a_wrong_password_is_400_and_saves_nothing(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, radicale_auth: DavServer
) -> None:
    closer = await create_member(session, org, calendar=False)
    calendar = radicale_auth.new_calendar(radicale_auth.new_user())
    body = {"provider": "caldav", **calendar.credentials(), "password": "not-the-password"}
    r = await client.put(f"/v1/team/{closer.id}/calendar", headers=org.headers, json=body)
    refusal = error(r, 400, "CALENDAR_AUTH_FAILED")
    assert "not-the-password" not in r.text
    assert refusal["error"] == "CalDAV server refused the credentials: 401 Unauthorized"
    error(
        await client.get(f"/v1/team/{closer.id}/calendar", headers=org.headers),
        404,
        "CALENDAR_NOT_FOUND",
    )


# --- a foreign event blocks the closer -----------------------------------------------------------
async def test_foreign_events_block_reassign_live_and_slots_after_a_sync(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, dav_server: DavServer
) -> None:
    alice, _ = await closer_on(client, session, org, dav_server, time_zone="UTC")
    bruno, bruno_calendar = await closer_on(client, session, org, dav_server, time_zone="UTC")
    lead = await create_lead(session, org)
    start = at(3, 14)
    call = await book(client, org, alice, lead.id, start)
    weekly_call = await book(client, org, alice, lead.id, start + timedelta(days=7, hours=2))

    # A plain event on Bruno's own calendar, put straight into the server.
    bruno_calendar.put_event(start - timedelta(minutes=30), start + timedelta(minutes=30))
    # A weekly event whose second occurrence meets the later call.
    weekly_start = start - timedelta(days=7) + timedelta(hours=2)
    bruno_calendar.put_ics(
        weekly_event(weekly_start, weekly_start + timedelta(hours=1), count=4, uid="weekly-1")
    )

    r = await client.post(
        f"/v1/calls/{call['id']}/reassign-closer",
        headers=org.headers,
        json={"new_closer_id": bruno.id},
    )
    conflicts = error(r, 409, "CLOSER_CONFLICT")["details"]["conflicts"]
    # The busy time within the call (14:00-14:45), as the server reports it: times only.
    assert conflicts == [
        {
            "start": isoformat_z(start),
            "end": isoformat_z(start + timedelta(minutes=30)),
            "source": "calendar",
        }
    ]
    assert "Dentist" not in r.text  # times only, never the other event's title
    r = await client.post(
        f"/v1/calls/{weekly_call['id']}/reassign-closer",
        headers=org.headers,
        json={"new_closer_id": bruno.id},
    )
    [conflict] = error(r, 409, "CLOSER_CONFLICT")["details"]["conflicts"]
    assert conflict["source"] == "calendar"
    assert conflict["start"] == isoformat_z(start + timedelta(days=7, hours=2))

    # Slots: a link hosted by Bruno alone offers the foreign time until the mirror knows it.
    link = await create_link(client, org, [host(bruno.id, sched=schedule("UTC", "00:00", "23:59"))])
    window = {"start": isoformat_z(at(3, 0)), "end": isoformat_z(at(4, 0))}

    async def offered() -> set[str]:
        r = await client.get(
            f"/v1/booking-links/{link['id']}/slots", headers=org.headers, params=window
        )
        return {s["start"] for s in ok(r)}

    foreign_slots = {isoformat_z(start - timedelta(minutes=30)), isoformat_z(start)}
    assert foreign_slots <= await offered()
    await sync(client, org, bruno)
    assert not foreign_slots & await offered()
    busy = ok(
        await client.get(
            f"/v1/team/{bruno.id}/busy",
            headers=org.headers,
            params={"start": isoformat_z(at(9, 0)), "end": isoformat_z(at(11, 0))},
        )
    )
    second = weekly_start + timedelta(days=14)
    assert {"start": isoformat_z(second), "end": isoformat_z(second + timedelta(hours=1))} in busy


# --- the call's event follows the call -----------------------------------------------------------
async def test_reassign_reschedule_cancel_move_the_event_between_calendars(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, dav_server: DavServer
) -> None:
    alice, alice_calendar = await closer_on(client, session, org, dav_server)
    bruno, bruno_calendar = await closer_on(client, session, org, dav_server)
    lead = await create_lead(session, org, full_name="Lena Lead")
    start = at(4, 15)
    call = await book(client, org, alice, lead.id, start)
    uid = call["calendar_event_id"]
    booked = event_of(alice_calendar, uid)
    assert booked is not None
    assert str(booked["LOCATION"]) == call["conferencing_link"]
    assert "budget" not in booked.to_ical().decode()  # the call's notes never reach an event

    moved = ok(
        await client.post(
            f"/v1/calls/{call['id']}/reassign-closer",
            headers=org.headers,
            json={"new_closer_id": bruno.id},
        )
    )
    assert moved["old_event_orphaned"] is False
    assert event_of(alice_calendar, uid) is None
    new_event = event_of(bruno_calendar, moved["new_event_id"])
    assert new_event is not None
    assert str(new_event["LOCATION"]) == moved["conferencing_link"] != call["conferencing_link"]
    assert new_event.decoded("DTSTART") == start

    later = start + timedelta(days=1, hours=1)
    ok(
        await client.post(
            f"/v1/calls/{call['id']}/reschedule",
            headers=org.headers,
            json={"scheduled_at": isoformat_z(later)},
        )
    )
    rescheduled = event_of(bruno_calendar, moved["new_event_id"])
    assert rescheduled is not None
    assert rescheduled.decoded("DTSTART") == later
    assert int(rescheduled["SEQUENCE"]) > int(new_event["SEQUENCE"])

    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))
    assert event_of(bruno_calendar, moved["new_event_id"]) is None
    assert bruno_calendar.hrefs() == []


# --- failures ------------------------------------------------------------------------------------
async def test_new_calendar_down_mid_reassign_is_502_and_changes_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    radicale: DavServer,
    xandikos: DavServer,
) -> None:
    alice, alice_calendar = await closer_on(client, session, org, radicale)
    bruno, _ = await closer_on(client, session, org, xandikos)
    lead = await create_lead(session, org)
    call = await book(client, org, alice, lead.id, at(5, 13))
    with xandikos.stopped():
        r = await client.post(
            f"/v1/calls/{call['id']}/reassign-closer",
            headers=org.headers,
            json={"new_closer_id": bruno.id},
        )
        error(r, 502, "CALENDAR_PROVIDER_ERROR")
    after = ok(await client.get(f"/v1/calls/{call['id']}", headers=org.headers))
    assert after == call
    assert event_of(alice_calendar, call["calendar_event_id"]) is not None


async def test_old_calendar_down_mid_reassign_orphans_the_event_until_the_retry(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    radicale: DavServer,
    xandikos: DavServer,
    database: Database,
    providers: Providers,
) -> None:
    alice, alice_calendar = await closer_on(client, session, org, radicale)
    bruno, bruno_calendar = await closer_on(client, session, org, xandikos)
    lead = await create_lead(session, org)
    call = await book(client, org, alice, lead.id, at(5, 16))
    old_uid = call["calendar_event_id"]
    with radicale.stopped():
        moved = ok(
            await client.post(
                f"/v1/calls/{call['id']}/reassign-closer",
                headers=org.headers,
                json={"new_closer_id": bruno.id},
            )
        )
        assert moved["old_event_orphaned"] is True
        assert event_of(bruno_calendar, moved["new_event_id"]) is not None
        async with database.reader() as s:
            [cleanup] = (await s.scalars(select(CalendarCleanup))).all()
        assert cleanup.event_id == old_uid
        assert cleanup.resolved_at is None
        assert cleanup.attempts == 1
    assert event_of(alice_calendar, old_uid) is not None  # still there: it was down
    async with database.writer() as s:
        row = await s.get(CalendarCleanup, cleanup.id)
        assert row is not None
        row.next_attempt_at = utcnow()
        await s.commit()
    assert await retry_due_cleanups(database, providers) == 1
    assert event_of(alice_calendar, old_uid) is None


async def test_a_changed_password_turns_the_connection_invalid(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    radicale_auth: DavServer,
    database: Database,
) -> None:
    alice, alice_calendar = await closer_on(client, session, org, radicale_auth)
    bruno, _ = await closer_on(client, session, org, radicale_auth)
    lead = await create_lead(session, org)
    call = await book(client, org, bruno, lead.id, at(6, 14))
    assert alice_calendar.user.username is not None
    radicale_auth.set_password(alice_calendar.user.username, "changed-on-the-server")

    # The live check before the reassign meets the refusal: the connection turns invalid.
    r = await client.post(
        f"/v1/calls/{call['id']}/reassign-closer",
        headers=org.headers,
        json={"new_closer_id": alice.id},
    )
    error(r, 409, "CALENDAR_NOT_CONNECTED")
    shown = ok(await client.get(f"/v1/team/{alice.id}/calendar", headers=org.headers))
    assert shown["status"] == "invalid"
    assert shown["invalid_reason"] == "CalDAV server refused the credentials: 401 Unauthorized"
    async with database.reader() as s:
        events = (
            await s.scalars(
                select(WebhookEvent).where(WebhookEvent.type == "calendar.connection_invalid")
            )
        ).all()
    assert len(events) == 1
    assert events[0].payload["data"]["connection"]["member_id"] == alice.id
    assert "password" not in str(events[0].payload)
    documented = documented_examples()["calendar.connection_invalid"]
    assert shape(documented["data"]) == shape(events[0].payload["data"])
    # New bookings of Alice answer 409 now, without asking the server.
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead_id": lead.id,
            "closer_id": alice.id,
            "scheduled_at": isoformat_z(at(7, 14)),
            "duration_minutes": 30,
        },
    )
    error(r, 409, "CALENDAR_NOT_CONNECTED")
    async with database.reader() as s:
        assert (await s.scalar(select(Call).where(Call.id == call["id"]))).closer_id == bruno.id


async def test_a_refused_sync_turns_the_connection_invalid(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, radicale_auth: DavServer
) -> None:
    alice, calendar = await closer_on(client, session, org, radicale_auth)
    assert calendar.user.username is not None
    radicale_auth.set_password(calendar.user.username, "rotated")
    shown = await sync(client, org, alice)
    assert shown["status"] == "invalid"
    assert shown["sync_status"] == "failed"


async def test_a_sync_while_the_server_is_down_keeps_the_mirror(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    radicale: DavServer,
    database: Database,
) -> None:
    alice, calendar = await closer_on(client, session, org, radicale)
    calendar.put_event(at(3, 10), at(3, 11))
    await sync(client, org, alice)
    with radicale.stopped():
        shown = await sync(client, org, alice)
    assert shown["status"] == "valid"
    assert shown["sync_status"] == "failed"
    assert shown["sync_error"]
    async with database.reader() as s:
        rows = (await s.scalars(select(CalendarBusy))).all()
    assert [(r.starts_at, r.ends_at) for r in rows] == [(at(3, 10), at(3, 11))]


@pytest.fixture(autouse=True)
def _servers_up(radicale: DavServer, xandikos: DavServer) -> None:
    """A test that stopped a server and failed leaves it down: start it for the next one."""
    for server in (radicale, xandikos):
        if server.process is None:
            server.start()


async def test_round_robin_passes_over_a_host_whose_calendar_refuses(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    radicale_auth: DavServer,
    database: Database,
) -> None:
    """Round robin's first choice (high priority) has a changed password: the call goes to the
    next host, and the refusing connection turns invalid with the booking."""
    alice, alice_calendar = await closer_on(client, session, org, radicale_auth)
    bruno, bruno_calendar = await closer_on(client, session, org, radicale_auth)
    always = schedule("UTC", "00:00", "23:59")
    link = await create_link(
        client, org, [host(alice.id, priority="high", sched=always), host(bruno.id, sched=always)]
    )
    assert alice_calendar.user.username is not None
    radicale_auth.set_password(alice_calendar.user.username, "changed-on-the-server")
    lead = await create_lead(session, org)
    booked = ok(
        await client.post(
            "/v1/calls",
            headers=org.headers,
            json={
                "lead_id": lead.id,
                "booking_link_id": link["id"],
                "scheduled_at": isoformat_z(at(3, 11)),
            },
        ),
        201,
    )
    assert booked["closer_id"] == bruno.id
    assert event_of(bruno_calendar, booked["calendar_event_id"]) is not None
    shown = ok(await client.get(f"/v1/team/{alice.id}/calendar", headers=org.headers))
    assert shown["status"] == "invalid"
    async with database.reader() as s:
        types = (await s.scalars(select(WebhookEvent.type))).all()
    assert types.count("calendar.connection_invalid") == 1


async def test_the_worker_keeps_the_mirror_fresh(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    dav_server: DavServer,
    database: Database,
    settings: Settings,
    providers: Providers,
) -> None:
    """The worker syncs a connection never synced, then leaves it alone until it is due again
    (``CLOSERDESK_CALENDAR_SYNC_SECONDS``), and then picks up what changed."""
    alice, calendar = await closer_on(client, session, org, dav_server)
    dentist = calendar.put_event(at(3, 10), at(3, 11))
    worker = CalendarWorker(database, settings, providers)

    async def mirrored() -> list[tuple[datetime, datetime]]:
        async with database.reader() as s:
            rows = (await s.scalars(select(CalendarBusy).order_by(CalendarBusy.starts_at))).all()
        return [(r.starts_at, r.ends_at) for r in rows]

    _, [first] = await worker.run_once()
    assert first.status == "ok"
    assert first.full is True
    assert await mirrored() == [(at(3, 10), at(3, 11))]

    calendar.put_event(at(4, 9), at(4, 10))
    calendar.delete(dentist)
    assert (await worker.run_once())[1] == []  # not due yet: nothing asked of the server
    assert await mirrored() == [(at(3, 10), at(3, 11))]

    async with database.writer() as s:  # the sync interval has passed
        await s.execute(
            update(CalendarConnection).values(
                last_synced_at=utcnow() - timedelta(seconds=settings.calendar_sync_seconds + 1)
            )
        )
        await s.commit()
    _, [second] = await worker.run_once()
    assert second.status == "ok"
    assert second.full is False
    assert await mirrored() == [(at(4, 9), at(4, 10))]
    shown = ok(await client.get(f"/v1/team/{alice.id}/calendar", headers=org.headers))
    assert shown["sync_status"] == "ok"


async def test_an_old_calendar_that_refuses_the_removal_turns_invalid(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    radicale_auth: DavServer,
    database: Database,
) -> None:
    """The reassign commits; removing the old event meets a changed password: the event is
    orphaned (a clean-up row keeps it), and the old calendar's connection turns invalid."""
    alice, alice_calendar = await closer_on(client, session, org, radicale_auth)
    bruno, _ = await closer_on(client, session, org, radicale_auth)
    lead = await create_lead(session, org)
    call = await book(client, org, alice, lead.id, at(6, 9))
    assert alice_calendar.user.username is not None
    radicale_auth.set_password(alice_calendar.user.username, "changed-on-the-server")
    moved = ok(
        await client.post(
            f"/v1/calls/{call['id']}/reassign-closer",
            headers=org.headers,
            json={"new_closer_id": bruno.id},
        )
    )
    assert moved["old_event_orphaned"] is True
    shown = ok(await client.get(f"/v1/team/{alice.id}/calendar", headers=org.headers))
    assert shown["status"] == "invalid"
    assert shown["invalid_reason"] == "CalDAV server refused the credentials: 401 Unauthorized"
    async with database.reader() as s:
        [cleanup] = (await s.scalars(select(CalendarCleanup))).all()
        types = (await s.scalars(select(WebhookEvent.type))).all()
    assert cleanup.event_id == call["calendar_event_id"]
    assert cleanup.resolved_at is None
    assert cleanup.attempts == 1
    assert "401" in (cleanup.last_error or "")
    assert types.count("calendar.connection_invalid") == 1


async def test_round_robin_passes_over_a_host_whose_server_is_down(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    radicale: DavServer,
    xandikos: DavServer,
) -> None:
    """The first choice's server does not answer: the next host, confirmed live, gets the call
    (a host whose server is down cannot block a link's bookings)."""
    alice, _ = await closer_on(client, session, org, radicale)
    bruno, _ = await closer_on(client, session, org, xandikos)
    always = schedule("UTC", "00:00", "23:59")
    link = await create_link(
        client, org, [host(alice.id, priority="high", sched=always), host(bruno.id, sched=always)]
    )
    lead = await create_lead(session, org)
    body = {
        "lead_id": lead.id,
        "booking_link_id": link["id"],
        "scheduled_at": isoformat_z(at(3, 9)),
    }
    with radicale.stopped():
        booked = ok(await client.post("/v1/calls", headers=org.headers, json=body), 201)
        assert booked["closer_id"] == bruno.id
        with xandikos.stopped():  # nobody can be confirmed: 502, nothing booked
            body["scheduled_at"] = isoformat_z(at(3, 13))
            r = await client.post("/v1/calls", headers=org.headers, json=body)
            error(r, 502, "CALENDAR_PROVIDER_ERROR")
    shown = ok(await client.get(f"/v1/team/{alice.id}/calendar", headers=org.headers))
    assert shown["status"] == "valid"  # down is not refused


async def test_moving_a_closer_with_upcoming_calls_to_another_calendar_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, radicale_auth: DavServer
) -> None:
    alice, calendar = await closer_on(client, session, org, radicale_auth)
    lead = await create_lead(session, org)
    await book(client, org, alice, lead.id, at(5, 10))
    r = await client.put(
        f"/v1/team/{alice.id}/calendar", headers=org.headers, json={"provider": "builtin"}
    )
    error(r, 409, "MEMBER_HAS_UPCOMING_CALLS")
    other = radicale_auth.new_calendar(calendar.user)
    body = {"provider": "caldav", **calendar.credentials(url=other.url)}
    r = await client.put(f"/v1/team/{alice.id}/calendar", headers=org.headers, json=body)
    error(r, 409, "MEMBER_HAS_UPCOMING_CALLS")
    # New credentials for the same calendar are always accepted (the fix for a changed password).
    assert calendar.user.username is not None
    radicale_auth.set_password(calendar.user.username, "new-password")
    body = {"provider": "caldav", **calendar.credentials(), "password": "new-password"}
    data = ok(await client.put(f"/v1/team/{alice.id}/calendar", headers=org.headers, json=body))
    assert data["status"] == "valid"


async def test_a_password_inside_the_url_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, org: Org
) -> None:
    closer = await create_member(session, org, calendar=False)
    body = {"provider": "caldav", "url": "https://alice:hunter2@caldav.example.com/"}
    r = await client.put(f"/v1/team/{closer.id}/calendar", headers=org.headers, json=body)
    refusal = error(r, 400, "VALIDATION_ERROR")
    assert "hunter2" not in r.text
    assert refusal["details"][0]["field"] == "caldav.url"  # the provider's field


async def test_connect_to_a_server_that_does_not_answer_is_502_and_sync_without_a_calendar_404(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, radicale: DavServer
) -> None:
    closer = await create_member(session, org, calendar=False)
    calendar = radicale.new_calendar(radicale.new_user())
    with radicale.stopped():
        r = await client.put(
            f"/v1/team/{closer.id}/calendar",
            headers=org.headers,
            json={"provider": "caldav", **calendar.credentials()},
        )
        error(r, 502, "CALENDAR_PROVIDER_ERROR")
    r = await client.post(f"/v1/team/{closer.id}/calendar/sync", headers=org.headers)
    error(r, 404, "CALENDAR_NOT_FOUND")
