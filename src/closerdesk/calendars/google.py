"""The Google Calendar provider: Google Calendar API v3 over OAuth 2.0.

Reference: https://developers.google.com/calendar/api/v3/reference (events, freeBusy, calendars,
channels), https://developers.google.com/calendar/api/guides/sync (sync tokens),
https://developers.google.com/calendar/api/guides/push (push notifications) and
https://developers.google.com/calendar/api/guides/errors (error bodies and what to retry).

Credentials (``CalendarAccount.credentials``): ``refresh_token`` (from the OAuth consent, see
``calendars/oauth.py``) and optional ``conferencing`` (``"google_meet"``: each event gets its
own Google Meet room). ``calendar_id`` is a Google calendar id; ``"primary"`` (or empty) is the
user's main calendar, which ``connect`` resolves to its real id (the account's email address).

Rules this module follows (``docs/calendars.md``):

- **Every request** goes through ``ProviderHttp`` (bounded, retried, 401 → one token refresh).
  Besides 429 and 5xx, a **403 whose reason is** ``rateLimitExceeded`` **or**
  ``userRateLimitExceeded`` is retried ("Handle API errors": both are rate limits, answered
  with 403 or 429). Other 401/403 answers (``authError``, ``forbidden``,
  ``insufficientPermissions``…) are refusals (``CalendarAuthError``), except the project-wide
  quotas ``dailyLimitExceeded`` and ``quotaExceeded``, which are closerdesk's problem and
  become a plain ``CalendarError``.
- **Events we write** get a client-chosen id (``cd`` + 32 hex digits: base32hex, as
  ``events.insert`` requires, 5–1024 characters), so a create retried after a timeout answers
  409 ``duplicate`` instead of making a second event: the first attempt's event is read back and
  returned. They carry ``extendedProperties.private.closerdesk_call_id`` (``CALL_ID_PROPERTY``),
  which marks them as ours: never foreign busy time. Inserts, patches and deletes all pass
  ``sendUpdates=none``, so Google emails no one (the lead is an attendee only so the event
  shows who the call is with).
- **Google Meet**: with ``conferencing = "google_meet"`` the insert carries
  ``conferenceData.createRequest`` (``conferenceSolutionKey.type = "hangoutsMeet"``) and
  ``conferenceDataVersion=1``; the room's URL is ``hangoutLink`` or the ``video`` entry point.
  Room creation may still be ``pending`` in the insert's answer; the event is then read again a
  few times (``CONFERENCE_POLL_SECONDS``) before giving up on the room (``room_url=None``: the
  call's own link still works).
- **Busy time** (``busy``): ``freeBusy.query`` first; it cannot tell our own events from
  foreign ones, so when it reports busy time the events of the interval are listed
  (``events.list``, ``singleEvents=true``) and only foreign, opaque, not-cancelled,
  not-declined events count, intersected with what freeBusy reported.
- **Sync** (``sync``): ``events.list`` with ``singleEvents=true`` (recurring events as their
  instances), paged with ``pageToken`` until ``nextSyncToken``; a full sync is bounded by
  ``timeMin``/``timeMax`` (the window), an incremental one passes only ``syncToken``. A
  **410 Gone** (``fullSyncRequired``) means the token expired: a full sync follows.
- **All-day events** (``start.date``) are read as UTC days: an all-day event on 2027-03-04 is
  busy ``[2027-03-04T00:00Z, 2027-03-05T00:00Z)``, as for CalDAV.
- **Push**: ``events.watch`` opens a ``web_hook`` channel posting to our ``/hooks/google``;
  ``parse_notification`` reads the ``X-Goog-*`` headers of what Google posts there.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from closerdesk.calendars.http import ProviderHttp, RetryPolicy, TokenGetter
from closerdesk.calendars.oauth import TokenSource
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    CreatedEvent,
    EventDraft,
    MirrorChange,
    PushChannel,
    SyncBatch,
)
from closerdesk.config import Settings
from closerdesk.scheduling.intervals import Interval, merge

log = structlog.get_logger(__name__)

CALL_ID_PROPERTY = "closerdesk_call_id"
"""The private extended property every event we write carries (the call's id): ours."""
GOOGLE_MEET = "google_meet"
"""The ``conferencing`` credential asking for a Google Meet room per event."""
MEET_SOLUTION = "hangoutsMeet"
"""Google Calendar API v3, ``conferenceSolutionKey.type`` of Google Meet."""
WATCH_TTL_SECONDS = 7 * 24 * 3600
"""Lifetime asked for a push channel (``params.ttl``, seconds); Google may grant less."""
CONFERENCE_POLL_SECONDS: tuple[float, ...] = (0.5, 1.0, 2.0)
"""Waits (seconds) before reading an event again while its Meet room is ``pending``."""
PAGE_SIZE = 250
"""``maxResults`` per ``events.list`` page (Google's default; its maximum is 2500)."""
MAX_PAGES = 400
"""How many pages one listing follows before giving up (100 000 events at ``PAGE_SIZE``)."""

RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
"""403 reasons that are rate limits, retried like a 429 ("Handle API errors")."""
QUOTA_REASONS = frozenset({"dailyLimitExceeded", "quotaExceeded"})
"""403 reasons about closerdesk's project quotas: failures, not the member's refusal."""
RESOURCE_STATES = frozenset({"sync", "exists", "not_exists"})
"""``X-Goog-Resource-State`` values of a Calendar events channel (push guide)."""

_STATE_VERSION = 1


# --- pure helpers ------------------------------------------------------------------------------


def error_reasons(response: httpx.Response) -> set[str]:
    """The ``error.errors[].reason`` values of a Google error body (empty when unreadable)."""
    try:
        body = response.json()
    except ValueError:
        return set()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return set()
    reasons = set()
    for item in error.get("errors") or ():
        if isinstance(item, dict) and isinstance(item.get("reason"), str):
            reasons.add(item["reason"])
    return reasons


def is_retryable(response: httpx.Response) -> bool:
    """429, 5xx, and a 403 whose reason is a rate limit (Google Calendar API v3, "Handle API
    errors": ``rateLimitExceeded``, ``userRateLimitExceeded``)."""
    if response.status_code == 429 or response.status_code >= 500:
        return True
    return response.status_code == 403 and bool(error_reasons(response) & RATE_LIMIT_REASONS)


def is_refused(response: httpx.Response) -> bool:
    """401, and a 403 that is not about rates or closerdesk's quotas (``forbidden``,
    ``insufficientPermissions``, ``authError``…): the member's grant does not allow it."""
    if response.status_code == 401:
        return True
    if response.status_code != 403:
        return False
    return not (error_reasons(response) & (RATE_LIMIT_REASONS | QUOTA_REASONS))


def rfc3339(value: datetime) -> str:
    """An aware datetime as the RFC 3339 UTC timestamp Google takes (``…Z``)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_event_id() -> str:
    """A fresh event id Google accepts (``events.insert``: base32hex characters ``0-9a-v``,
    5 to 1024 of them): ``cd`` and 32 hex digits."""
    return "cd" + uuid.uuid4().hex


def event_time(value: Mapping[str, Any] | None) -> datetime | None:
    """An event's ``start``/``end`` as aware UTC: ``dateTime`` (RFC 3339 with an offset), or an
    all-day ``date`` read as midnight UTC. None when absent or unreadable."""
    if not isinstance(value, Mapping):
        return None
    try:
        if isinstance(value.get("dateTime"), str):
            parsed = datetime.fromisoformat(value["dateTime"])
            if parsed.tzinfo is None:  # Google always sends an offset; be safe anyway
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        if isinstance(value.get("date"), str):
            return datetime.combine(date.fromisoformat(value["date"]), time.min, tzinfo=UTC)
    except ValueError:
        return None
    return None


def is_own(event: Mapping[str, Any]) -> bool:
    """True for an event closerdesk wrote (``extendedProperties.private.closerdesk_call_id``)."""
    extended = event.get("extendedProperties")
    private = extended.get("private") if isinstance(extended, Mapping) else None
    return isinstance(private, Mapping) and CALL_ID_PROPERTY in private


def is_free(event: Mapping[str, Any]) -> bool:
    """Cancelled, ``transparency: "transparent"`` (shows as available), or declined by the
    calendar's owner (``attendees[].self`` with ``responseStatus: "declined"``)."""
    if event.get("status") == "cancelled" or event.get("transparency") == "transparent":
        return True
    for attendee in event.get("attendees") or ():
        if (
            isinstance(attendee, Mapping)
            and attendee.get("self")
            and attendee.get("responseStatus") == "declined"
        ):
            return True
    return False


def event_intervals(event: Mapping[str, Any], start: datetime, end: datetime) -> list[Interval]:
    """The foreign busy time of one event (or instance) inside ``[start, end)``: empty for our
    own events and free ones (``is_own``, ``is_free``)."""
    if is_own(event) or is_free(event):
        return []
    event_start, event_end = event_time(event.get("start")), event_time(event.get("end"))
    if event_start is None or event_end is None:
        return []
    clipped_start, clipped_end = max(event_start, start), min(event_end, end)
    if clipped_start < clipped_end:
        return [Interval(clipped_start, clipped_end)]
    return []


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The instants in both sets of intervals, merged."""
    left, right = merge(a), merge(b)
    found: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i].start, right[j].start)
        end = min(left[i].end, right[j].end)
        if start < end:
            found.append(Interval(start, end))
        if left[i].end < right[j].end:
            i += 1
        else:
            j += 1
    return merge(found)


def join_url(event: Mapping[str, Any]) -> str | None:
    """The Meet room of an event: ``hangoutLink``, else the ``conferenceData.entryPoints``
    entry of ``entryPointType: "video"``; None without one."""
    link = event.get("hangoutLink")
    if isinstance(link, str) and link:
        return link
    conference = event.get("conferenceData")
    if isinstance(conference, Mapping):
        for entry in conference.get("entryPoints") or ():
            if (
                isinstance(entry, Mapping)
                and entry.get("entryPointType") == "video"
                and isinstance(entry.get("uri"), str)
            ):
                return str(entry["uri"])
    return None


def conference_status(event: Mapping[str, Any]) -> str | None:
    """``conferenceData.createRequest.status.statusCode`` (``pending``, ``success``,
    ``failure``), None without a create request."""
    conference = event.get("conferenceData")
    request = conference.get("createRequest") if isinstance(conference, Mapping) else None
    status = request.get("status") if isinstance(request, Mapping) else None
    code = status.get("statusCode") if isinstance(status, Mapping) else None
    return str(code) if code is not None else None


def event_body(draft: EventDraft, event_id: str | None, *, meet: bool) -> dict[str, Any]:
    """The Event resource closerdesk writes for a call (Google Calendar API v3, Events).

    ``event_id`` is set on insert only; ``meet`` adds a Google Meet ``createRequest`` whose
    ``requestId`` is the event id (a retried insert asks for the same room). The event is opaque
    and confirmed (a move restores an event the closer deleted), times in UTC, the attendees
    without any notification (the request passes ``sendUpdates=none``).
    """
    body: dict[str, Any] = {
        "summary": draft.title,
        "description": draft.description,
        "location": draft.location,
        "start": {"dateTime": rfc3339(draft.starts_at), "timeZone": "UTC"},
        "end": {"dateTime": rfc3339(draft.ends_at), "timeZone": "UTC"},
        "attendees": [{"email": email} for email in draft.attendees],
        "status": "confirmed",
        "transparency": "opaque",
        "guestsCanInviteOthers": False,
        "extendedProperties": {"private": {CALL_ID_PROPERTY: draft.call_id}},
    }
    if event_id is not None:
        body["id"] = event_id
    if meet and event_id is not None:
        body["conferenceData"] = {
            "createRequest": {
                "requestId": event_id,
                "conferenceSolutionKey": {"type": MEET_SOLUTION},
            }
        }
    return body


@dataclass(frozen=True)
class GoogleNotification:
    """One push notification of a Google Calendar channel (push guide, "Receiving
    notifications"): which channel (``channel_id``, our ``token`` echoed back), which resource
    (``resource_id``), ``resource_state`` (``sync`` right after the watch, then ``exists``;
    ``not_exists`` when the resource is gone) and the channel's ``message_number``."""

    channel_id: str
    token: str
    resource_id: str
    resource_state: str
    message_number: int


def parse_notification(headers: Mapping[str, str]) -> GoogleNotification | None:
    """The notification in a request's headers (names compared case-insensitively); None when
    it is not a Google Calendar notification: ``X-Goog-Channel-ID``, ``X-Goog-Resource-ID``
    or a known ``X-Goog-Resource-State`` missing. ``X-Goog-Channel-Token`` is ``""`` when
    absent; an absent or unreadable ``X-Goog-Message-Number`` is 0."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    channel_id = lowered.get("x-goog-channel-id", "").strip()
    resource_id = lowered.get("x-goog-resource-id", "").strip()
    state = lowered.get("x-goog-resource-state", "").strip()
    if not channel_id or not resource_id or state not in RESOURCE_STATES:
        return None
    number_text = lowered.get("x-goog-message-number", "").strip()
    number = int(number_text) if number_text.isdigit() else 0
    return GoogleNotification(
        channel_id=channel_id,
        token=lowered.get("x-goog-channel-token", ""),
        resource_id=resource_id,
        resource_state=state,
        message_number=number,
    )


def token_matches(notification: GoogleNotification, expected: str) -> bool:
    """True when the notification carries the channel token closerdesk gave (compared in
    constant time); an empty expected token never matches."""
    return bool(expected) and hmac.compare_digest(notification.token.encode(), expected.encode())


# --- sync state --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """The opaque ``SyncBatch.state``: JSON ``{"v":1,"calendar":…,"token":…,"series":[…]}``.

    ``token`` is Google's ``nextSyncToken``; ``series`` the recurring events (``recurringEventId``)
    whose instances are mirrored: if one of them shows up itself in an incremental listing (a
    whole series deleted or rewritten), its instances cannot be told apart, so a full sync
    follows.
    """

    calendar: str
    token: str
    series: frozenset[str]

    def dump(self) -> str:
        return json.dumps(
            {
                "v": _STATE_VERSION,
                "calendar": self.calendar,
                "token": self.token,
                "series": sorted(self.series),
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, raw: str | None, calendar: str) -> _State | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            if data.get("v") != _STATE_VERSION or data.get("calendar") != calendar:
                return None
            token = data["token"]
            if not isinstance(token, str) or not token:
                return None
            return cls(calendar, token, frozenset(str(s) for s in data.get("series") or ()))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class _FullSyncRequired(Exception):
    """events.list answered 410 Gone: the sync token expired (sync guide)."""


# --- the provider ------------------------------------------------------------------------------


class GoogleCalendar:
    """``CalendarProvider`` and ``PushProvider`` for Google Calendar API v3 (see the module
    docstring). ``tokens``: the access tokens (default: one ``TokenSource`` on the settings'
    Google OAuth client; the provider closes it with its own client); ``transport`` routes the
    API's requests elsewhere in tests."""

    name = "google"

    def __init__(
        self,
        settings: Settings,
        *,
        tokens: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = settings.google_api_uri.rstrip("/")
        self._http = ProviderHttp(
            "Google Calendar",
            timeout=settings.calendar_timeout_seconds,
            policy=RetryPolicy(budget=settings.calendar_retry_seconds),
            retryable=is_retryable,
            refused=is_refused,
            transport=transport,
        )
        self._tokens = tokens or TokenSource.for_provider(settings, "google")

    async def aclose(self) -> None:
        """Close the HTTP clients this provider opened."""
        await self._http.aclose()
        await self._tokens.aclose()

    # -- plumbing --

    def _token(self, account: CalendarAccount) -> TokenGetter:
        return self._tokens.getter(account)

    @staticmethod
    def _calendar(account: CalendarAccount) -> str:
        return account.calendar_id or "primary"

    def _calendar_url(self, calendar_id: str) -> str:
        return f"{self._base}/calendars/{quote(calendar_id, safe='')}"

    def _event_url(self, calendar_id: str, event_id: str) -> str:
        return f"{self._calendar_url(calendar_id)}/events/{quote(event_id, safe='')}"

    @staticmethod
    def _json(response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CalendarError(f"Google Calendar sent an unreadable answer to {what}")
        return body

    # -- connect --

    async def connect(self, account: CalendarAccount) -> CalendarAccount:
        """Check the grant and resolve the calendar (Google Calendar API v3:
        ``calendarList.get``, which the ``calendar.calendarlist.readonly`` scope covers):
        returns the account with ``calendar_id`` = the calendar's real id (``"primary"``
        becomes the account's email address).

        Raises ``CalendarAuthError`` (no refresh token, a revoked grant, a 401/403 refusal),
        ``CalendarError`` (an unknown calendar: 404; one the account cannot write to, its
        ``accessRole`` neither ``owner`` nor ``writer``; Google Meet asked for on a calendar
        that does not allow it; any other failure).
        """
        conferencing = account.credentials.get("conferencing") or None
        if conferencing not in (None, GOOGLE_MEET):
            raise CalendarError(f"Google Calendar offers no '{conferencing}' conferencing")
        entry = quote(self._calendar(account), safe="")
        response = await self._http.request(
            "GET", f"{self._base}/users/me/calendarList/{entry}", token=self._token(account)
        )
        body = self._json(response, "calendarList.get")
        calendar_id = body.get("id")
        if not isinstance(calendar_id, str) or not calendar_id:
            raise CalendarError("Google Calendar did not say which calendar this is")
        if body.get("accessRole") not in ("owner", "writer"):
            raise CalendarError("closerdesk cannot write events to this Google calendar")
        if conferencing == GOOGLE_MEET:
            properties = body.get("conferenceProperties")
            allowed = (
                properties.get("allowedConferenceSolutionTypes")
                if isinstance(properties, Mapping)
                else None
            )
            if isinstance(allowed, list) and MEET_SOLUTION not in allowed:
                raise CalendarError("this Google calendar does not allow Google Meet rooms")
        return replace(account, calendar_id=calendar_id)

    # -- events --

    async def create_event(self, account: CalendarAccount, draft: EventDraft) -> CreatedEvent:
        """``events.insert`` with ``sendUpdates=none`` and a client-chosen id (idempotent: a
        retry that meets 409 ``duplicate`` reads the event the first attempt made); with
        Google Meet asked for, ``conferenceDataVersion=1`` and the room's URL in ``room_url``.
        Raises ``CalendarAuthError``, ``CalendarError``."""
        calendar_id = self._calendar(account)
        token = self._token(account)
        meet = account.credentials.get("conferencing") == GOOGLE_MEET
        event_id = new_event_id()
        params = {"sendUpdates": "none"}
        if meet:
            params["conferenceDataVersion"] = "1"
        try:
            response = await self._http.request(
                "POST",
                f"{self._calendar_url(calendar_id)}/events",
                token=token,
                params=params,
                json=event_body(draft, event_id, meet=meet),
                idempotent=True,  # the id is ours: a second insert answers 409, never a twin
                accept=(409,),
            )
        except CalendarError as exc:
            exc.maybe_created = event_id  # an unanswered insert may have made it: cancel by id
            raise
        if response.status_code == 409:
            # Only an earlier attempt of this very insert can hold this fresh id.
            log.info("google.insert_duplicate", event_id=event_id)
            response = await self._http.request(
                "GET", self._event_url(calendar_id, event_id), token=token
            )
        event = self._json(response, "events.insert")
        created_id = str(event.get("id") or event_id)
        room = await self._room(calendar_id, created_id, event, token) if meet else None
        return CreatedEvent(created_id, room)

    async def _room(
        self, calendar_id: str, event_id: str, event: Mapping[str, Any], token: TokenGetter
    ) -> str | None:
        """The event's Meet URL, reading the event again while its room is ``pending``
        (Google Calendar API v3, ``conferenceData.createRequest.status``)."""
        for wait in CONFERENCE_POLL_SECONDS:
            url = join_url(event)
            if url is not None or conference_status(event) != "pending":
                break
            await asyncio.sleep(wait)
            response = await self._http.request(
                "GET", self._event_url(calendar_id, event_id), token=token
            )
            event = self._json(response, "events.get")
        url = join_url(event)
        if url is None:
            log.warning(
                "google.meet_room_missing", event_id=event_id, status=conference_status(event)
            )
        return url

    async def move_event(self, account: CalendarAccount, event_id: str, draft: EventDraft) -> None:
        """``events.patch`` (``sendUpdates=none``): new time, title, location, description;
        ``status: "confirmed"`` puts back an event the closer deleted. The Meet room stays (the
        patch leaves ``conferenceData`` alone). Raises ``CalendarAuthError``, ``CalendarError``
        (404: the event is unknown)."""
        await self._http.request(
            "PATCH",
            self._event_url(self._calendar(account), event_id),
            token=self._token(account),
            params={"sendUpdates": "none"},
            json=event_body(draft, None, meet=False),
        )

    async def cancel_event(self, account: CalendarAccount, event_id: str) -> None:
        """``events.delete`` (``sendUpdates=none``); 404 (unknown) and 410 (already deleted)
        mean the event is gone already, which is success."""
        response = await self._http.request(
            "DELETE",
            self._event_url(self._calendar(account), event_id),
            token=self._token(account),
            params={"sendUpdates": "none"},
            accept=(404, 410),
        )
        if response.status_code in (404, 410):
            log.info("google.event_already_gone", status=response.status_code)

    # -- listing --

    async def _list(
        self, calendar_id: str, token: TokenGetter, params: Mapping[str, str], *, sync: bool
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Every event of an ``events.list`` query, following ``nextPageToken`` (same query
        each time), and the last page's ``nextSyncToken``. ``sync``: a 410 raises
        ``_FullSyncRequired``."""
        items: list[dict[str, Any]] = []
        page_token: str | None = None
        for _page in range(MAX_PAGES):
            query = dict(params)
            if page_token is not None:
                query["pageToken"] = page_token
            response = await self._http.request(
                "GET",
                f"{self._calendar_url(calendar_id)}/events",
                token=token,
                params=query,
                accept=(410,) if sync else (),
            )
            if response.status_code == 410:
                raise _FullSyncRequired
            body = self._json(response, "events.list")
            items.extend(item for item in body.get("items") or () if isinstance(item, dict))
            next_page = body.get("nextPageToken")
            if isinstance(next_page, str) and next_page:
                page_token = next_page
                continue
            sync_token = body.get("nextSyncToken")
            return items, sync_token if isinstance(sync_token, str) and sync_token else None
        raise CalendarError(f"Google Calendar listed more than {MAX_PAGES} pages of events")

    # -- busy --

    async def busy(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[Interval]:
        """Live foreign busy time in ``[start, end)``, merged, aware UTC.

        ``freeBusy.query`` for the calendar; a per-calendar ``errors`` entry fails the check
        (``notFound``: ``CalendarAuthError``, the calendar is gone or no longer shared; other
        reasons: ``CalendarError``). Busy time there is confirmed with ``events.list``
        (``singleEvents=true``, ``timeMin``/``timeMax``): only foreign, opaque, not
        cancelled and not declined events count, within what freeBusy reported.
        """
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if not start < end:
            return []
        calendar_id = self._calendar(account)
        token = self._token(account)
        response = await self._http.request(
            "POST",
            f"{self._base}/freeBusy",
            token=token,
            json={
                "timeMin": rfc3339(start),
                "timeMax": rfc3339(end),
                "timeZone": "UTC",
                "items": [{"id": calendar_id}],
            },
            idempotent=True,  # a query: asking twice changes nothing
        )
        calendars = self._json(response, "freeBusy.query").get("calendars")
        answer = calendars.get(calendar_id) if isinstance(calendars, Mapping) else None
        if not isinstance(answer, Mapping):
            raise CalendarError("Google Calendar's free/busy answer does not name the calendar")
        errors = [e for e in answer.get("errors") or () if isinstance(e, Mapping)]
        if errors:
            reasons = ", ".join(str(e.get("reason", "unknown")) for e in errors)
            if any(e.get("reason") == "notFound" for e in errors):
                raise CalendarAuthError(
                    f"Google Calendar: the calendar is not found or not shared ({reasons})"
                )
            raise CalendarError(f"Google Calendar free/busy failed for the calendar: {reasons}")
        reported: list[Interval] = []
        for period in answer.get("busy") or ():
            if not isinstance(period, Mapping):
                continue
            period_start = _timestamp(period.get("start"))
            period_end = _timestamp(period.get("end"))
            if period_start is None or period_end is None:
                continue
            clipped_start, clipped_end = max(period_start, start), min(period_end, end)
            if clipped_start < clipped_end:
                reported.append(Interval(clipped_start, clipped_end))
        if not reported:
            return []
        events, _ = await self._list(
            calendar_id,
            token,
            {
                "singleEvents": "true",
                "timeMin": rfc3339(start),
                "timeMax": rfc3339(end),
                "maxResults": str(PAGE_SIZE),
            },
            sync=False,
        )
        foreign = [i for event in events for i in event_intervals(event, start, end)]
        return intersect(foreign, reported)

    # -- sync --

    async def sync(
        self, account: CalendarAccount, state: str | None, window: Interval
    ) -> SyncBatch:
        """Foreign events changed since ``state``, busy time clipped to ``window``.

        Incremental (``events.list`` with ``syncToken`` and ``singleEvents=true``) when
        ``state`` is a state of this calendar: every event listed, with its busy time in the
        window (empty when cancelled, free, ours or outside it); keys are Google's event ids
        (an instance's id for a recurring event). Otherwise, or when Google answers 410 Gone,
        or a whole recurring series shows up: a full batch of every foreign event with busy
        time in the window (``timeMin``/``timeMax``). The state is JSON (see ``_State``).
        """
        calendar_id = self._calendar(account)
        token = self._token(account)
        window = Interval(window.start.astimezone(UTC), window.end.astimezone(UTC))
        previous = _State.load(state, calendar_id)
        if previous is not None:
            try:
                items, next_token = await self._list(
                    calendar_id,
                    token,
                    {
                        "singleEvents": "true",
                        "syncToken": previous.token,
                        "maxResults": str(PAGE_SIZE),
                    },
                    sync=True,
                )
            except _FullSyncRequired:
                log.info("google.full_sync_required", calendar=calendar_id)
            else:
                if not any(item.get("id") in previous.series for item in items):
                    series = set(previous.series) | _series(items)
                    changes = tuple(
                        MirrorChange(
                            str(item["id"]),
                            tuple(event_intervals(item, window.start, window.end)),
                        )
                        for item in items
                        if item.get("id")
                    )
                    new_state = _State(calendar_id, _required(next_token), frozenset(series))
                    return SyncBatch(state=new_state.dump(), full=False, changes=changes)
                log.info("google.series_changed_full_sync", calendar=calendar_id)
        return await self._full_sync(calendar_id, token, window)

    async def _full_sync(self, calendar_id: str, token: TokenGetter, window: Interval) -> SyncBatch:
        items, next_token = await self._list(
            calendar_id,
            token,
            {
                "singleEvents": "true",
                "timeMin": rfc3339(window.start),
                "timeMax": rfc3339(window.end),
                "maxResults": str(PAGE_SIZE),
            },
            sync=True,  # a 410 here would be odd, but means the same
        )
        changes = []
        for item in items:
            intervals = event_intervals(item, window.start, window.end)
            if item.get("id") and intervals:
                changes.append(MirrorChange(str(item["id"]), tuple(intervals)))
        new_state = _State(calendar_id, _required(next_token), frozenset(_series(items)))
        return SyncBatch(state=new_state.dump(), full=True, changes=tuple(changes))

    # -- push --

    async def watch(self, account: CalendarAccount, address: str, token: str) -> PushChannel:
        """``events.watch`` on the account's calendar: a new ``web_hook`` channel (id: a UUID)
        posting to ``address`` with ``token`` echoed in ``X-Goog-Channel-Token``, asked to live
        ``WATCH_TTL_SECONDS``. Google's ``expiration`` (epoch milliseconds) becomes
        ``expires_at`` (UTC). Not retried after a timeout (a second channel would be made).
        Raises ``CalendarAuthError``, ``CalendarError``."""
        channel_id = str(uuid.uuid4())
        response = await self._http.request(
            "POST",
            f"{self._calendar_url(self._calendar(account))}/events/watch",
            token=self._token(account),
            json={
                "id": channel_id,
                "type": "web_hook",
                "address": address,
                "token": token,
                "params": {"ttl": str(WATCH_TTL_SECONDS)},
            },
        )
        body = self._json(response, "events.watch")
        resource_id = body.get("resourceId")
        if not isinstance(resource_id, str) or not resource_id:
            raise CalendarError("Google Calendar opened a channel without a resourceId")
        expires_at = datetime.now(UTC) + timedelta(seconds=WATCH_TTL_SECONDS)
        expiration = str(body.get("expiration") or "")
        if expiration.isdigit():
            expires_at = datetime.fromtimestamp(int(expiration) / 1000, UTC)
        return PushChannel(
            channel_id=str(body.get("id") or channel_id),
            resource_id=resource_id,
            expires_at=expires_at,
        )

    async def unwatch(self, account: CalendarAccount, channel: PushChannel) -> None:
        """``channels.stop`` (``id``, ``resourceId``); a 404 (the channel expired or was
        stopped already) is success."""
        await self._http.request(
            "POST",
            f"{self._base}/channels/stop",
            token=self._token(account),
            json={"id": channel.channel_id, "resourceId": channel.resource_id},
            idempotent=True,  # stopping a channel twice stops it once
            accept=(404,),
        )


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return event_time({"dateTime": value})


def _series(items: Iterable[Mapping[str, Any]]) -> set[str]:
    return {str(i["recurringEventId"]) for i in items if i.get("recurringEventId")}


def _required(sync_token: str | None) -> str:
    if sync_token is None:
        raise CalendarError("Google Calendar's last page of events had no nextSyncToken")
    return sync_token
