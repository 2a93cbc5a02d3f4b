"""The Nylas API v3 provider against ``FakeNylas`` (the documented wire format, faults)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from closerdesk.calendars.http import RetryPolicy
from closerdesk.calendars.nylas import (
    CALL_ID_KEY,
    MARKER_KEY,
    MARKER_VALUE,
    NylasCalendar,
    NylasNotification,
    parse_notification,
    subtract,
    verify_signature,
)
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    EventDraft,
    MirrorChange,
    ProviderNotConfigured,
    PushProvider,
)
from closerdesk.config import Settings
from closerdesk.scheduling.intervals import Interval
from tests.calendars.fakes.base import Received
from tests.calendars.fakes.nylas import FakeNylas

USER = "closer@example.com"
LEAD = "ada@example.org"
FAST = RetryPolicy(budget=5.0, attempts=4, wait_initial=0.01, wait_max=0.05)


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=UTC)


def iv(start: datetime, end: datetime) -> Interval:
    return Interval(start, end)


WINDOW = Interval(at(1, 0), at(1, 0, month=4))


@pytest.fixture(scope="module")
def nylas() -> Iterator[FakeNylas]:
    fake = FakeNylas()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh(nylas: FakeNylas) -> None:
    nylas.reset()


def settings_for(fake: FakeNylas, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        **fake.settings_overrides(),
        "calendar_timeout_seconds": 2.0,
        "calendar_retry_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def provider(nylas: FakeNylas) -> AsyncIterator[NylasCalendar]:
    calendar = NylasCalendar(settings_for(nylas), policy=FAST)
    yield calendar
    await calendar.aclose()


def unconnected(fake: FakeNylas, user: str = USER, **credentials: str) -> CalendarAccount:
    grant_id = fake.add_user(user)
    return CalendarAccount(
        connection_id="cal_01TEST",
        organization_id="org_01TEST",
        member_id="mem_01TEST",
        provider="nylas",
        calendar_id="",
        credentials={"grant_id": grant_id, **credentials},
    )


async def connected(
    provider: NylasCalendar, fake: FakeNylas, user: str = USER, **credentials: str
) -> CalendarAccount:
    return await provider.connect(unconnected(fake, user, **credentials))


def listings(fake: FakeNylas) -> list[Received]:
    """The events listings (``GET /v3/grants/{id}/events``) received, oldest first."""
    return [r for r in fake.received("GET /v3/grants/") if r.path.endswith("/events")]


def draft(start: datetime, end: datetime, title: str = "Ada Lovelace and Grace") -> EventDraft:
    return EventDraft(
        call_id="call_01TEST",
        title=title,
        starts_at=start,
        ends_at=end,
        description="Join: http://closerdesk.test/meet/tok",
        location="http://closerdesk.test/meet/tok",
        attendees=(LEAD,),
    )


# --- connect ---------------------------------------------------------------------------------


async def test_connect_resolves_the_primary_calendar(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas "Get a grant" (grant_status valid, email, provider) then "Return a calendar" with
    ``primary``: the calendar's own id is kept, with the grant's email and provider."""
    account = await connected(provider, nylas)

    assert account.calendar_id == nylas.primary_calendar(USER) == USER
    assert account.credentials["email"] == USER
    assert account.credentials["provider"] == "google"
    grant = nylas.grant_id(USER)
    assert [f"{r.method} {r.path}" for r in nylas.requests] == [
        f"GET /v3/grants/{grant}",
        f"GET /v3/grants/{grant}/calendars/primary",
    ]
    assert all(r.headers["authorization"] == f"Bearer {nylas.api_key}" for r in nylas.requests)


