"""End to end: closers on Google Calendar, Microsoft 365 and Nylas, through the Partner API.

None of these services can run here, so each is a local fake speaking its documented wire
format (``tests/calendars/fakes/``: Google Calendar API v3, Microsoft Graph v1.0, Nylas v3, and
RFC 6749 token endpoints); the fakes name their references. Every test runs against each
provider, on the suite's database (SQLite or PostgreSQL), with closerdesk's real provider
factory, unit of work, mirror, worker and webhook endpoints (``docs/calendars.md``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.app import create_app
from closerdesk.calendars import mirror
from closerdesk.calendars.push import renew_channels
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.time import isoformat_z
from closerdesk.models import CalendarBusy, CalendarConnection, TeamMember, WebhookEvent
from closerdesk.providers import Providers, default_providers
from tests.calendars.fakes.base import FakeApi
from tests.calendars.fakes.google import FakeGoogle
from tests.calendars.fakes.microsoft import FakeGraph
from tests.calendars.fakes.nylas import FakeNylas
from tests.calendars.helpers import at
from tests.envelopes import error, ok
from tests.factories import Org, create_lead, create_member

PROVIDERS = ("google", "microsoft", "nylas")
OAUTH = ("google", "microsoft")
TIMEOUT = 1.0
"""``CLOSERDESK_CALENDAR_TIMEOUT_SECONDS`` in these tests: a stalled fake trips it quickly."""


# --- the fakes and an app pointed at them --------------------------------------------------------
@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {
        "google": FakeGoogle(),
        "microsoft": FakeGraph(),
        "nylas": FakeNylas(),
    }
    for fake in started.values():
        fake.start()
    yield started
    for fake in started.values():
        fake.stop()


@pytest.fixture(autouse=True)
def _fresh_fakes(fakes: dict[str, Any]) -> None:
    for fake in fakes.values():
        fake.reset()


@pytest.fixture
def cloud_settings(settings: Settings, fakes: dict[str, Any]) -> Settings:
    overrides: dict[str, object] = {}
    for fake in fakes.values():
        overrides |= fake.settings_overrides()
    overrides |= {
        "calendar_timeout_seconds": TIMEOUT,
        "calendar_retry_seconds": 4.0,
        "public_base_url": "https://closerdesk.example.test",
    }
    return Settings.model_validate(settings.model_dump() | overrides)


@pytest.fixture
async def cloud(
    cloud_settings: Settings, database: Database
) -> AsyncIterator[tuple[httpx.AsyncClient, Providers]]:
    providers = default_providers(cloud_settings, database)
    app = create_app(cloud_settings, database=database, providers=providers)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, providers
    await providers.aclose()


@pytest.fixture
def client(cloud: tuple[httpx.AsyncClient, Providers]) -> httpx.AsyncClient:
    return cloud[0]


@pytest.fixture
def providers(cloud: tuple[httpx.AsyncClient, Providers]) -> Providers:  # type: ignore[override]
    return cloud[1]


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(provider: str, fakes: dict[str, Any]) -> Any:
    return fakes[provider]


# --- helpers -------------------------------------------------------------------------------------


async def closer_on(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, fake: Any, **extra: object
) -> tuple[TeamMember, str]:
    """A closer connected to a new user of ``fake``; returns the member and the fake's user."""
    closer = await create_member(session, org, calendar=False, time_zone="UTC")
    user = closer.email
    data = ok(
        await client.put(
            f"/v1/team/{closer.id}/calendar",
            headers=org.headers,
            json=fake.connect_body(user, **extra),
        )
    )
    assert data["status"] == "valid"
    assert data["provider"] == fake.provider
    return closer, user


async def book(
    client: httpx.AsyncClient, org: Org, closer: TeamMember, lead_id: str, start: datetime
) -> dict[str, Any]:
    body = {
        "lead_id": lead_id,
        "closer_id": closer.id,
        "scheduled_at": isoformat_z(start),
        "duration_minutes": 45,
        "notes": "internal: budget 40k",
    }
    data: dict[str, Any] = ok(await client.post("/v1/calls", headers=org.headers, json=body), 201)
    return data


def event_ids(fake: Any, user: str) -> set[str]:
    return {str(event["id"]) for event in fake.events(user)}


