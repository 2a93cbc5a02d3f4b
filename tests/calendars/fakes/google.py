"""A fake Google Calendar API v3 (and Google's OAuth 2.0 endpoints) for tests.

Speaks the documented wire format of:

* https://developers.google.com/calendar/api/v3/reference/calendars/get
* https://developers.google.com/calendar/api/v3/reference/events (insert, get, patch, delete,
  list, watch) and https://developers.google.com/calendar/api/v3/reference/events#resource
* https://developers.google.com/calendar/api/v3/reference/freebusy/query
* https://developers.google.com/calendar/api/v3/reference/channels/stop
* https://developers.google.com/calendar/api/guides/sync (sync tokens, 410 ``fullSyncRequired``)
* https://developers.google.com/calendar/api/guides/push (``X-Goog-*`` notification headers)
* https://developers.google.com/calendar/api/guides/errors (error bodies: ``error.code``,
  ``error.message``, ``error.errors[].domain/reason/message``)
* https://developers.google.com/identity/protocols/oauth2/web-server (via ``OAuthServer``)

Routes live under ``/calendar/v3`` (``settings_overrides`` points ``google_api_uri`` there);
the OAuth endpoints at ``/o/oauth2/v2/auth`` and ``/token``. Every API request needs a bearer
token the OAuth server issued and not expired or revoked (else the documented 401
``authError`` body); a user sees only their own calendars (others: 404 ``notFound``).

What it checks and records for tests:

* ``invitations``: ``(user, attendee email, kind)`` for every email Google would have sent
  because an insert/patch/delete on an event with attendees did not pass ``sendUpdates=none``
  (the fake treats a missing ``sendUpdates`` as sending: stricter than needed, on purpose).
* ``events.insert``: a client id must be base32hex (``0-9a-v``, 5–1024 characters), a used id
  answers 409 ``duplicate`` (deleted events keep theirs); ``conferenceData.createRequest`` is
  honoured only with ``conferenceDataVersion=1`` (a Meet room, or ``pending`` first when
  ``conference_pending`` is set: the next ``events.get`` completes it).
* ``events.list``: ``syncToken`` together with ``timeMin``/``timeMax`` (and the other
  filters the sync guide forbids) is a 400; an expired token (``expire_sync_tokens``) a 410;
  ``singleEvents=true`` expands recurring events (``add_recurring``: ``FREQ=DAILY|WEEKLY``
  with ``COUNT``) into instances ``<id>_<YYYYMMDDTHHMMSSZ>``, otherwise the series itself is
  listed; pages of ``maxResults`` (default ``page_size``) with ``nextPageToken``, the last one
  with ``nextSyncToken``. An incremental listing includes cancelled events; a full one does
  not (no ``showDeleted``).
* ``events.watch``: ``type`` must be ``web_hook``; with ``require_https`` (off by default, as
  the app's tests use ``http://`` base URLs) the address must be HTTPS, as Google requires.
  Google's first message on a new channel is a ``sync``; ``take_notifications`` returns it and
  one ``exists`` message per channel whose calendar changed since the last call.

Times are RFC 3339 with an offset; the fake keeps them as given and compares them in UTC.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import email.utils
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.calendars.fakes.base import FakeApi
from tests.calendars.fakes.oauth import OAuthServer

API = "/calendar/v3"
CLIENT_ID = "closerdesk-test.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-fake-google-secret"
_ID = re.compile(r"^[0-9a-v]{5,1024}$")
_RRULE = re.compile(r"^RRULE:FREQ=(DAILY|WEEKLY);COUNT=(\d+)$")
_SYNC_FILTERS = (
    "timeMin",
    "timeMax",
    "updatedMin",
    "q",
    "orderBy",
    "iCalUID",
    "privateExtendedProperty",
    "sharedExtendedProperty",
)


def google_error(
    status: int,
    reason: str,
    message: str,
    *,
    domain: str = "global",
    location: str | None = None,
    location_type: str | None = None,
) -> dict[str, Any]:
    """A Calendar API v3 error body ("Handle API errors")."""
    item: dict[str, Any] = {"domain": domain, "reason": reason, "message": message}
    if location is not None:
        item["location"] = location
        item["locationType"] = location_type or "parameter"
    return {"error": {"errors": [item], "code": status, "message": message}}


def _error(status: int, reason: str, message: str, **kwargs: Any) -> JSONResponse:
    return JSONResponse(google_error(status, reason, message, **kwargs), status_code=status)


def rate_limited_body(reason: str = "rateLimitExceeded") -> dict[str, Any]:
    """The 403/429 body of a rate limit (``rateLimitExceeded``, ``userRateLimitExceeded``)."""
    return google_error(403, reason, "Rate Limit Exceeded", domain="usageLimits")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: object) -> datetime | None:
    """An RFC 3339 timestamp with its mandatory offset, else None."""
    if not isinstance(text, str) or not re.search(r"(Z|[+-]\d\d:\d\d)$", text):
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def _event_bound(value: object) -> datetime | None:
    if not isinstance(value, dict):
        return None
    if "dateTime" in value:
        parsed = _parse_time(value["dateTime"])
        if parsed is None and isinstance(value.get("dateTime"), str) and value.get("timeZone"):
            try:  # a local time with its zone: the fake only knows UTC zones
                parsed = datetime.fromisoformat(value["dateTime"]).replace(tzinfo=UTC)
            except ValueError:
                return None
        return parsed
    if isinstance(value.get("date"), str):
        try:
            return datetime.combine(date.fromisoformat(value["date"]), datetime.min.time(), UTC)
        except ValueError:
            return None
    return None


def _merge(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Patch semantics: objects merged key by key, everything else replaced."""
    merged = dict(old)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, Any] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class _Calendar:
    id: str
    owner: str
    summary: str
    resource_id: str
    time_zone: str = "UTC"
    conference_types: list[str] = field(default_factory=lambda: ["hangoutsMeet"])
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    """event id → the clock value of its last change (for sync tokens)."""
    sync_floor: int = 0
    """Sync tokens older than this clock value are expired (410)."""