async def test_connect_keeps_a_chosen_calendar_and_refuses_unknown_or_read_only_ones(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas "Return a calendar": a calendar id of the grant is used as is; an unknown one is
    404 ``not_found_error`` (a CalendarError, the grant is fine); a read-only one cannot take
    events."""
    base = unconnected(nylas)
    nylas.add_calendar(USER, "team@group.calendar.google.com")
    nylas.add_calendar(USER, "holidays", read_only=True)

    account = await provider.connect(
        CalendarAccount(**{**base.__dict__, "calendar_id": "team@group.calendar.google.com"})
    )
    assert account.calendar_id == "team@group.calendar.google.com"

    with pytest.raises(CalendarError) as unknown:
        await provider.connect(CalendarAccount(**{**base.__dict__, "calendar_id": "nope"}))
    assert not isinstance(unknown.value, CalendarAuthError)
    assert "not_found_error" in str(unknown.value)

    with pytest.raises(CalendarError, match="read-only") as read_only:
        await provider.connect(CalendarAccount(**{**base.__dict__, "calendar_id": "holidays"}))
    assert not isinstance(read_only.value, CalendarAuthError)


async def test_connect_refuses_an_invalid_or_unknown_grant(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas grants: ``grant_status: invalid`` means the user must re-authenticate; an unknown
    grant is 404 ``grant.not_found``. Both are CalendarAuthError."""
    account = unconnected(nylas)
    nylas.revoke(USER)
    with pytest.raises(CalendarAuthError, match="grant invalid: reconnect"):
        await provider.connect(account)

    stranger = CalendarAccount(**{**account.__dict__, "credentials": {"grant_id": "gone"}})
    with pytest.raises(CalendarAuthError, match="no such grant"):
        await provider.connect(stranger)


async def test_a_wrong_api_key_is_closerdesks_configuration_not_the_grant(
    nylas: FakeNylas,
) -> None:
    """Nylas answers 401 for a bad API key on ``GET /v3/grants/{id}`` (an application-level
    endpoint): a CalendarError naming the setting, never a CalendarAuthError (which would mark
    every member's connection invalid), and never the key itself."""
    wrong = NylasCalendar(settings_for(nylas, nylas_api_key="nyk_wrong_key"), policy=FAST)
    try:
        with pytest.raises(CalendarError) as caught:
            await wrong.connect(unconnected(nylas))
    finally:
        await wrong.aclose()
    assert not isinstance(caught.value, CalendarAuthError)
    assert "CLOSERDESK_NYLAS_API_KEY" in str(caught.value)
    assert "nyk_wrong_key" not in str(caught.value)


async def test_a_missing_api_key_fails_before_any_request(nylas: FakeNylas) -> None:
    """Without ``CLOSERDESK_NYLAS_API_KEY`` nothing can be asked of Nylas: ProviderNotConfigured
    (a CalendarError) that names the setting, and no request leaves."""
    bare = NylasCalendar(settings_for(nylas, nylas_api_key=None), policy=FAST)
    try:
        with pytest.raises(ProviderNotConfigured, match="CLOSERDESK_NYLAS_API_KEY"):
            await bare.connect(unconnected(nylas))
        with pytest.raises(ProviderNotConfigured, match="CLOSERDESK_NYLAS_API_KEY"):
            await bare.busy(unconnected(nylas), at(4, 9), at(4, 10))
    finally:
        await bare.aclose()
    assert nylas.requests == []


# --- events ----------------------------------------------------------------------------------


async def test_create_event_sends_no_invitation_and_marks_the_event_ours(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas "Create an event": ``calendar_id`` and ``notify_participants=false`` in the query,
    the API key as bearer, ``when`` a timespan in Unix seconds, ``busy: true``, the lead as
    participant (a Google grant honours notify_participants=false) and our metadata marker."""
    account = await connected(provider, nylas)
    created = await provider.create_event(account, draft(at(4, 9), at(4, 10)))

    (sent,) = nylas.received("POST /v3/grants/")
    assert sent.path == f"/v3/grants/{nylas.grant_id(USER)}/events"
    assert sent.query == {"calendar_id": USER, "notify_participants": "false"}
    assert sent.headers["authorization"] == f"Bearer {nylas.api_key}"
    body = sent.json()
    assert body["when"] == {
        "start_time": int(at(4, 9).timestamp()),
        "end_time": int(at(4, 10).timestamp()),
    }
    assert body["title"] == "Ada Lovelace and Grace"
    assert body["location"] == "http://closerdesk.test/meet/tok"
    assert body["participants"] == [{"email": LEAD}]
    assert body["busy"] is True
    assert body["metadata"] == {MARKER_KEY: MARKER_VALUE, CALL_ID_KEY: "call_01TEST"}
    assert "conferencing" not in body
    assert created.room_url is None
    assert [e["id"] for e in nylas.events(USER)] == [created.event_id]
    assert nylas.invitations == []


async def test_create_on_a_microsoft_grant_leaves_the_lead_out(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas "Create an event": Microsoft (and iCloud) do not support
    ``notify_participants=false`` and would email every participant, so the lead is not one."""
    nylas.add_user("closer@contoso.com", provider="microsoft")
    account = await connected(provider, nylas, "closer@contoso.com")
    await provider.create_event(account, draft(at(4, 9), at(4, 10)))

    (sent,) = nylas.received("POST /v3/grants/")
    assert sent.json()["participants"] == []
    assert sent.query["notify_participants"] == "false"
    assert nylas.invitations == []


@pytest.mark.parametrize(
    ("conferencing", "user_provider", "nylas_name", "url_prefix"),
    [
        ("google_meet", "google", "Google Meet", "https://meet.google.com/"),
        ("teams", "microsoft", "Microsoft Teams", "https://teams.microsoft.com/"),
    ],
)
async def test_create_with_conferencing_returns_the_providers_room(
    provider: NylasCalendar,
    nylas: FakeNylas,
    conferencing: str,
    user_provider: str,
    nylas_name: str,
    url_prefix: str,
) -> None:
    """Nylas "Create an event", ``conferencing.autocreate``: the room's URL is read from
    ``data.conferencing.details.url``."""
    user = f"closer@{user_provider}.example"
    nylas.add_user(user, provider=user_provider)
    account = await connected(provider, nylas, user, conferencing=conferencing)
    created = await provider.create_event(account, draft(at(4, 9), at(4, 10)))

    (sent,) = nylas.received("POST /v3/grants/")
    assert sent.json()["conferencing"] == {"provider": nylas_name, "autocreate": {}}
    assert created.room_url is not None
    assert created.room_url.startswith(url_prefix)


async def test_zoom_needs_its_grant_and_a_deferred_room_is_none(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas "Create an event": Zoom autocreate needs the user's Zoom grant
    (``conf_grant_id``): without it the connection is refused at connect and no event is sent;
    a room the provider makes later is absent from the answer (``conferencing.autocreate``
    only)."""
    with pytest.raises(CalendarAuthError, match="conf_grant_id"):
        await connected(provider, nylas, conferencing="zoom")
    account = await connected(provider, nylas)
    without = CalendarAccount(
        **{**account.__dict__, "credentials": {**account.credentials, "conferencing": "zoom"}}
    )
    with pytest.raises(CalendarError, match="conf_grant_id"):
        await provider.create_event(without, draft(at(4, 9), at(4, 10)))
    assert nylas.received("POST /v3/grants/") == []

    zoom = await connected(provider, nylas, conferencing="zoom", conf_grant_id="zg-1")
    nylas.conferencing_deferred = True
    created = await provider.create_event(zoom, draft(at(4, 9), at(4, 10)))
    (sent,) = nylas.received("POST /v3/grants/")
    assert sent.json()["conferencing"] == {
        "provider": "Zoom Meeting",
        "autocreate": {"conf_grant_id": "zg-1"},
    }
    assert created.room_url is None


async def test_move_event_updates_in_place(provider: NylasCalendar, nylas: FakeNylas) -> None:
    """Nylas "Update an event": ``PUT …/events/{id}`` with ``calendar_id`` and
    ``notify_participants=false``; same id, new time and title."""
    account = await connected(provider, nylas)
    created = await provider.create_event(account, draft(at(4, 9), at(4, 10)))
    await provider.move_event(account, created.event_id, draft(at(5, 14), at(5, 15), "Moved"))

    (sent,) = nylas.received("PUT /v3/grants/")
    assert sent.path.endswith(f"/events/{created.event_id}")
    assert sent.query == {"calendar_id": USER, "notify_participants": "false"}
    (event,) = nylas.events(USER)
    assert event["id"] == created.event_id
    assert event["title"] == "Moved"
    assert event["when"]["start_time"] == int(at(5, 14).timestamp())
    assert event["metadata"][MARKER_KEY] == MARKER_VALUE
    assert nylas.invitations == []


async def test_cancel_event_and_one_already_gone(provider: NylasCalendar, nylas: FakeNylas) -> None:
    """Nylas "Delete an event": ``DELETE …/events/{id}`` with ``calendar_id``; a second delete
    is 404 ``not_found_error``, which means already gone: no error."""
    account = await connected(provider, nylas)
    created = await provider.create_event(account, draft(at(4, 9), at(4, 10)))
    await provider.cancel_event(account, created.event_id)
    assert nylas.events(USER) == []
    await provider.cancel_event(account, created.event_id)

    deletes = nylas.received("DELETE /v3/grants/")
    assert len(deletes) == 2
    assert all(r.query == {"calendar_id": USER, "notify_participants": "false"} for r in deletes)


async def test_cancel_on_an_unknown_grant_is_a_refusal(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas error types: ``grant.not_found`` (404) is about the grant, not the event: it is
    never taken for "already gone"."""
    account = await connected(provider, nylas)
    gone = CalendarAccount(**{**account.__dict__, "credentials": {"grant_id": "deleted-grant"}})
    with pytest.raises(CalendarAuthError, match="no such grant"):
        await provider.cancel_event(gone, "some-event")


# --- busy ------------------------------------------------------------------------------------


async def test_busy_is_foreign_only(provider: NylasCalendar, nylas: FakeNylas) -> None:
    """Nylas "Get free/busy schedule" counts our own events too; the events listing
    (``expand_recurring=true``) removes them, and free (``busy: false``) events never count."""
    account = await connected(provider, nylas)
    nylas.add_busy(USER, at(4, 8), at(4, 9, 30))
    nylas.add_busy(USER, at(4, 12), at(4, 13), title="Focus", free=True)
    await provider.create_event(account, draft(at(4, 10), at(4, 11)))

    assert await provider.busy(account, at(4, 9), at(4, 18)) == [iv(at(4, 9), at(4, 9, 30))]

    (asked,) = nylas.received("POST /v3/grants/")[-1:]
    assert asked.path.endswith("/calendars/free-busy")
    assert asked.json() == {
        "start_time": int(at(4, 9).timestamp()),
        "end_time": int(at(4, 18).timestamp()),
        "emails": [USER],
    }
    (listed,) = listings(nylas)
    assert listed.query["expand_recurring"] == "true"
    assert listed.query["calendar_id"] == USER


async def test_busy_keeps_foreign_time_under_our_own_event(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Our event's time is removed from free/busy only where no foreign busy event covers it."""
    account = await connected(provider, nylas)
    await provider.create_event(account, draft(at(4, 10), at(4, 12)))
    nylas.add_busy(USER, at(4, 11), at(4, 13))

    assert await provider.busy(account, at(4, 0), at(5, 0)) == [iv(at(4, 11), at(4, 13))]


async def test_busy_with_nothing_busy_asks_free_busy_only(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """An empty free/busy answer needs no confirmation: no events listing is requested."""
    account = await connected(provider, nylas)
    nylas.requests.clear()
    assert await provider.busy(account, at(4, 9), at(4, 18)) == []
    assert [r.method for r in nylas.requests] == ["POST"]


async def test_busy_falls_back_to_the_events_when_free_busy_fails_for_the_email(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas free/busy answers 200 with an ``"object": "error"`` entry for an address it cannot
    resolve; the calendar's own events then give the busy time."""
    account = await connected(provider, nylas)
    nylas.add_recurring(USER, at(1, 9), at(1, 10), count=3, freq="DAILY")
    odd = CalendarAccount(
        **{**account.__dict__, "credentials": {**account.credentials, "email": "x@unknown.test"}}
    )
    assert await provider.busy(odd, at(2, 0), at(4, 0)) == [
        iv(at(2, 9), at(2, 10)),
        iv(at(3, 9), at(3, 10)),
    ]


async def test_busy_longer_than_30_days_is_asked_in_pieces(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas free/busy covers at most 30 days a request: a longer span is split."""
    account = await connected(provider, nylas)
    nylas.add_busy(USER, at(20, 9), at(20, 10, month=4))
    busy = await provider.busy(account, at(1, 0), at(1, 0, month=5))

    assert busy == [iv(at(20, 9), at(20, 10, month=4))]
    pieces = [r.json() for r in nylas.received("POST /v3/grants/")]
    assert len(pieces) == 3
    assert all(p["end_time"] - p["start_time"] <= 30 * 86400 for p in pieces)
    assert pieces[0]["start_time"] == int(at(1, 0).timestamp())
    assert pieces[-1]["end_time"] == int(at(1, 0, month=5).timestamp())


# --- sync ------------------------------------------------------------------------------------


async def test_sync_lists_the_window_in_full_with_recurrences_and_pages(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas "Return all events": ``expand_recurring=true``, ``limit=200``, pages followed with
    ``page_token`` = ``next_cursor``; always a full batch with no state (v3 has no sync token).
    Ours and free events are keys without intervals; busy time is clipped to the window; an
    all-day ``date`` is one UTC day."""
    account = await connected(provider, nylas)
    nylas.page_size = 2
    dentist = nylas.add_busy(USER, at(2, 9), at(2, 10))
    early = nylas.add_busy(USER, at(28, 23, month=2), at(1, 1))
    free = nylas.add_busy(USER, at(3, 9), at(3, 10), free=True)
    weekly = nylas.add_recurring(USER, at(8, 9), at(8, 10), count=3)
    holiday = nylas.add_event(USER, {"title": "Off", "when": {"date": "2027-03-20"}})
    ours = await provider.create_event(account, draft(at(4, 9), at(4, 10)))

    batch = await provider.sync(account, None, WINDOW)

    assert batch.full is True
    assert batch.state is None
    expected = {
        dentist: (iv(at(2, 9), at(2, 10)),),
        early: (iv(at(1, 0), at(1, 1)),),
        free: (),
        f"{weekly}_20270308T090000Z": (iv(at(8, 9), at(8, 10)),),
        f"{weekly}_20270315T090000Z": (iv(at(15, 9), at(15, 10)),),
        f"{weekly}_20270322T090000Z": (iv(at(22, 9), at(22, 10)),),
        holiday: (iv(at(20, 0), at(21, 0)),),
        ours.event_id: (),
    }
    assert batch.changes == tuple(MirrorChange(k, v) for k, v in sorted(expected.items()))
    lists = listings(nylas)
    assert len(lists) == 4  # 8 events, 2 a page
    assert "page_token" not in lists[0].query
    assert all("page_token" in r.query for r in lists[1:])
    assert all(r.query["limit"] == "200" and r.query["expand_recurring"] == "true" for r in lists)
    assert lists[0].query["start"] == str(int(WINDOW.start.timestamp()))
    assert lists[0].query["end"] == str(int(WINDOW.end.timestamp()))


async def test_sync_with_a_previous_state_is_still_full(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """No Nylas v3 event delta: a sync "since" a state (even an unknown, expired one) lists
    everything again, so an event deleted in between is missing from a full batch."""
    account = await connected(provider, nylas)
    kept = nylas.add_busy(USER, at(2, 9), at(2, 10))
    removed = nylas.add_busy(USER, at(3, 9), at(3, 10))
    first = await provider.sync(account, None, WINDOW)
    assert {c.key for c in first.changes} == {kept, removed}

    nylas.remove_event(USER, removed)
    again = await provider.sync(account, "an-expired-or-foreign-state", WINDOW)
    assert again.full is True
    assert again.state is None
    assert again.changes == (MirrorChange(kept, (iv(at(2, 9), at(2, 10)),)),)


# --- failures --------------------------------------------------------------------------------


async def test_a_401_is_tried_once_more_then_succeeds(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """``calendars/http.py``: a 401 asks the token source again once (for Nylas, the API key
    again) and repeats the request, which succeeds."""
    account = await connected(provider, nylas)
    nylas.fail("GET /v3/grants/", 401, {"request_id": "r", "error": {"type": "unauthorized"}})
    batch = await provider.sync(account, None, WINDOW)
    assert batch.full is True
    lists = listings(nylas)
    assert [r.headers["authorization"] for r in lists] == [f"Bearer {nylas.api_key}"] * 2


async def test_a_revoked_grant_is_a_refusal(provider: NylasCalendar, nylas: FakeNylas) -> None:
    """A grant whose user revoked access: Nylas answers 401 with the provider's
    ``invalid_grant`` as ``provider_error``; every operation raises CalendarAuthError."""
    account = await connected(provider, nylas)
    nylas.revoke(USER)
    with pytest.raises(CalendarAuthError, match=r"invalid_grant|refused the grant") as caught:
        await provider.sync(account, None, WINDOW)
    assert nylas.api_key not in str(caught.value)
    with pytest.raises(CalendarAuthError):
        await provider.create_event(account, draft(at(4, 9), at(4, 10)))
    with pytest.raises(CalendarAuthError):
        await provider.busy(account, at(4, 9), at(4, 10))


async def test_a_bare_401_is_settled_by_asking_for_the_grant(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """A 401 with no grant type and no provider error: ``GET /v3/grants/{id}`` (API key only)
    tells. A grant answered ``invalid`` → CalendarAuthError; a 401 there too → the API key,
    a CalendarError."""
    account = await connected(provider, nylas)
    bare = {"request_id": "r", "error": {"type": "unauthorized", "message": "Unauthorized"}}

    nylas.fail("/events", 401, bare, times=2)
    nylas.revoke(USER)  # the grant record now says invalid
    with pytest.raises(CalendarAuthError, match="grant invalid: reconnect"):
        await provider.sync(account, None, WINDOW)

    nylas.reset()
    account = await connected(provider, nylas)
    nylas.fail("/events", 401, bare, times=2)
    nylas.fail(f"GET /v3/grants/{nylas.grant_id(USER)}", 401, bare, times=2)
    with pytest.raises(CalendarError, match="CLOSERDESK_NYLAS_API_KEY") as caught:
        await provider.sync(account, None, WINDOW)
    assert not isinstance(caught.value, CalendarAuthError)


async def test_429_waits_for_retry_after(provider: NylasCalendar, nylas: FakeNylas) -> None:
    """Nylas "Rate limits": a 429 ``rate_limit_error`` with ``Retry-After: 1`` is waited for
    (a second at least) and the request repeated."""
    account = await connected(provider, nylas)
    nylas.fail(
        "GET /v3/grants/",
        429,
        {"request_id": "r", "error": {"type": "rate_limit_error", "message": "Too many"}},
        headers={"Retry-After": "1"},
    )
    started = time.monotonic()
    await provider.sync(account, None, WINDOW)
    assert time.monotonic() - started >= 0.95
    assert len(listings(nylas)) == 2


async def test_5xx_is_retried(provider: NylasCalendar, nylas: FakeNylas) -> None:
    """``calendars/http.py``: a 504 ``provider_error`` on a read is tried again."""
    account = await connected(provider, nylas)
    nylas.fail(
        "/events",
        504,
        {"request_id": "r", "error": {"type": "provider_error", "message": "timed out"}},
        times=2,
    )
    nylas.add_busy(USER, at(2, 9), at(2, 10))
    batch = await provider.sync(account, None, WINDOW)
    assert len(batch.changes) == 1
    assert len(listings(nylas)) == 3


async def test_a_create_is_retried_after_429_but_not_after_500(
    provider: NylasCalendar, nylas: FakeNylas
) -> None:
    """Nylas takes no idempotency key: a 429 (refused before any work) is retried, a 500 (the
    event may exist) is not, so no event is ever made twice."""
    account = await connected(provider, nylas)
    nylas.fail("POST /v3/grants/", 429, headers={"Retry-After": "0"})
    await provider.create_event(account, draft(at(4, 9), at(4, 10)))
    assert len(nylas.received("POST /v3/grants/")) == 2
    assert len(nylas.events(USER)) == 1

    nylas.fail("POST /v3/grants/", 500)
    with pytest.raises(CalendarError):
        await provider.create_event(account, draft(at(5, 9), at(5, 10)))
    assert len(nylas.received("POST /v3/grants/")) == 3


async def test_a_timed_out_create_is_not_retried(nylas: FakeNylas) -> None:
    """``CLOSERDESK_CALENDAR_TIMEOUT_SECONDS`` bounds each request; a create that timed out is
    a CalendarError and is never sent again (Nylas may have made it: here it did)."""
    slow = NylasCalendar(settings_for(nylas, calendar_timeout_seconds=0.5), policy=FAST)
    try:
        account = await slow.connect(unconnected(nylas))
        nylas.fail("POST /v3/grants/", delay=1.0, then_pass=True)
        with pytest.raises(CalendarError, match="timed out"):
            await slow.create_event(account, draft(at(4, 9), at(4, 10)))
        await asyncio.sleep(0.8)
    finally:
        await slow.aclose()
    assert len(nylas.received("POST /v3/grants/")) == 1
    assert len(nylas.events(USER)) == 1


async def test_no_push_channels(provider: NylasCalendar) -> None:
    """Nylas webhooks are set up once per application (``POST /v3/webhooks``), not per
    calendar: the provider offers no ``watch``/``unwatch``."""
    assert not isinstance(provider, PushProvider)
    assert not hasattr(provider, "watch")


# --- notifications ---------------------------------------------------------------------------


def test_verify_signature() -> None:
    """Nylas webhooks: ``X-Nylas-Signature`` is the hex HMAC-SHA256 of the raw body keyed with
    the webhook secret; anything else (no header, other body, other secret) is refused."""
    body = b'{"type":"event.created"}'
    signature = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify_signature("s3cret", body, signature)
    assert verify_signature("s3cret", body, signature.upper())
    assert not verify_signature("s3cret", body, None)
    assert not verify_signature("s3cret", body, "0" * 64)
    assert not verify_signature("other", body, signature)
    assert not verify_signature("s3cret", body + b" ", signature)
    assert not verify_signature("", body, signature)


def test_fake_notifications_are_signed_and_parse(nylas: FakeNylas) -> None:
    """Nylas notification schemas: ``event.created``/``event.deleted`` carry the event's
    ``grant_id``, ``calendar_id`` and ``id`` in ``data.object``; ``grant.expired`` the grant."""
    grant = nylas.add_user(USER)
    event_id = nylas.add_busy(USER, at(4, 9), at(4, 10))
    nylas.remove_event(USER, event_id)
    nylas.revoke(USER)

    taken = nylas.take_notifications()
    assert nylas.take_notifications() == []
    parsed = []
    for path, headers, body in taken:
        assert path == "/hooks/nylas"
        assert headers["content-type"] == "application/json"
        assert verify_signature(nylas.webhook_secret, body, headers["x-nylas-signature"])
        assert json.loads(body)["specversion"] == "1.0"
        parsed.append(parse_notification(body))
    assert parsed == [
        NylasNotification("event.created", grant, USER, event_id),
        NylasNotification("event.deleted", grant, USER, event_id),
        NylasNotification("grant.expired", grant, None, None),
    ]
    challenge = nylas.challenge()
    assert challenge
    assert challenge != nylas.challenge()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"type": "event.created"}',
        b'{"type": "event.created", "data": {"object": {"id": "e1"}}}',
        b'{"data": {"object": {"grant_id": "g1"}}}',
    ],
)
def test_parse_notification_refuses_unreadable_bodies(body: bytes) -> None:
    """A body without JSON, a ``type``, ``data.object`` or its ``grant_id`` is a ValueError."""
    with pytest.raises(ValueError, match=r"."):
        parse_notification(body)


def test_subtract() -> None:
    """Interval difference used by ``busy``: cuts inside, across and around intervals."""
    assert subtract([iv(at(4, 8), at(4, 12))], [iv(at(4, 9), at(4, 10))]) == [
        iv(at(4, 8), at(4, 9)),
        iv(at(4, 10), at(4, 12)),
    ]
    assert subtract([iv(at(4, 8), at(4, 9))], [iv(at(4, 7), at(4, 10))]) == []
    assert subtract([iv(at(4, 8), at(4, 9))], []) == [iv(at(4, 8), at(4, 9))]
    assert subtract(
        [iv(at(4, 8), at(4, 9)), iv(at(4, 10), at(4, 11))], [iv(at(4, 8, 30), at(4, 10, 30))]
    ) == [iv(at(4, 8), at(4, 8, 30)), iv(at(4, 10, 30), at(4, 11))]


async def test_the_fake_refuses_what_nylas_refuses(nylas: FakeNylas) -> None:
    """The fake answers like Nylas' reference: no bearer → 401 ``unauthorized``; no
    ``calendar_id`` on an events endpoint → 400 ``invalid_request_error``; an unknown grant →
    404 ``grant.not_found``; ``limit`` over 200 → 400. All in the ``request_id``/``error``
    envelope."""
    grant = nylas.add_user(USER)
    auth = {"Authorization": f"Bearer {nylas.api_key}"}
    when = {"start_time": 1_800_000_000, "end_time": 1_800_003_600}
    async with httpx.AsyncClient(base_url=nylas.url) as client:
        no_key = await client.get(f"/v3/grants/{grant}")
        no_calendar = await client.post(
            f"/v3/grants/{grant}/events", json={"when": when}, headers=auth
        )
        unknown = await client.get("/v3/grants/nope/events?calendar_id=primary", headers=auth)
        too_many = await client.get(
            f"/v3/grants/{grant}/events?calendar_id=primary&limit=500", headers=auth
        )
    assert (no_key.status_code, no_key.json()["error"]["type"]) == (401, "unauthorized")
    assert no_calendar.status_code == 400
    assert no_calendar.json()["error"]["type"] == "invalid_request_error"
    assert (unknown.status_code, unknown.json()["error"]["type"]) == (404, "grant.not_found")
    assert too_many.status_code == 400
    assert all("request_id" in r.json() for r in (no_key, no_calendar, unknown, too_many))
    assert nylas.events(USER) == []