async def deliver(client: httpx.AsyncClient, fake: FakeApi) -> list[httpx.Response]:
    """Post every notification the fake has pending to closerdesk's hooks, as the provider
    would."""
    answers = []
    for path, headers, body in fake.take_notifications():  # type: ignore[attr-defined]
        answers.append(await client.post(path, headers=headers, content=body))
    return answers


async def mirrored(database: Database, connection_id: str) -> list[tuple[datetime, datetime]]:
    async with database.reader() as s:
        rows = (
            await s.scalars(
                select(CalendarBusy)
                .where(CalendarBusy.connection_id == connection_id)
                .order_by(CalendarBusy.starts_at)
            )
        ).all()
        return [(row.starts_at, row.ends_at) for row in rows]


async def connection_of(database: Database, member: TeamMember) -> CalendarConnection:
    async with database.reader() as s:
        found = await s.scalar(
            select(CalendarConnection).where(CalendarConnection.member_id == member.id)
        )
        assert found is not None
        return found


CREATE = {
    "google": "POST /calendar/v3/calendars/",
    "microsoft": "POST /v1.0/me/calendars/",
    "nylas": "/events",
}
"""The ``"METHOD /path"`` part naming each provider's create request in its fake."""


def create_match(provider: str, fake: Any, user: str) -> str:
    if provider == "nylas":
        return f"POST /v3/grants/{fake.grant_id(user)}/events"
    return CREATE[provider]


def start_of(provider: str, event: dict[str, Any]) -> datetime:
    """An event's start in the provider's own JSON shape, as an aware UTC datetime."""
    if provider == "nylas":
        return datetime.fromtimestamp(int(event["when"]["start_time"]), tz=UTC)
    raw = str(event["start"]["dateTime"])
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- connect, book, reschedule, cancel -----------------------------------------------------------
async def test_book_reschedule_cancel_write_the_closers_own_calendar(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    provider: str,
    fake: Any,
    database: Database,
) -> None:
    closer, user = await closer_on(client, session, org, fake)
    shown = ok(await client.get(f"/v1/team/{closer.id}/calendar", headers=org.headers))
    assert "refresh_token" not in str(shown)
    assert "1//rt-" not in str(shown)
    if provider == "nylas":
        assert shown["provider_grant_id"] == fake.grant_id(user)  # seed 000's nylas_grant_id
    lead = await create_lead(session, org)
    start = at(3, 14)

    call = await book(client, org, closer, lead.id, start)
    (event,) = fake.events(user)
    assert call["calendar_event_id"] == event["id"]
    assert start_of(provider, event) == start
    assert "budget" not in str(event)  # the call's notes never reach an event
    assert call["conferencing_link"] in str(event)

    moved = start + timedelta(days=1, hours=1)
    r = await client.post(
        f"/v1/calls/{call['id']}/reschedule",
        headers=org.headers,
        json={"scheduled_at": isoformat_z(moved)},
    )
    ok(r)
    (event,) = fake.events(user)
    assert event["id"] == call["calendar_event_id"]  # moved in place
    assert start_of(provider, event) == moved

    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))
    assert fake.events(user) == []
    # Whatever the provider, it never emailed the lead (Google sendUpdates=none, Graph without
    # attendees, Nylas notify_participants=false).
    assert getattr(fake, "invitations", []) == []


async def test_reassign_between_two_providers_moves_the_event(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    provider: str,
    fakes: dict[str, Any],
) -> None:
    other = PROVIDERS[(PROVIDERS.index(provider) + 1) % len(PROVIDERS)]
    alice, alice_user = await closer_on(client, session, org, fakes[provider])
    bruno, bruno_user = await closer_on(client, session, org, fakes[other])
    lead = await create_lead(session, org)
    call = await book(client, org, alice, lead.id, at(4, 10))
    assert len(fakes[provider].events(alice_user)) == 1

    result = ok(
        await client.post(
            f"/v1/calls/{call['id']}/reassign-closer",
            headers=org.headers,
            json={"new_closer_id": bruno.id},
        )
    )
    assert result["old_event_orphaned"] is False
    assert fakes[provider].events(alice_user) == []
    (event,) = fakes[other].events(bruno_user)
    assert result["new_event_id"] == event["id"]
    assert result["conferencing_link"] in str(event)
    assert result["conferencing_link"] != call["conferencing_link"]