@dataclass
class _Channel:
    id: str
    user: str
    calendar: str
    resource_id: str
    address: str
    token: str
    expiration_ms: int
    number: int = 0
    pending_sync: bool = True
    dirty: bool = False


class FakeGoogle(FakeApi):
    """Google Calendar API v3 in memory: per-user calendars, events, channels (see module)."""

    provider = "google"

    def __init__(self) -> None:
        super().__init__()
        self.oauth = OAuthServer(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            authorize_path="/o/oauth2/v2/auth",
            token_path="/token",
        )
        self._state = threading.RLock()
        self.calendars: dict[str, _Calendar] = {}
        self.primary: dict[str, str] = {}
        """user → their primary calendar's id (their email address)."""
        self.channels: dict[str, _Channel] = {}
        self.invitations: list[tuple[str, str, str]] = []
        self.clock = 0
        self.page_size = 250
        self.conference_pending = False
        self.require_https = False
        self._late: list[tuple[str, float]] = []

    # -- harness --------------------------------------------------------------------------------

    def settings_overrides(self) -> dict[str, object]:
        """``Settings`` fields pointing closerdesk's Google provider at this fake."""
        return {
            "google_api_uri": f"{self.url}{API}",
            "google_authorization_uri": f"{self.url}/o/oauth2/v2/auth",
            "google_token_uri": f"{self.url}/token",
            "google_client_id": CLIENT_ID,
            "google_client_secret": CLIENT_SECRET,
        }

    def connect_body(self, user: str, **extra: object) -> dict[str, object]:
        """A ``PUT /v1/team/{id}/calendar`` body for ``user``: a refresh token the fake's OAuth
        server accepts (as if the consent had run), plus ``extra`` (``calendar_id``,
        ``conferencing``…)."""
        self.add_user(user)
        return {"provider": "google", "refresh_token": self.oauth.grant(user), **extra}

    def add_user(self, user: str, *, time_zone: str = "UTC") -> str:
        """Make ``user`` (an email address) known, with a primary calendar whose id is the
        address; returns that id. Idempotent."""
        with self._state:
            if user not in self.primary:
                self.primary[user] = user
                self.calendars[user] = _Calendar(
                    id=user,
                    owner=user,
                    summary=user,
                    resource_id=self._resource_id(user),
                    time_zone=time_zone,
                )
            return self.primary[user]

    def add_calendar(
        self, user: str, calendar_id: str, *, summary: str = "Work", meet: bool = True
    ) -> str:
        """A secondary calendar of ``user``; ``meet=False``: Google Meet not allowed on it."""
        self.add_user(user)
        with self._state:
            self.calendars[calendar_id] = _Calendar(
                id=calendar_id,
                owner=user,
                summary=summary,
                resource_id=self._resource_id(calendar_id),
                conference_types=["hangoutsMeet"] if meet else [],
            )
        return calendar_id

    def add_busy(
        self,
        user: str,
        start: datetime,
        end: datetime,
        *,
        title: str = "Dentist",
        free: bool = False,
        calendar: str | None = None,
        **fields: Any,
    ) -> str:
        """A foreign event made by ``user`` in Google Calendar (``free``: "Show as available",
        ``transparency: "transparent"``); ``fields`` are more Event fields (``status``,
        ``attendees``…). Returns its id; channels on the calendar get a notification."""
        body: dict[str, Any] = {
            "summary": title,
            "start": {"dateTime": _rfc3339(start), "timeZone": "UTC"},
            "end": {"dateTime": _rfc3339(end), "timeZone": "UTC"},
            **fields,
        }
        if free:
            body["transparency"] = "transparent"
        return self._store_new(user, calendar, body)

    def add_all_day(self, user: str, day: date, *, title: str = "Holiday") -> str:
        """An all-day event on ``day`` (``start.date``/``end.date``, end exclusive)."""
        body = {
            "summary": title,
            "start": {"date": day.isoformat()},
            "end": {"date": (day + timedelta(days=1)).isoformat()},
        }
        return self._store_new(user, None, body)

    def add_recurring(
        self,
        user: str,
        start: datetime,
        end: datetime,
        *,
        count: int,
        freq: str = "WEEKLY",
        title: str = "Team sync",
    ) -> str:
        """A recurring series (``recurrence: ["RRULE:FREQ=<freq>;COUNT=<count>"]``)."""
        body = {
            "summary": title,
            "start": {"dateTime": _rfc3339(start), "timeZone": "UTC"},
            "end": {"dateTime": _rfc3339(end), "timeZone": "UTC"},
            "recurrence": [f"RRULE:FREQ={freq};COUNT={count}"],
        }
        return self._store_new(user, None, body)

    def update_event(self, user: str, event_id: str, **fields: Any) -> None:
        """The user edits an event in Google Calendar (a patch of ``fields``)."""
        with self._state:
            calendar = self._find_event_calendar(user, event_id)
            calendar.events[event_id] = _merge(calendar.events[event_id], fields)
            self._touch(calendar, event_id)

    def remove_event(self, user: str, event_id: str) -> None:
        """The user deletes an event: it turns ``cancelled`` (sync reports it)."""
        with self._state:
            calendar = self._find_event_calendar(user, event_id)
            calendar.events[event_id]["status"] = "cancelled"
            self._touch(calendar, event_id)

    def events(self, user: str) -> list[dict[str, object]]:
        """``user``'s live (not cancelled) events on all their calendars, as Event resources
        (recurring events as their series)."""
        with self._state:
            return [
                copy.deepcopy(event)
                for calendar in self.calendars.values()
                if calendar.owner == user
                for event in calendar.events.values()
                if event.get("status") != "cancelled"
            ]

    def event(self, user: str, event_id: str) -> dict[str, Any]:
        """One event of ``user`` (cancelled ones too)."""
        with self._state:
            return copy.deepcopy(self._find_event_calendar(user, event_id).events[event_id])

    def revoke(self, user: str) -> None:
        """``user`` removed closerdesk's access: their refresh and access tokens stop working."""
        self.oauth.revoke(user)

    def expire_sync_tokens(self, user: str | None = None) -> None:
        """Every sync token handed out so far (for ``user``'s calendars) now answers 410."""
        with self._state:
            for calendar in self.calendars.values():
                if user is None or calendar.owner == user:
                    calendar.sync_floor = self.clock + 1
            self.clock += 1

    def answer_late(self, match: str, delay: float, times: int = 1) -> None:
        """The next ``times`` requests whose ``"METHOD /path"`` contains ``match`` are done,
        then answered only after ``delay`` seconds (the client may have given up by then)."""
        with self._state:
            self._late.extend([(match, delay)] * times)

    def take_notifications(self) -> list[tuple[str, dict[str, str], bytes]]:
        """What Google would have POSTed since the last call, oldest channel first: a ``sync``
        message for each new channel, an ``exists`` one for each channel whose calendar
        changed; ``(path of the channel's address, X-Goog-* headers, empty body)``."""
        now_ms = int(time.time() * 1000)
        sent: list[tuple[str, dict[str, str], bytes]] = []
        with self._state:
            for channel in list(self.channels.values()):
                if channel.expiration_ms < now_ms:
                    del self.channels[channel.id]
                    continue
                states = []
                if channel.pending_sync:
                    states.append("sync")
                if channel.dirty:
                    states.append("exists")
                channel.pending_sync = channel.dirty = False
                for state in states:
                    channel.number += 1
                    sent.append(
                        (urlsplit(channel.address).path, self._headers(channel, state), b"")
                    )
        return sent

    def reset(self) -> None:
        """Forget every user, calendar, event, channel, token, fault and request."""
        super().reset()
        with self._state:
            self.calendars.clear()
            self.primary.clear()
            self.channels.clear()
            self.invitations.clear()
            self._late.clear()
            self.page_size = 250
            self.conference_pending = False
            self.require_https = False
            self.oauth.codes.clear()
            self.oauth.refresh_tokens.clear()
            self.oauth.access_tokens.clear()
            self.oauth.consent_denied = False

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _resource_id(calendar_id: str) -> str:
        return "res-" + base64.b32encode(calendar_id.encode()).decode().rstrip("=").lower()[:24]

    def _headers(self, channel: _Channel, state: str) -> dict[str, str]:
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": email.utils.formatdate(
                channel.expiration_ms / 1000, usegmt=True
            ),
            "X-Goog-Message-Number": str(channel.number),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-State": state,
            "X-Goog-Resource-URI": f"{self.url}{API}/calendars/{channel.calendar}/events?alt=json",
        }
        if channel.token:
            headers["X-Goog-Channel-Token"] = channel.token
        return headers

    def _find_event_calendar(self, user: str, event_id: str) -> _Calendar:
        for calendar in self.calendars.values():
            if calendar.owner == user and event_id in calendar.events:
                return calendar
        raise KeyError(f"{user} has no event {event_id}")

    def _touch(self, calendar: _Calendar, event_id: str) -> None:
        self.clock += 1
        calendar.changed[event_id] = self.clock
        event = calendar.events[event_id]
        event["updated"] = _rfc3339(datetime.now(UTC))
        event["etag"] = f'"{self.clock}"'
        for channel in self.channels.values():
            if channel.calendar == calendar.id:
                channel.dirty = True

    def _complete(self, calendar: _Calendar, event: dict[str, Any], owner: str) -> dict[str, Any]:
        """Server-set fields of an Event resource."""
        event.setdefault("id", "ev" + secrets.token_hex(12))
        event.setdefault("status", "confirmed")
        event["kind"] = "calendar#event"
        event["htmlLink"] = f"https://www.google.com/calendar/event?eid={event['id']}"
        now = _rfc3339(datetime.now(UTC))
        event.setdefault("created", now)
        event.setdefault("iCalUID", f"{event['id']}@google.com")
        event.setdefault("sequence", 0)
        event.setdefault("eventType", "default")
        event.setdefault("reminders", {"useDefault": True})
        event["creator"] = {"email": owner, "self": True}
        event["organizer"] = {"email": calendar.id, "self": True}
        for attendee in event.get("attendees") or ():
            attendee.setdefault("responseStatus", "needsAction")
        return event

    def _store_new(self, user: str, calendar_id: str | None, body: dict[str, Any]) -> str:
        self.add_user(user)
        with self._state:
            calendar = self.calendars[calendar_id or self.primary[user]]
            event = self._complete(calendar, copy.deepcopy(body), user)
            calendar.events[event["id"]] = event
            self._touch(calendar, event["id"])
            return str(event["id"])

    # -- request plumbing -------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        api: list[tuple[str, Callable[..., Any], list[str]]] = [
            ("/users/me/calendarList/{calendar_id}", self._calendar_list_get, ["GET"]),
            ("/calendars/{calendar_id}/events/watch", self._events_watch, ["POST"]),
            ("/calendars/{calendar_id}/events", self._events_list, ["GET"]),
            ("/calendars/{calendar_id}/events", self._events_insert, ["POST"]),
            ("/calendars/{calendar_id}/events/{event_id}", self._events_get, ["GET"]),
            ("/calendars/{calendar_id}/events/{event_id}", self._events_patch, ["PATCH"]),
            ("/calendars/{calendar_id}/events/{event_id}", self._events_delete, ["DELETE"]),
            ("/freeBusy", self._freebusy, ["POST"]),
            ("/channels/stop", self._channels_stop, ["POST"]),
        ]
        return [
            *self.oauth.routes(),
            *(
                Route(API + path, self._wrap(handler), methods=methods)
                for path, handler, methods in api
            ),
        ]

    def _wrap(self, handler: Callable[..., Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            user = self.oauth.user_of(request.headers.get("authorization"))
            if user is None:
                return _error(
                    401,
                    "authError",
                    "Invalid Credentials",
                    location="Authorization",
                    location_type="header",
                )
            raw = await request.body()
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    return _error(400, "parseError", "Parse Error")
            with self._state:
                response: Response = handler(request, user, body)
                delay = self._late_delay(f"{request.method} {request.url.path}")
            if delay:
                await asyncio.sleep(delay)
            return response

        return endpoint

    def _late_delay(self, key: str) -> float:
        for index, (match, delay) in enumerate(self._late):
            if match in key:
                del self._late[index]
                return delay
        return 0.0

    def _calendar_of(self, user: str, calendar_id: str) -> _Calendar | None:
        if calendar_id == "primary":
            calendar_id = self.primary.get(user, "")
        calendar = self.calendars.get(calendar_id)
        if calendar is None or calendar.owner != user:
            return None
        return calendar

    @staticmethod
    def _not_found() -> JSONResponse:
        return _error(404, "notFound", "Not Found")

    def _send_updates(
        self, request: Request, user: str, event: dict[str, Any], kind: str
    ) -> Response | None:
        value = request.query_params.get("sendUpdates")
        if value is not None and value not in ("all", "externalOnly", "none"):
            return _error(400, "invalid", "Invalid value for: sendUpdates", location="sendUpdates")
        if value != "none":
            for attendee in event.get("attendees") or ():
                self.invitations.append((user, str(attendee.get("email")), kind))
        return None

    @staticmethod
    def _check_times(event: dict[str, Any]) -> Response | None:
        for key in ("start", "end"):
            if key not in event:
                return _error(400, "required", f"Missing {key} time.")
            if _event_bound(event[key]) is None:
                return _error(400, "invalid", f"Invalid {key} time.")
        if not _event_bound(event["start"]) < _event_bound(event["end"]):  # type: ignore[operator]
            return _error(
                400, "timeRangeEmpty", "The specified time range is empty.", domain="calendar"
            )
        return None

    # -- handlers (run with the state lock held) --------------------------------------------------

    def _calendar_list_get(self, request: Request, user: str, body: Any) -> Response:
        """CalendarList.get: the user's entry for a calendar (``primary`` allowed), with the
        user's ``accessRole`` on it; covered by the ``calendar.calendarlist.readonly`` scope."""
        calendar = self._calendar_of(user, request.path_params["calendar_id"])
        if calendar is None:
            return self._not_found()
        return JSONResponse(
            {
                "kind": "calendar#calendarListEntry",
                "etag": f'"{calendar.resource_id}"',
                "id": calendar.id,
                "summary": calendar.summary,
                "timeZone": calendar.time_zone,
                "accessRole": "owner" if calendar.owner == user else "reader",
                "primary": self.primary.get(user) == calendar.id,
                "conferenceProperties": {
                    "allowedConferenceSolutionTypes": list(calendar.conference_types)
                },
            }
        )

    def _events_insert(self, request: Request, user: str, body: Any) -> Response:
        calendar = self._calendar_of(user, request.path_params["calendar_id"])
        if calendar is None:
            return self._not_found()
        if not isinstance(body, dict):
            return _error(400, "required", "Missing event body.")
        event = copy.deepcopy(body)
        if "id" in event:
            if not isinstance(event["id"], str) or not _ID.match(event["id"]):
                return _error(400, "invalid", "Invalid resource id value.")
            if event["id"] in calendar.events:
                return _error(409, "duplicate", "The requested identifier already exists.")
        problem = self._check_times(event)
        if problem is not None:
            return problem
        conference = event.pop("conferenceData", None)
        if request.query_params.get("conferenceDataVersion") == "1" and isinstance(
            conference, dict
        ):
            problem = self._conference(calendar, event, conference)
            if problem is not None:
                return problem
        problem = self._send_updates(request, user, event, "invitation")
        if problem is not None:
            return problem
        event = self._complete(calendar, event, user)
        calendar.events[event["id"]] = event
        self._touch(calendar, event["id"])
        return JSONResponse(copy.deepcopy(event))

    def _conference(
        self, calendar: _Calendar, event: dict[str, Any], conference: dict[str, Any]
    ) -> Response | None:
        create = conference.get("createRequest")
        if not isinstance(create, dict):
            return None
        key = create.get("conferenceSolutionKey") or {}
        if not create.get("requestId"):
            return _error(400, "required", "Missing conference request id.")
        if key.get("type") not in calendar.conference_types:
            return _error(400, "invalid", "Invalid conference type value.")
        if self.conference_pending:
            event["conferenceData"] = {
                "createRequest": {
                    "requestId": create["requestId"],
                    "conferenceSolutionKey": {"type": key["type"]},
                    "status": {"statusCode": "pending"},
                }
            }
        else:
            self._meet(event, create["requestId"])
        return None

    @staticmethod
    def _meet(event: dict[str, Any], request_id: str) -> None:
        letters = "abcdefghijklmnopqrstuvwxyz"
        code = "-".join("".join(secrets.choice(letters) for _ in range(n)) for n in (3, 4, 3))
        uri = f"https://meet.google.com/{code}"
        event["hangoutLink"] = uri
        event["conferenceData"] = {
            "createRequest": {
                "requestId": request_id,
                "conferenceSolutionKey": {"type": "hangoutsMeet"},
                "status": {"statusCode": "success"},
            },
            "entryPoints": [
                {"entryPointType": "video", "uri": uri, "label": uri.removeprefix("https://")}
            ],
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
            "conferenceId": code,
        }

    def _events_get(self, request: Request, user: str, body: Any) -> Response:
        calendar = self._calendar_of(user, request.path_params["calendar_id"])
        event_id = request.path_params["event_id"]
        if calendar is None or event_id not in calendar.events:
            return self._not_found()
        event = calendar.events[event_id]
        pending = (event.get("conferenceData") or {}).get("createRequest", {})
        if pending.get("status", {}).get("statusCode") == "pending":
            self._meet(event, pending["requestId"])  # room creation finished meanwhile
            self._touch(calendar, event_id)
        return JSONResponse(copy.deepcopy(event))

    def _events_patch(self, request: Request, user: str, body: Any) -> Response:
        calendar = self._calendar_of(user, request.path_params["calendar_id"])
        event_id = request.path_params["event_id"]
        if calendar is None or event_id not in calendar.events:
            return self._not_found()
        if not isinstance(body, dict):
            return _error(400, "required", "Missing event body.")
        patch = {k: v for k, v in body.items() if k not in ("id", "conferenceData")}
        if request.query_params.get("conferenceDataVersion") == "1" and "conferenceData" in body:
            patch["conferenceData"] = body["conferenceData"]
        event = _merge(calendar.events[event_id], patch)
        problem = self._check_times(event)
        if problem is not None:
            return problem
        problem = self._send_updates(request, user, event, "update")
        if problem is not None:
            return problem
        event["sequence"] = int(event.get("sequence", 0)) + 1
        for attendee in event.get("attendees") or ():
            attendee.setdefault("responseStatus", "needsAction")
        calendar.events[event_id] = event
        self._touch(calendar, event_id)
        return JSONResponse(copy.deepcopy(event))

    def _events_delete(self, request: Request, user: str, body: Any) -> Response:
        calendar = self._calendar_of(user, request.path_params["calendar_id"])
        event_id = request.path_params["event_id"]
        if calendar is None or event_id not in calendar.events:
            return self._not_found()
        event = calendar.events[event_id]
        if event.get("status") == "cancelled":
            return _error(410, "deleted", "Resource has been deleted")
        problem = self._send_updates(request, user, event, "cancellation")
        if problem is not None:
            return problem
        event["status"] = "cancelled"
        self._touch(calendar, event_id)
        return Response(status_code=204)

    # -- listing --

    def _instances(self, event: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """A series' instances (``singleEvents=true``), or the event itself."""
        rules = event.get("recurrence") or []
        match = _RRULE.match(rules[0]) if rules else None
        if match is None:
            yield event
            return
        start, end = _event_bound(event["start"]), _event_bound(event["end"])
        assert start is not None
        assert end is not None
        step = timedelta(days=1 if match.group(1) == "DAILY" else 7)
        for n in range(int(match.group(2))):
            at = start + n * step
            instance = {k: copy.deepcopy(v) for k, v in event.items() if k != "recurrence"}
            instance["id"] = f"{event['id']}_{at.strftime('%Y%m%dT%H%M%SZ')}"
            instance["recurringEventId"] = event["id"]
            instance["originalStartTime"] = {"dateTime": _rfc3339(at), "timeZone": "UTC"}
            instance["start"] = {"dateTime": _rfc3339(at), "timeZone": "UTC"}
            instance["end"] = {"dateTime": _rfc3339(at + (end - start)), "timeZone": "UTC"}
            yield instance

    def _expanded(self, calendar: _Calendar, single: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        for event_id, event in calendar.events.items():
            for item in self._instances(event) if single else [event]:
                yield event_id, item

    def _events_list(self, request: Request, user: str, body: Any) -> Response:
        calendar = self._calendar_of(user, request.path_params["calendar_id"])
        if calendar is None:
            return self._not_found()
        q = request.query_params
        single = q.get("singleEvents") == "true"
        try:
            page_size = int(q.get("maxResults", self.page_size))
        except ValueError:
            return _error(400, "invalid", "Invalid value for: maxResults", location="maxResults")
        if not 1 <= page_size <= 2500:
            return _error(400, "invalid", "Invalid value for: maxResults", location="maxResults")
        page_size = min(page_size, self.page_size)
        sync_token = q.get("syncToken")
        since = -1
        if sync_token is not None:
            used = [name for name in _SYNC_FILTERS if name in q]
            if used:
                return _error(
                    400,
                    "invalid",
                    f"Sync token cannot be combined with {', '.join(used)}.",
                    location="syncToken",
                )
            decoded = _decode(sync_token)
            if (
                decoded is None
                or decoded.get("calendar") != calendar.id
                or not isinstance(decoded.get("clock"), int)
                or decoded["clock"] < calendar.sync_floor
            ):
                return _error(
                    410,
                    "fullSyncRequired",
                    "Sync token is no longer valid, a full sync is required.",
                )
            since = decoded["clock"]
        time_min = time_max = None
        for name in ("timeMin", "timeMax"):
            if name in q:
                parsed = _parse_time(q[name])
                if parsed is None:
                    return _error(400, "badRequest", "Bad Request", location=name)
                if name == "timeMin":
                    time_min = parsed
                else:
                    time_max = parsed
        if time_min is not None and time_max is not None and not time_min < time_max:
            return _error(
                400,
                "timeRangeEmpty",
                "The specified time range is empty.",
                domain="calendar",
                location="timeMax",
            )
        show_deleted = sync_token is not None or q.get("showDeleted") == "true"
        page = _decode(q["pageToken"]) if "pageToken" in q else {"offset": 0, "clock": self.clock}
        if page is None:
            return _error(400, "invalid", "Invalid page token.", location="pageToken")
        items = []
        for event_id, item in self._expanded(calendar, single):
            if since >= 0 and calendar.changed.get(event_id, 0) <= since:
                continue
            if item.get("status") == "cancelled" and not show_deleted:
                continue
            start, end = _event_bound(item.get("start")), _event_bound(item.get("end"))
            if time_min is not None and (end is None or end <= time_min):
                continue
            if time_max is not None and (start is None or start >= time_max):
                continue
            items.append(item)
        offset = int(page.get("offset", 0))
        chunk = items[offset : offset + page_size]
        answer: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{self.clock}"',
            "summary": calendar.summary,
            "updated": _rfc3339(datetime.now(UTC)),
            "timeZone": calendar.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": copy.deepcopy(chunk),
        }
        if offset + page_size < len(items):
            answer["nextPageToken"] = _encode(
                {"offset": offset + page_size, "clock": page["clock"]}
            )
        else:
            answer["nextSyncToken"] = _encode({"calendar": calendar.id, "clock": page["clock"]})
        return JSONResponse(answer)

    def _freebusy(self, request: Request, user: str, body: Any) -> Response:
        if not isinstance(body, dict):
            return _error(400, "required", "Required")
        time_min, time_max = _parse_time(body.get("timeMin")), _parse_time(body.get("timeMax"))
        if time_min is None or time_max is None:
            return _error(400, "badRequest", "Bad Request")
        if not time_min < time_max:
            return _error(
                400, "timeRangeEmpty", "The specified time range is empty.", domain="calendar"
            )
        calendars: dict[str, Any] = {}
        for item in body.get("items") or ():
            asked = str(item.get("id", ""))
            calendar = self._calendar_of(user, asked)
            if calendar is None:
                calendars[asked] = {
                    "errors": [{"domain": "global", "reason": "notFound"}],
                    "busy": [],
                }
                continue
            periods: list[tuple[datetime, datetime]] = []
            for _event_id, event in self._expanded(calendar, True):
                if event.get("status") == "cancelled" or event.get("transparency") == "transparent":
                    continue
                if any(
                    a.get("self") and a.get("responseStatus") == "declined"
                    for a in event.get("attendees") or ()
                ):
                    continue
                start, end = _event_bound(event.get("start")), _event_bound(event.get("end"))
                if start is None or end is None:
                    continue
                start, end = max(start, time_min), min(end, time_max)
                if start < end:
                    periods.append((start, end))
            merged: list[list[datetime]] = []
            for start, end in sorted(periods):
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            calendars[asked] = {
                "busy": [{"start": _rfc3339(s), "end": _rfc3339(e)} for s, e in merged]
            }
        return JSONResponse(
            {
                "kind": "calendar#freeBusy",
                "timeMin": _rfc3339(time_min),
                "timeMax": _rfc3339(time_max),
                "calendars": calendars,
            }
        )

    # -- push --

    def _events_watch(self, request: Request, user: str, body: Any) -> Response:
        calendar = self._calendar_of(user, request.path_params["calendar_id"])
        if calendar is None:
            return self._not_found()
        if not isinstance(body, dict) or not body.get("id") or not body.get("address"):
            return _error(400, "required", "Required")
        if body.get("type") not in ("web_hook", "webhook"):
            return _error(400, "invalid", "Invalid value for: type")
        address = str(body["address"])
        if self.require_https and not address.startswith("https://"):
            return _error(
                400,
                "push.webhookUrlNotHttps",
                "WebHook callback must be HTTPS: " + address,
                domain="push",
            )
        if body["id"] in self.channels:
            return _error(400, "channelIdNotUnique", "Channel id not unique", domain="push")
        try:
            ttl = int((body.get("params") or {}).get("ttl", 604800))
        except ValueError:
            return _error(400, "invalid", "Invalid ttl value")
        expiration_ms = int((time.time() + min(ttl, 2592000)) * 1000)
        channel = _Channel(
            id=str(body["id"]),
            user=user,
            calendar=calendar.id,
            resource_id=calendar.resource_id,
            address=address,
            token=str(body.get("token") or ""),
            expiration_ms=expiration_ms,
        )
        self.channels[channel.id] = channel
        answer = {
            "kind": "api#channel",
            "id": channel.id,
            "resourceId": channel.resource_id,
            "resourceUri": f"{self.url}{API}/calendars/{calendar.id}/events?alt=json",
            "expiration": str(expiration_ms),
        }
        if channel.token:
            answer["token"] = channel.token
        return JSONResponse(answer)

    def _channels_stop(self, request: Request, user: str, body: Any) -> Response:
        if not isinstance(body, dict) or not body.get("id") or not body.get("resourceId"):
            return _error(400, "required", "Required")
        channel = self.channels.get(str(body["id"]))
        if channel is None or channel.user != user or channel.resource_id != body["resourceId"]:
            return _error(404, "notFound", f"Channel '{body['id']}' not found")
        del self.channels[channel.id]
        return Response(status_code=204)
