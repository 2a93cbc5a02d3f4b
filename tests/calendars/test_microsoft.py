"""The Microsoft Graph provider against ``FakeGraph`` (the documented Graph v1.0 wire format).

Each test's docstring names the Graph (or OAuth) behaviour it checks.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from closerdesk.calendars import microsoft
from closerdesk.calendars.microsoft import (
    TRANSACTION_PREFIX,
    GraphNotification,
    MicrosoftCalendar,
    client_state_matches,
    graph_time,
    parse_notifications,
)
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    EventDraft,
    MirrorChange,
)
from closerdesk.config import Settings
from closerdesk.scheduling.intervals import Interval
from tests.calendars.fakes.base import Received
from tests.calendars.fakes.microsoft import FakeGraph

USER = "closer@contoso.example"
T0 = datetime(2027, 3, 4, 10, 0, tzinfo=UTC)
HOOK = "https://closerdesk.test/hooks/microsoft"


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh_graph(graph: FakeGraph) -> Iterator[None]:
    graph.reset()
    yield
    graph.reset()


ProviderFactory = Callable[..., MicrosoftCalendar]


@pytest.fixture
async def make_provider(graph: FakeGraph) -> AsyncIterator[ProviderFactory]:
    made: list[MicrosoftCalendar] = []

    def make(**overrides: Any) -> MicrosoftCalendar:
        values: dict[str, Any] = {
            **graph.settings_overrides(),
            "calendar_timeout_seconds": 0.5,
            "calendar_retry_seconds": 3.0,
            **overrides,
        }
        provider = MicrosoftCalendar(Settings(**values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
def provider(make_provider: ProviderFactory) -> MicrosoftCalendar:
    return make_provider()


def account_for(graph: FakeGraph, user: str = USER, **credentials: str) -> CalendarAccount:
    graph.add_user(user)
    return CalendarAccount(
        connection_id="cal_test",
        organization_id="org_test",
        member_id="user_test",
        provider="microsoft",
        calendar_id=credentials.pop("calendar_id", ""),
        credentials={"refresh_token": graph.oauth.grant(user), **credentials},
    )


async def connected(
    provider: MicrosoftCalendar, graph: FakeGraph, **credentials: str
) -> CalendarAccount:
    return await provider.connect(account_for(graph, **credentials))


def draft(start: datetime = T0, minutes: int = 30, **fields: Any) -> EventDraft:
    values: dict[str, Any] = {
        "call_id": "call_1",
        "title": "Ada Lovelace and Closer",
        "starts_at": start,
        "ends_at": start + timedelta(minutes=minutes),
        "description": "Intro call. Join: https://closerdesk.test/meet/tok",
        "location": "https://closerdesk.test/meet/tok",
        "attendees": ("ada@lead.example",),
    }
    return EventDraft(**(values | fields))


# --- connect ----------------------------------------------------------------------------------


async def test_connect_resolves_default_calendar_and_mailbox(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """Graph v1.0 "Get user" and "Get calendar": no calendar_id → GET /me/calendar; the
    mailbox address comes from GET /me, with a bearer token from the token endpoint."""
    default_id = graph.add_user(USER)
    account = await connected(provider, graph)
    assert account.calendar_id == default_id
    assert account.credentials["mailbox"] == USER
    assert account.credentials["default_calendar"] == "true"
    assert "refresh_token" in account.credentials
    me, calendar = graph.received("GET /v1.0/me")
    assert me.path == "/v1.0/me"
    assert calendar.path == "/v1.0/me/calendar"
    assert calendar.headers["authorization"].startswith("Bearer ya29.")
    token_request = graph.received("POST /common/oauth2/v2.0/token")[0]
    assert token_request.form["grant_type"] == "refresh_token"
    assert "Calendars.ReadWrite" in token_request.form["scope"]


async def test_connect_named_calendar(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph v1.0 "Get calendar": a calendar_id is looked up with GET /me/calendars/{id};
    a calendar that is not the default one is marked so (getSchedule covers only the
    default calendar)."""
    other = graph.add_calendar(USER, "Sales")
    account = await connected(provider, graph, calendar_id=other)
    assert account.calendar_id == other
    assert account.credentials["default_calendar"] == "false"
    assert graph.received(f"GET /v1.0/me/calendars/{other}")