# --- OAuth consent -------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", OAUTH)
async def test_oauth_consent_round_trip_connects_the_calendar(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    provider: str,
    fake: Any,
    database: Database,
) -> None:
    closer = await create_member(session, org, calendar=False, time_zone="UTC")
    fake.add_user(closer.email)
    fake.oauth.user = closer.email
    r = await client.put(
        f"/v1/team/{closer.id}/calendar", headers=org.headers, json={"provider": provider}
    )
    consent = ok(r, 202)
    assert consent["provider"] == provider
    url = httpx.URL(consent["authorization_url"])
    assert url.params["code_challenge_method"] == "S256"
    assert "offline_access" in url.params["scope"] or url.params.get("access_type") == "offline"
    error(  # nothing is connected until the member consents
        await client.get(f"/v1/team/{closer.id}/calendar", headers=org.headers),
        404,
        "CALENDAR_NOT_FOUND",
    )

    # The member's browser: the provider's consent page sends it back to closerdesk.
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(str(url))
    assert answer.status_code == 302
    back = httpx.URL(answer.headers["location"])
    assert str(back).startswith(f"https://closerdesk.example.test/oauth/{provider}/callback?")
    callback = f"{back.path}?{back.query.decode()}"
    connected = ok(await client.get(callback))
    assert connected["status"] == "valid"
    assert connected["provider"] == provider
    token_requests = fake.received("POST /token") + fake.received("/oauth2/v2.0/token")
    assert token_requests[0].form["grant_type"] == "authorization_code"
    assert token_requests[0].form["code_verifier"]  # PKCE

    # The code works once; a forged state never.
    error(await client.get(callback), 400, "CALENDAR_AUTH_FAILED")
    forged = callback.replace("state=", "state=x")
    error(await client.get(forged), 400, "OAUTH_STATE_INVALID")
    # The refresh token is stored encrypted and books calls.
    lead = await create_lead(session, org)
    call = await book(client, org, closer, lead.id, at(2, 9))
    assert [e["id"] for e in fake.events(closer.email)] == [call["calendar_event_id"]]


@pytest.mark.parametrize("provider", OAUTH)
async def test_a_declined_consent_is_400_and_connects_nothing(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, provider: str, fake: Any
) -> None:
    closer = await create_member(session, org, calendar=False)
    consent = ok(
        await client.put(
            f"/v1/team/{closer.id}/calendar", headers=org.headers, json={"provider": provider}
        ),
        202,
    )
    fake.oauth.consent_denied = True
    try:
        async with httpx.AsyncClient() as browser:
            answer = await browser.get(consent["authorization_url"])
    finally:
        fake.oauth.consent_denied = False
    back = httpx.URL(answer.headers["location"])
    r = await client.get(f"{back.path}?{back.query.decode()}")
    assert "access_denied" in error(r, 400, "CALENDAR_AUTH_FAILED")["error"]
    error(
        await client.get(f"/v1/team/{closer.id}/calendar", headers=org.headers),
        404,
        "CALENDAR_NOT_FOUND",
    )


async def test_a_provider_without_its_client_configured_is_400(
    session: AsyncSession, org: Org, settings: Settings, database: Database
) -> None:
    closer = await create_member(session, org, calendar=False)
    app = create_app(settings, database=database)  # the suite's settings: no cloud clients
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as plain:
        for body in ({"provider": "google"}, {"provider": "microsoft"}):
            r = await plain.put(f"/v1/team/{closer.id}/calendar", headers=org.headers, json=body)
            assert "CLIENT_ID" in error(r, 400, "CALENDAR_PROVIDER_NOT_CONFIGURED")["error"]
        r = await plain.put(
            f"/v1/team/{closer.id}/calendar",
            headers=org.headers,
            json={"provider": "nylas", "grant_id": "grant-1"},
        )
        assert "NYLAS_API_KEY" in error(r, 400, "CALENDAR_PROVIDER_NOT_CONFIGURED")["error"]


# --- push notifications keep the mirror fresh ----------------------------------------------------
async def test_a_push_notification_updates_the_mirror(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    provider: str,
    fake: Any,
    database: Database,
    providers: Providers,
    cloud_settings: Settings,
) -> None:
    closer, user = await closer_on(client, session, org, fake)
    connection = await connection_of(database, closer)
    ok(await client.post(f"/v1/team/{closer.id}/calendar/sync", headers=org.headers))
    if provider in OAUTH:
        assert await renew_channels(database, providers, cloud_settings) == 1
        for answer in await deliver(client, fake):  # Google's "sync", Graph's validation
            assert answer.status_code in (200, 202), answer.text
            if "validationToken" in str(answer.request.url):
                token = answer.request.url.params["validationToken"]
                assert answer.text == token
                assert answer.headers["content-type"].startswith("text/plain")
        assert (await connection_of(database, closer)).push_channel_id is not None
    assert await mirrored(database, connection.id) == []

    start = at(2, 15)
    event_id = fake.add_busy(user, start, start + timedelta(hours=1))
    answers = await deliver(client, fake)
    assert answers
    assert all(a.status_code in (200, 202) for a in answers), answers
    assert await mirrored(database, connection.id) == [(start, start + timedelta(hours=1))]

    fake.remove_event(user, event_id)
    await deliver(client, fake)
    assert await mirrored(database, connection.id) == []


async def test_a_forged_notification_is_refused(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    provider: str,
    fake: Any,
    database: Database,
    providers: Providers,
    cloud_settings: Settings,
) -> None:
    _, user = await closer_on(client, session, org, fake)
    if provider in OAUTH:
        await renew_channels(database, providers, cloud_settings)
        await deliver(client, fake)
    fake.add_busy(user, at(2, 9), at(2, 10))
    ((path, headers, body),) = [n for n in fake.take_notifications() if "validation" not in n[0]]
    forged = dict(headers)
    if provider == "google":
        forged["x-goog-channel-token"] = "0" * 64
    elif provider == "nylas":
        forged["x-nylas-signature"] = "0" * 64
    else:
        body = body.replace(b'"clientState": "', b'"clientState": "x')
    r = await client.post(path, headers=forged, content=body)
    error(r, 403, "NOTIFICATION_REJECTED")


# --- tokens, revoked grants, throttling, timeouts ------------------------------------------------
@pytest.mark.parametrize("provider", OAUTH)
async def test_an_expired_access_token_is_refreshed_once(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    provider: str,
    fake: Any,
    database: Database,
    providers: Providers,
) -> None:
    closer, user = await closer_on(client, session, org, fake)
    lead = await create_lead(session, org)
    await book(client, org, closer, lead.id, at(2, 9))
    before = await connection_of(database, closer)
    fake.oauth.expire_access_tokens()
    refreshes = len(fake.oauth.access_tokens)
    await book(client, org, closer, lead.id, at(2, 11))
    assert len(fake.events(user)) == 2
    assert len(fake.oauth.access_tokens) == refreshes + 1  # one new access token
    assert providers.cloud is not None
    if providers.cloud.rotated is not None:
        await providers.cloud.rotated.aclose()  # the rotated token is written by its own task
    after = await connection_of(database, closer)
    if provider == "microsoft":  # Microsoft rotates refresh tokens: the new one is kept
        assert after.credentials != before.credentials
        stored = providers.secrets.decrypt_json(str(after.credentials))["refresh_token"]
        assert stored in fake.oauth.refresh_tokens


async def test_a_revoked_grant_turns_the_connection_invalid(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    provider: str,
    fake: Any,
    database: Database,
) -> None:
    closer, user = await closer_on(client, session, org, fake)
    lead = await create_lead(session, org)
    fake.revoke(user)
    if provider in OAUTH:
        fake.oauth.expire_access_tokens()
    body = {
        "lead_id": lead.id,
        "closer_id": closer.id,
        "scheduled_at": isoformat_z(at(2, 9)),
        "duration_minutes": 30,
    }
    error(
        await client.post("/v1/calls", headers=org.headers, json=body),
        409,
        "CALENDAR_NOT_CONNECTED",
    )
    shown = ok(await client.get(f"/v1/team/{closer.id}/calendar", headers=org.headers))
    assert shown["status"] == "invalid"
    assert shown["invalid_reason"]
    async with database.reader() as s:
        fired = (
            await s.scalars(
                select(WebhookEvent.type).where(WebhookEvent.type == "calendar.connection_invalid")
            )
        ).all()
    assert len(fired) == 1
    error(
        await client.post("/v1/calls", headers=org.headers, json=body),
        409,
        "CALENDAR_NOT_CONNECTED",
    )
    assert fake.events(user) == []