async def test_connect_unknown_or_read_only_calendar(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """Graph v1.0 "Get calendar": an unknown id is 404 ErrorItemNotFound (a CalendarError,
    not a refusal); a calendar with canEdit false cannot receive events."""
    with pytest.raises(CalendarError) as unknown:
        await connected(provider, graph, calendar_id="AAMkADnope=")
    assert not isinstance(unknown.value, CalendarAuthError)
    assert "ErrorItemNotFound" in str(unknown.value)
    shared = graph.add_calendar(USER, "Boss", can_edit=False)
    with pytest.raises(CalendarError, match="read-only"):
        await connected(provider, graph, calendar_id=shared)


async def test_connect_refused_refresh_token(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """RFC 6749 §5.2 / Microsoft identity platform: an unknown or revoked refresh token is
    invalid_grant, a CalendarAuthError whose message never contains the token."""
    account = account_for(graph)
    bad = CalendarAccount(**{**account.__dict__, "credentials": {"refresh_token": "1//rt-bad"}})
    with pytest.raises(CalendarAuthError) as refused:
        await provider.connect(bad)
    assert "invalid_grant" in str(refused.value)
    assert "1//rt-bad" not in str(refused.value)
    assert not graph.received("GET /v1.0/me")
    no_token = CalendarAccount(**{**account.__dict__, "credentials": {}})
    with pytest.raises(CalendarAuthError):
        await provider.connect(no_token)


# --- events -----------------------------------------------------------------------------------


async def test_create_event_request(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph v1.0 "Create event": POST /me/calendars/{id}/events with UTC dateTimeTimeZone,
    Prefer outlook.timezone="UTC", a transactionId (our marker), a text body naming the lead
    and NO attendees (Graph emails every attendee and has no flag to stop it)."""
    account = await connected(provider, graph)
    created = await provider.create_event(account, draft())
    assert created.room_url is None
    (sent,) = graph.received("POST /v1.0/me/calendars")
    assert sent.path == f"/v1.0/me/calendars/{account.calendar_id}/events"
    assert sent.headers["authorization"].startswith("Bearer ")
    assert 'outlook.timezone="UTC"' in sent.headers["prefer"]
    assert 'IdType="ImmutableId"' in sent.headers["prefer"]
    body = sent.json()
    assert body["transactionId"].startswith(f"{TRANSACTION_PREFIX}call_1-")
    assert body["attendees"] == []
    assert body["start"] == {"dateTime": "2027-03-04T10:00:00", "timeZone": "UTC"}
    assert body["end"] == {"dateTime": "2027-03-04T10:30:00", "timeZone": "UTC"}
    assert body["subject"] == "Ada Lovelace and Closer"
    assert body["location"] == {"displayName": "https://closerdesk.test/meet/tok"}
    assert body["body"]["contentType"] == "text"
    assert "With: ada@lead.example" in body["body"]["content"]
    assert "isOnlineMeeting" not in body
    assert graph.invitations == []  # nobody would have been emailed
    (stored,) = graph.events(USER)
    assert stored["id"] == created.event_id
    assert stored["transactionId"] == body["transactionId"]


async def test_create_event_with_teams(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph v1.0 event resource: isOnlineMeeting with onlineMeetingProvider
    teamsForBusiness makes a Teams meeting; its onlineMeeting.joinUrl is the room URL."""
    account = await connected(provider, graph, conferencing="teams")
    created = await provider.create_event(account, draft())
    body = graph.received("POST /v1.0/me/calendars")[0].json()
    assert body["isOnlineMeeting"] is True
    assert body["onlineMeetingProvider"] == "teamsForBusiness"
    (stored,) = graph.events(USER)
    assert created.room_url == stored["onlineMeeting"]["joinUrl"]
    assert created.room_url.startswith("https://teams.microsoft.com/l/meetup-join/")


async def test_create_retried_after_timeout_makes_one_event(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """Graph v1.0 event transactionId: a POST repeated with the same transactionId answers
    the event already made, so a create that timed out is retried and not doubled."""
    account = await connected(provider, graph)
    graph.fail("POST /v1.0/me/calendars", delay=1.0, then_pass=True)
    created = await provider.create_event(account, draft())
    posts = graph.received("POST /v1.0/me/calendars")
    assert len(posts) == 2
    assert posts[0].json()["transactionId"] == posts[1].json()["transactionId"]
    await asyncio.sleep(1.0)  # the stalled first POST is done by now
    assert [e["id"] for e in graph.events(USER)] == [created.event_id]


async def test_create_that_never_answers_fails(
    make_provider: ProviderFactory, graph: FakeGraph
) -> None:
    """docs/calendars.md failures: each request is bounded by the timeout and the retries by
    the budget; a create that never answers is a CalendarError."""
    provider = make_provider(calendar_retry_seconds=1.0)
    account = await connected(provider, graph)
    graph.fail("POST /v1.0/me/calendars", status=500, delay=0.8, times=10)
    with pytest.raises(CalendarError) as failed:
        await provider.create_event(account, draft())
    assert not isinstance(failed.value, CalendarAuthError)
    assert "timed out" in str(failed.value) or "did not answer" in str(failed.value)
    await asyncio.sleep(0.9)


async def test_move_event_keeps_id(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph v1.0 "Update event": PATCH /me/events/{id} changes time, subject, location and
    body in place; still no attendees."""
    account = await connected(provider, graph)
    created = await provider.create_event(account, draft())
    later = T0 + timedelta(hours=2)
    await provider.move_event(account, created.event_id, draft(later, title="Moved", sequence=1))
    (patch,) = graph.received("PATCH /v1.0/me/events/")
    assert patch.path == f"/v1.0/me/events/{created.event_id}"
    assert patch.json()["start"] == {"dateTime": "2027-03-04T12:00:00", "timeZone": "UTC"}
    assert "attendees" not in patch.json()
    (stored,) = graph.events(USER)
    assert stored["id"] == created.event_id
    assert stored["subject"] == "Moved"
    assert stored["start"]["dateTime"].startswith("2027-03-04T12:00:00")
    assert graph.invitations == []


async def test_move_missing_event_fails(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph v1.0 "Update event": an unknown id is 404 ErrorItemNotFound → CalendarError."""
    account = await connected(provider, graph)
    with pytest.raises(CalendarError, match="ErrorItemNotFound") as failed:
        await provider.move_event(account, "AAMkADgone=", draft())
    assert not isinstance(failed.value, CalendarAuthError)


async def test_cancel_event_and_already_gone(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph v1.0 "Delete event": DELETE /me/events/{id} is 204; deleting it again is 404,
    which counts as done."""
    account = await connected(provider, graph)
    created = await provider.create_event(account, draft())
    await provider.cancel_event(account, created.event_id)
    assert graph.events(USER) == []
    await provider.cancel_event(account, created.event_id)
    deletes = graph.received("DELETE /v1.0/me/events/")
    assert len(deletes) == 2
    assert all(d.path == f"/v1.0/me/events/{created.event_id}" for d in deletes)


# --- busy -------------------------------------------------------------------------------------


async def test_busy_excludes_own_free_and_cancelled(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """Graph v1.0 getSchedule (schedules = the mailbox, UTC dateTimeTimeZone,
    availabilityViewInterval) reports busy items; calendarView then drops closerdesk's own
    event (transactionId), showAs free and isCancelled events, and clips to the interval."""
    account = await connected(provider, graph)
    await provider.create_event(account, draft(T0, 30))
    graph.add_busy(USER, T0 - timedelta(minutes=30), T0 + timedelta(minutes=15))
    graph.add_busy(USER, T0, T0 + timedelta(hours=1), title="Focus", free=True)
    graph.add_busy(USER, T0 + timedelta(minutes=40), T0 + timedelta(minutes=50), cancelled=True)
    busy = await provider.busy(account, T0, T0 + timedelta(hours=1))
    assert busy == [Interval(T0, T0 + timedelta(minutes=15))]
    (schedule,) = graph.received("POST /v1.0/me/calendar/getSchedule")
    body = schedule.json()
    assert body["schedules"] == [USER]
    assert body["startTime"] == {"dateTime": "2027-03-04T10:00:00", "timeZone": "UTC"}
    assert body["endTime"] == {"dateTime": "2027-03-04T11:00:00", "timeZone": "UTC"}
    assert 5 <= body["availabilityViewInterval"] <= 1440
    (view,) = views(graph)
    assert view.path == f"/v1.0/me/calendars/{account.calendar_id}/calendarView"
    assert view.query["startDateTime"] == "2027-03-04T10:00:00Z"
    assert view.query["endDateTime"] == "2027-03-04T11:00:00Z"


async def test_busy_own_event_only_is_free(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """getSchedule counts closerdesk's own event as busy; the calendarView check drops it,
    so the closer is free."""
    account = await connected(provider, graph)
    await provider.create_event(account, draft(T0, 60))
    assert await provider.busy(account, T0, T0 + timedelta(hours=1)) == []
    assert views(graph)


async def test_busy_free_schedule_skips_calendar_view(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """Graph v1.0 getSchedule: when every scheduleItem is free, nothing is busy and the
    calendar view is not asked."""
    account = await connected(provider, graph)
    graph.add_busy(USER, T0, T0 + timedelta(hours=1), free=True)
    assert await provider.busy(account, T0, T0 + timedelta(hours=1)) == []
    assert graph.received("POST /v1.0/me/calendar/getSchedule")
    assert not views(graph)


async def test_busy_on_other_calendar_pages_calendar_view(
    provider: MicrosoftCalendar, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free/busy covers the default calendar only: a connection to another calendar asks
    its calendarView directly, following @odata.nextLink pages ($top)."""
    monkeypatch.setattr(microsoft, "PAGE_SIZE", 2)
    other = graph.add_calendar(USER, "Sales")
    account = await connected(provider, graph, calendar_id=other)
    for hour in range(5):
        start = T0 + timedelta(hours=hour)
        graph.add_busy(USER, start, start + timedelta(minutes=10), calendar_id=other)
    graph.add_busy(USER, T0, T0 + timedelta(hours=1))  # on the default calendar: not this one
    busy = await provider.busy(account, T0, T0 + timedelta(hours=5))
    assert busy == [
        Interval(T0 + timedelta(hours=h), T0 + timedelta(hours=h, minutes=10)) for h in range(5)
    ]
    assert not graph.received("POST /v1.0/me/calendar/getSchedule")
    pages = views(graph)
    assert len(pages) == 3
    assert pages[0].query["$top"] == "2"
    assert "$skiptoken" in pages[1].query


# --- sync -------------------------------------------------------------------------------------


def views(graph: FakeGraph) -> list[Received]:
    """The calendarView requests the fake received (not the deltas), oldest first."""
    return [r for r in graph.requests if r.method == "GET" and r.path.endswith("/calendarView")]


def deltas(graph: FakeGraph) -> list[Received]:
    """The calendarView delta requests the fake received, oldest first."""
    return [r for r in graph.requests if r.path.endswith("/calendarView/delta")]


def by_key(changes: tuple[MirrorChange, ...]) -> dict[str, tuple[Interval, ...]]:
    return {change.key: change.intervals for change in changes}


async def test_sync_full_then_incremental(
    provider: MicrosoftCalendar, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph v1.0 event: delta on /me/calendars/{id}/calendarView/delta with the window,
    pages followed (Prefer odata.maxpagesize) until @odata.deltaLink, which is the state; the
    next sync GETs it and gets only the changes, removed events as @removed."""
    monkeypatch.setattr(microsoft, "PAGE_SIZE", 2)
    account = await connected(provider, graph)
    window = Interval(T0, T0 + timedelta(days=10))
    dentist = graph.add_busy(USER, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    free = graph.add_busy(USER, T0 + timedelta(hours=3), T0 + timedelta(hours=4), free=True)
    gone = graph.add_busy(USER, T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    ours = await provider.create_event(account, draft(T0 + timedelta(hours=5)))
    # a daily series starting two days before the window: 2 occurrences fall outside it
    series = graph.add_series(
        USER, T0 - timedelta(days=2, minutes=-30), T0 - timedelta(days=2, minutes=-90), count=4
    )
    straddling = graph.add_busy(USER, T0 - timedelta(minutes=30), T0 + timedelta(minutes=30))

    batch = await provider.sync(account, None, window)
    assert batch.full
    assert batch.state is not None
    assert batch.state.startswith(graph.api)
    changes = by_key(batch.changes)
    assert changes[dentist] == (Interval(T0 + timedelta(hours=1), T0 + timedelta(hours=2)),)
    assert changes[free] == ()
    assert changes[ours.event_id] == ()
    assert changes[straddling] == (Interval(T0, T0 + timedelta(minutes=30)),)
    assert f"{series}_occ0" not in changes
    assert f"{series}_occ1" not in changes
    assert changes[f"{series}_occ2"] == (
        Interval(T0 + timedelta(minutes=30), T0 + timedelta(minutes=90)),
    )
    assert changes[f"{series}_occ3"] == (
        Interval(T0 + timedelta(days=1, minutes=30), T0 + timedelta(days=1, minutes=90)),
    )
    first, *pages = deltas(graph)
    assert first.query == {
        "startDateTime": "2027-03-04T10:00:00Z",
        "endDateTime": "2027-03-14T10:00:00Z",
    }
    assert "odata.maxpagesize=2" in first.headers["prefer"]
    assert 'outlook.timezone="UTC"' in first.headers["prefer"]
    assert len(pages) >= 2
    assert all("$skiptoken" in page.query for page in pages)

    graph.requests.clear()
    graph.remove_event(USER, gone)
    graph.update_event(USER, dentist, showAs="free")
    lunch = graph.add_busy(USER, T0 + timedelta(days=2), T0 + timedelta(days=2, hours=1))
    later = await provider.sync(account, batch.state, window)
    assert not later.full
    assert by_key(later.changes) == {
        gone: (),
        dentist: (),
        lunch: (Interval(T0 + timedelta(days=2), T0 + timedelta(days=2, hours=1)),),
    }
    incremental, *more = deltas(graph)
    assert "$deltatoken" in incremental.query
    assert [list(page.query) for page in more] == [["$skiptoken"]]
    assert "startDateTime" not in incremental.query
    assert later.state is not None
    assert later.state != batch.state


async def test_sync_expired_token_resyncs_in_full(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """Graph "Use delta query" (token duration, synchronization reset): an expired delta
    token is 410 Gone with syncStateNotFound, and the sync starts afresh as a full one."""
    account = await connected(provider, graph)
    window = Interval(T0, T0 + timedelta(days=10))
    dentist = graph.add_busy(USER, T0, T0 + timedelta(hours=1))
    batch = await provider.sync(account, None, window)
    graph.expire_delta_tokens()
    graph.requests.clear()
    again = await provider.sync(account, batch.state, window)
    assert again.full
    assert by_key(again.changes) == {dentist: (Interval(T0, T0 + timedelta(hours=1)),)}
    expired, fresh = deltas(graph)
    assert "$deltatoken" in expired.query
    assert fresh.query["startDateTime"] == "2027-03-04T10:00:00Z"


async def test_sync_state_elsewhere_is_not_followed(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """The bearer token only goes to CLOSERDESK_MICROSOFT_API_URI: a stored state pointing
    elsewhere is ignored and the sync is a full one."""
    account = await connected(provider, graph)
    elsewhere = "https://attacker.example/v1.0/delta?$deltatoken=x"
    batch = await provider.sync(account, elsewhere, Interval(T0, T0 + timedelta(days=1)))
    assert batch.full
    (request,) = deltas(graph)
    assert "startDateTime" in request.query


# --- HTTP behaviour ---------------------------------------------------------------------------


async def test_stale_access_token_is_refreshed_once(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """Graph 401 InvalidAuthenticationToken → one refresh at the token endpoint (Microsoft
    rotates the refresh token) → the request is sent again with the new bearer token."""
    account = await connected(provider, graph)
    graph.oauth.expire_access_tokens()
    graph.requests.clear()
    await provider.busy(account, T0, T0 + timedelta(hours=1))
    first, second = graph.received("POST /v1.0/me/calendar/getSchedule")
    assert first.headers["authorization"] != second.headers["authorization"]
    (refresh,) = graph.received("POST /common/oauth2/v2.0/token")
    assert refresh.form["grant_type"] == "refresh_token"


async def test_revoked_grant_is_auth_error(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Microsoft identity platform: once the user revokes consent, the access token is
    refused (401) and the refresh token is invalid_grant → CalendarAuthError."""
    account = await connected(provider, graph)
    graph.revoke(USER)
    with pytest.raises(CalendarAuthError, match="invalid_grant"):
        await provider.create_event(account, draft())
    assert graph.events(USER) == []


async def test_forbidden_is_auth_error_with_graph_reason(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """Graph errors: 403 ErrorAccessDenied is a refusal, carrying Graph's code/message."""
    account = await connected(provider, graph)
    graph.fail(
        "POST /v1.0/me/calendars",
        status=403,
        body={"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}},
    )
    with pytest.raises(CalendarAuthError, match="ErrorAccessDenied: Access is denied"):
        await provider.create_event(account, draft())


async def test_throttled_429_honours_retry_after(
    provider: MicrosoftCalendar, graph: FakeGraph
) -> None:
    """Graph throttling guidance: 429 Too Many Requests with Retry-After (seconds); the
    request is sent again only after that wait."""
    account = await connected(provider, graph)
    graph.fail(
        "POST /v1.0/me/calendar/getSchedule",
        status=429,
        body={"error": {"code": "TooManyRequests", "message": "Please retry again later."}},
        headers={"Retry-After": "1"},
    )
    started = time.monotonic()
    assert await provider.busy(account, T0, T0 + timedelta(hours=1)) == []
    assert time.monotonic() - started >= 1.0
    assert len(graph.received("POST /v1.0/me/calendar/getSchedule")) == 2


async def test_unavailable_503_is_retried(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph errors: 503 serviceNotAvailable may be repeated after a delay."""
    account = await connected(provider, graph)
    graph.fail(
        "DELETE /v1.0/me/events/",
        status=503,
        body={"error": {"code": "serviceNotAvailable", "message": "Try again."}},
    )
    created = await provider.create_event(account, draft())
    await provider.cancel_event(account, created.event_id)
    assert len(graph.received("DELETE /v1.0/me/events/")) == 2
    assert graph.events(USER) == []


# --- push -------------------------------------------------------------------------------------


async def test_watch_validates_and_notifies(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph v1.0 "Create subscription": POST /subscriptions for /me/events with
    created,updated,deleted, notificationUrl, lifecycleNotificationUrl, clientState and an
    expiry within 10,080 minutes; Graph validates the URL (?validationToken=) first, then
    posts a changeNotificationCollection for each change."""
    account = await connected(provider, graph)
    channel = await provider.watch(account, HOOK, "secret-state")
    (sent,) = graph.received("POST /v1.0/subscriptions")
    body = sent.json()
    assert body["changeType"] == "created,updated,deleted"
    assert body["notificationUrl"] == body["lifecycleNotificationUrl"] == HOOK
    assert body["resource"] == "/me/events"
    assert body["clientState"] == "secret-state"
    expires = datetime.fromisoformat(body["expirationDateTime"].replace("Z", "+00:00"))
    assert timedelta(days=2) < expires - datetime.now(UTC) <= timedelta(minutes=10080)
    assert channel.channel_id in graph.subscriptions
    assert channel.resource_id == ""
    assert abs(channel.expires_at - expires) < timedelta(seconds=1)

    ((path, headers, payload),) = graph.take_notifications()
    assert path.startswith("/hooks/microsoft?validationToken=")
    assert headers == {"content-type": "text/plain"}
    assert payload == b""

    dentist = graph.add_busy(USER, T0, T0 + timedelta(hours=1))
    ((path, headers, payload),) = graph.take_notifications()
    assert path == "/hooks/microsoft"
    assert headers == {"content-type": "application/json"}
    (note,) = parse_notifications(payload)
    assert note.subscription_id == channel.channel_id
    assert note.change_type == "created"
    assert note.lifecycle_event is None
    assert note.event_id == dentist
    assert note.resource is not None
    assert note.resource.endswith(f"/Events/{dentist}")
    assert client_state_matches(note, "secret-state")
    assert not client_state_matches(note, "another-state")
    assert graph.take_notifications() == []


async def test_unwatch_and_already_gone(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph v1.0 "Delete subscription": DELETE /subscriptions/{id} is 204; an unknown (or
    lapsed) one is 404, which counts as done. No notification follows."""
    account = await connected(provider, graph)
    channel = await provider.watch(account, HOOK, "secret-state")
    await provider.unwatch(account, channel)
    assert graph.subscriptions == {}
    await provider.unwatch(account, channel)
    assert len(graph.received(f"DELETE /v1.0/subscriptions/{channel.channel_id}")) == 2
    graph.take_notifications()
    graph.add_busy(USER, T0, T0 + timedelta(hours=1))
    assert graph.take_notifications() == []


async def test_lifecycle_notification(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """Graph lifecycle notifications: reauthorizationRequired arrives at the
    lifecycleNotificationUrl with lifecycleEvent and clientState, and no resource."""
    account = await connected(provider, graph)
    channel = await provider.watch(account, HOOK, "secret-state")
    graph.take_notifications()
    graph.lifecycle(channel.channel_id)
    ((path, _, payload),) = graph.take_notifications()
    assert path == "/hooks/microsoft"
    (note,) = parse_notifications(payload)
    assert note.lifecycle_event == "reauthorizationRequired"
    assert note.change_type is None
    assert note.resource is None
    assert note.subscription_id == channel.channel_id
    assert client_state_matches(note, "secret-state")


async def test_watch_timeout_is_not_retried(provider: MicrosoftCalendar, graph: FakeGraph) -> None:
    """docs/calendars.md failures: a POST the provider does not deduplicate (a Graph
    subscription) that times out fails at once, never sent twice."""
    account = await connected(provider, graph)
    graph.fail("POST /v1.0/subscriptions", delay=1.0, then_pass=True)
    with pytest.raises(CalendarError, match="timed out"):
        await provider.watch(account, HOOK, "secret-state")
    assert len(graph.received("POST /v1.0/subscriptions")) == 1
    await asyncio.sleep(0.8)


async def test_watch_rejected_expiry_is_error(
    provider: MicrosoftCalendar, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph v1.0 subscription: Outlook events allow at most 10,080 minutes; a longer one is
    400 InvalidRequest, a CalendarError with Graph's message."""
    monkeypatch.setattr(microsoft, "SUBSCRIPTION_DAYS", 8)
    account = await connected(provider, graph)
    with pytest.raises(CalendarError, match="InvalidRequest") as failed:
        await provider.watch(account, HOOK, "secret-state")
    assert not isinstance(failed.value, CalendarAuthError)
    assert graph.subscriptions == {}


# --- pure helpers -----------------------------------------------------------------------------


def test_parse_notifications_change_and_lifecycle() -> None:
    """Graph changeNotificationCollection: a POST can batch change and lifecycle items."""
    body = json.dumps(
        {
            "value": [
                {
                    "subscriptionId": "sub-1",
                    "subscriptionExpirationDateTime": "2027-03-07T10:00:00.0000000Z",
                    "changeType": "deleted",
                    "resource": "Users/u-1/Events/AAMkAD1=",
                    "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": "AAMkAD1="},
                    "clientState": "s",
                    "tenantId": "t-1",
                },
                {"subscriptionId": "sub-1", "clientState": "s", "lifecycleEvent": "missed"},
            ]
        }
    ).encode()
    change, missed = parse_notifications(body)
    assert change == GraphNotification(
        subscription_id="sub-1",
        client_state="s",
        change_type="deleted",
        lifecycle_event=None,
        resource="Users/u-1/Events/AAMkAD1=",
        event_id="AAMkAD1=",
        tenant_id="t-1",
        expires_at=datetime(2027, 3, 7, 10, 0, tzinfo=UTC),
    )
    assert missed.lifecycle_event == "missed"
    assert missed.event_id is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"values": []}',
        b'{"value": {}}',
        b'{"value": ["x"]}',
        b'{"value": [{"changeType": "created"}]}',
        b'{"value": [{"subscriptionId": "s"}]}',
        b'{"value": [{"subscriptionId": "s", "changeType": 3}]}',
    ],
)
def test_parse_notifications_rejects_other_bodies(body: bytes) -> None:
    """Only a {"value": [...]} collection whose items have a subscriptionId and a changeType
    or lifecycleEvent is a Graph notification."""
    with pytest.raises(ValueError, match=r"\w"):
        parse_notifications(body)


def test_client_state_needs_a_value() -> None:
    """A notification without clientState never matches (nor does an empty token)."""
    note = GraphNotification("s", None, "created", None, "r")
    assert not client_state_matches(note, "token")
    assert not client_state_matches(GraphNotification("s", "", "created", None, "r"), "")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"dateTime": "2027-03-04T10:00:00.0000000", "timeZone": "UTC"}, T0),
        ({"dateTime": "2027-03-04T10:00:00", "timeZone": "Etc/UTC"}, T0),
        ({"dateTime": "2027-03-04T11:00:00.1234567", "timeZone": "Europe/Paris"}, T0),
        ({"dateTime": "2027-03-04T10:00:00Z", "timeZone": "UTC"}, T0),
    ],
)
def test_graph_time(value: dict[str, str], expected: datetime) -> None:
    """Graph dateTimeTimeZone (7 fractional digits, UTC or an IANA zone) → aware UTC."""
    assert graph_time(value).replace(microsecond=0) == expected


def test_graph_time_rejects_garbage() -> None:
    """A value that is not a dateTimeTimeZone raises ValueError."""
    with pytest.raises(ValueError, match="dateTimeTimeZone"):
        graph_time("2027-03-04T10:00:00")


# --- the fake itself --------------------------------------------------------------------------


async def test_fake_answers_graph_errors(graph: FakeGraph) -> None:
    """Graph errors: no bearer token is 401 InvalidAuthenticationToken; calendarView without
    startDateTime/endDateTime is 400 ErrorInvalidParameter."""
    calendar_id = graph.add_user(USER)
    async with httpx.AsyncClient(base_url=graph.api) as client:
        anonymous = await client.get("/me")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"
        token = (
            await client.post(
                f"{graph.url}/common/oauth2/v2.0/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": graph.oauth.grant(USER),
                    "client_id": graph.client_id,
                    "client_secret": graph.client_secret,
                },
            )
        ).json()["access_token"]
        view = await client.get(
            f"/me/calendars/{calendar_id}/calendarView",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert view.status_code == 400
        assert view.json()["error"]["code"] == "ErrorInvalidParameter"


def test_fake_harness_shapes(graph: FakeGraph) -> None:
    """The harness the end-to-end tests use: settings pointing at the fake, a connect body
    with a refresh token the fake accepts, events in Graph's JSON shape."""
    overrides = graph.settings_overrides()
    assert Settings(**overrides).microsoft_api_uri == graph.api
    body = graph.connect_body(USER, conferencing="teams")
    assert body["provider"] == "microsoft"
    assert graph.oauth.refresh_tokens[str(body["refresh_token"])] == USER
    assert body["conferencing"] == "teams"
    event_id = graph.add_busy(USER, T0, T0 + timedelta(hours=1))
    (event,) = graph.events(USER)
    assert event["id"] == event_id
    assert event["start"] == {"dateTime": "2027-03-04T10:00:00.0000000", "timeZone": "UTC"}
    graph.remove_event(USER, event_id)
    assert graph.events(USER) == []