async def test_a_429_with_retry_after_is_waited_out(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, provider: str, fake: Any
) -> None:
    closer, user = await closer_on(client, session, org, fake)
    lead = await create_lead(session, org)
    fake.fail(
        create_match(provider, fake, user),
        429,
        {"error": {"code": 429, "message": "Rate limit exceeded"}},
        headers={"Retry-After": "1"},
    )
    began = time.monotonic()
    call = await book(client, org, closer, lead.id, at(2, 9))
    assert time.monotonic() - began >= 1.0
    assert [e["id"] for e in fake.events(user)] == [call["calendar_event_id"]]
    assert len(fake.received(create_match(provider, fake, user))) == 2


async def test_a_provider_that_stalls_is_502_and_changes_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    provider: str,
    fake: Any,
    database: Database,
) -> None:
    closer, user = await closer_on(client, session, org, fake)
    lead = await create_lead(session, org)
    fake.fail(create_match(provider, fake, user), 503, delay=TIMEOUT + 0.5, times=20)
    body = {
        "lead_id": lead.id,
        "closer_id": closer.id,
        "scheduled_at": isoformat_z(at(2, 9)),
        "duration_minutes": 30,
    }
    error(
        await client.post("/v1/calls", headers=org.headers, json=body),
        502,
        "CALENDAR_PROVIDER_ERROR",
    )
    assert ok(await client.get("/v1/calls", headers=org.headers)) == []
    assert fake.events(user) == []
    attempts = len(fake.received(create_match(provider, fake, user)))
    # Google and Graph deduplicate a create (client id, transactionId), so a timed-out one is
    # tried again; Nylas does not, so it is tried once.
    assert attempts > 1 if provider in OAUTH else attempts == 1


@pytest.mark.parametrize("provider", OAUTH)
async def test_a_create_answered_too_late_is_retried_without_a_second_event(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, provider: str, fake: Any
) -> None:
    closer, user = await closer_on(client, session, org, fake)
    lead = await create_lead(session, org)
    # The first insert is done by the provider but answered after the client gave up.
    fake.fail(create_match(provider, fake, user), 200, delay=TIMEOUT + 0.5, then_pass=True)
    call = await book(client, org, closer, lead.id, at(2, 9))
    assert [e["id"] for e in fake.events(user)] == [call["calendar_event_id"]]


# --- the provider's own meeting room -------------------------------------------------------------
ROOMS = {"google": "google_meet", "microsoft": "teams", "nylas": "google_meet"}


async def test_the_providers_room_sits_behind_the_revocable_link(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, provider: str, fake: Any
) -> None:
    closer, user = await closer_on(client, session, org, fake, conferencing=ROOMS[provider])
    lead = await create_lead(session, org)
    call = await book(client, org, closer, lead.id, at(2, 9))
    link = httpx.URL(call["conferencing_link"])
    assert link.path.startswith("/meet/")
    room = await client.get(link.path)
    assert room.status_code == 302
    (event,) = fake.events(user)
    assert room.headers["location"] in str(event)  # the provider's own room
    assert "meet.example.test" not in room.headers["location"]  # not the built-in Jitsi room
    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))
    assert (await client.get(link.path)).status_code == 410


async def test_zoom_through_nylas_needs_the_closers_zoom_grant(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, fakes: dict[str, Any]
) -> None:
    nylas = fakes["nylas"]
    closer = await create_member(session, org, calendar=False, time_zone="UTC")
    body = nylas.connect_body(closer.email, conferencing="zoom")
    r = await client.put(f"/v1/team/{closer.id}/calendar", headers=org.headers, json=body)
    assert error(r, 400, "VALIDATION_ERROR")["details"]
    body["conf_grant_id"] = "zoom-grant-1"
    ok(await client.put(f"/v1/team/{closer.id}/calendar", headers=org.headers, json=body))
    lead = await create_lead(session, org)
    call = await book(client, org, closer, lead.id, at(2, 9))
    room = await client.get(httpx.URL(call["conferencing_link"]).path)
    assert room.headers["location"].startswith("https://zoom.us/j/")
    (sent,) = [r.json() for r in nylas.received("POST /v3/grants/") if r.path.endswith("/events")]
    assert sent["conferencing"]["autocreate"]["conf_grant_id"] == "zoom-grant-1"


@pytest.mark.parametrize("provider", ["google"])
async def test_an_unanswered_google_create_is_cancelled_by_its_own_id(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, provider: str, fake: Any
) -> None:
    closer, user = await closer_on(client, session, org, fake)
    lead = await create_lead(session, org)
    # Google makes the event each time but never answers in time.
    fake.fail(
        create_match(provider, fake, user), 200, delay=TIMEOUT + 0.3, then_pass=True, times=20
    )
    body = {
        "lead_id": lead.id,
        "closer_id": closer.id,
        "scheduled_at": isoformat_z(at(2, 9)),
        "duration_minutes": 30,
    }
    error(
        await client.post("/v1/calls", headers=org.headers, json=body),
        502,
        "CALENDAR_PROVIDER_ERROR",
    )
    assert fake.received("DELETE /calendar/v3/calendars/")  # the compensation, by the id
    assert fake.events(user) == []
    assert ok(await client.get("/v1/calls", headers=org.headers)) == []


async def test_a_nylas_grant_belongs_to_one_member(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    other_org: Org,
    fakes: dict[str, Any],
) -> None:
    nylas = fakes["nylas"]
    alice, alice_user = await closer_on(client, session, org, nylas)
    body = {"provider": "nylas", "grant_id": nylas.grant_id(alice_user)}
    bruno = await create_member(session, org, calendar=False)
    stranger = await create_member(session, other_org, calendar=False)
    for member, who in ((bruno, org), (stranger, other_org)):
        r = await client.put(f"/v1/team/{member.id}/calendar", headers=who.headers, json=body)
        error(r, 409, "CALENDAR_GRANT_IN_USE")
    # Alice herself may connect it again.
    ok(await client.put(f"/v1/team/{alice.id}/calendar", headers=org.headers, json=body))


async def test_consent_for_a_member_with_upcoming_calls_elsewhere_is_409_at_once(
    client: httpx.AsyncClient, session: AsyncSession, org: Org, fakes: dict[str, Any]
) -> None:
    closer, _ = await closer_on(client, session, org, fakes["nylas"])
    lead = await create_lead(session, org)
    await book(client, org, closer, lead.id, at(2, 9))
    r = await client.put(
        f"/v1/team/{closer.id}/calendar", headers=org.headers, json={"provider": "google"}
    )
    error(r, 409, "MEMBER_HAS_UPCOMING_CALLS")


async def test_forged_secrets_with_any_bytes_are_refused_not_crashed() -> None:
    from closerdesk.calendars import nylas
    from closerdesk.calendars.push import token_matches

    assert nylas.verify_signature("secret", b"{}", "é" * 64) is False
    assert token_matches(Settings(), "cal_1", "é" * 64) is False
    assert token_matches(Settings(), "cal_1", None) is False


@pytest.mark.parametrize("provider", OAUTH)
async def test_a_channel_that_cannot_be_opened_leaves_the_calendar_valid(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    provider: str,
    fake: Any,
    database: Database,
    providers: Providers,
    cloud_settings: Settings,
) -> None:
    closer, _ = await closer_on(client, session, org, fake)
    watch = "/events/watch" if provider == "google" else "POST /v1.0/subscriptions"
    fake.fail(watch, 403, {"error": {"code": 403, "message": "push not allowed"}})
    assert await renew_channels(database, providers, cloud_settings) == 0
    connection = await connection_of(database, closer)
    assert connection.status == "valid"
    assert connection.push_channel_id is None
    assert connection.push_expires_at is not None  # tried again later, not every round
    assert await renew_channels(database, providers, cloud_settings) == 0


async def test_a_sync_answer_for_a_replaced_calendar_is_not_applied(
    client: httpx.AsyncClient,
    session: AsyncSession,
    org: Org,
    fakes: dict[str, Any],
    database: Database,
    providers: Providers,
    cloud_settings: Settings,
) -> None:
    nylas = fakes["nylas"]
    closer, user = await closer_on(client, session, org, nylas)
    nylas.add_busy(user, at(2, 9), at(2, 10))
    connection = await connection_of(database, closer)
    assert await mirror.claim_due(database, cloud_settings, only=[connection.id])
    # Connected again while the sync is under way: its mirror starts afresh.
    body = nylas.connect_body(user)
    ok(await client.put(f"/v1/team/{closer.id}/calendar", headers=org.headers, json=body))
    result = await mirror.sync_connection(database, providers, cloud_settings, connection.id)
    assert result.status == "superseded"
    assert await mirrored(database, connection.id) == []
    assert (await connection_of(database, closer)).sync_status == "pending"
