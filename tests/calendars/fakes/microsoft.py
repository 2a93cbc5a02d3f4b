"""A fake Microsoft Graph v1.0 (calendars, getSchedule, delta, subscriptions) with its OAuth.

Speaks the documented wire format of:

* Microsoft identity platform, authorization code flow and refresh (``/{tenant}/oauth2/v2.0/
  authorize`` and ``/token``, refresh tokens rotated):
  https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow
* ``GET /me``: https://learn.microsoft.com/graph/api/user-get
* ``GET /me/calendar``, ``GET /me/calendars/{id}``:
  https://learn.microsoft.com/graph/api/calendar-get
* ``POST /me/calendars/{id}/events`` (``transactionId`` deduplicates a repeated create):
  https://learn.microsoft.com/graph/api/calendar-post-events and the event resource,
  https://learn.microsoft.com/graph/api/resources/event
* ``PATCH`` / ``DELETE /me/events/{id}``: https://learn.microsoft.com/graph/api/event-update,
  https://learn.microsoft.com/graph/api/event-delete
* ``GET /me/calendars/{id}/calendarView`` (``startDateTime``/``endDateTime`` required, pages of
  ``$top``, default 10, with ``@odata.nextLink``):
  https://learn.microsoft.com/graph/api/calendar-list-calendarview
* ``POST /me/calendar/getSchedule``: https://learn.microsoft.com/graph/api/calendar-getschedule
* ``GET /me/calendars/{id}/calendarView/delta`` (``@odata.nextLink`` with ``$skiptoken``,
  ``@odata.deltaLink`` with ``$deltatoken``, ``@removed``; an expired token is ``410 Gone``
  with code ``syncStateNotFound``): https://learn.microsoft.com/graph/api/event-delta,
  https://learn.microsoft.com/graph/delta-query-overview
* ``POST`` / ``DELETE /subscriptions`` (``notificationUrl`` validated with
  ``?validationToken=``, Outlook events at most 10,080 minutes ahead) and the change and
  lifecycle notifications Graph posts:
  https://learn.microsoft.com/graph/api/subscription-post-subscriptions,
  https://learn.microsoft.com/graph/change-notifications-delivery-webhooks,
  https://learn.microsoft.com/graph/change-notifications-lifecycle-events
* error bodies ``{"error": {"code", "message", "innerError"}}``:
  https://learn.microsoft.com/graph/errors

Users, calendars and events live in memory. Events are stored in Graph's JSON shape (times in
UTC); a series (``add_series``) is expanded into occurrences with their own ids. Every change
bumps a counter, which delta tokens and push notifications read. Nothing is ever emailed, but
an event written with attendees is recorded in ``invitations`` (Graph would email them), so a
test can check that list stays empty.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.calendars.fakes.base import FakeApi
from tests.calendars.fakes.oauth import OAuthServer

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
MAX_SUBSCRIPTION_MINUTES = 10080


def _error(status: int, code: str, message: str) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }
    return JSONResponse(body, status_code=status)


def _not_found() -> JSONResponse:
    return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _graph_id() -> str:
    return "AAMkAD" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y") + "="


def _stamp(when: datetime) -> dict[str, str]:
    return {
        "dateTime": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
        "timeZone": "UTC",
    }


def _read_time(value: Any) -> datetime:
    """A request's ``dateTimeTimeZone``; ``ValueError`` when Graph would answer 400."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise ValueError("dateTimeTimeZone expected")
    zone_name = value.get("timeZone")
    if not isinstance(zone_name, str) or not zone_name:
        raise ValueError("timeZone is required")
    when = datetime.fromisoformat(value["dateTime"][:19])
    if zone_name == "UTC":
        return when.replace(tzinfo=UTC)
    try:
        return when.replace(tzinfo=ZoneInfo(zone_name)).astimezone(UTC)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone_name}") from None


def _query_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _prefer(request: Request) -> dict[str, str]:
    """``Prefer`` preferences (RFC 7240), lower-cased names, quotes removed."""
    found: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name:
                found[name.strip().lower()] = value.strip().strip('"')
    return found


@dataclass
class _Event:
    data: dict[str, Any]
    start: datetime
    end: datetime
    seq: int
    deleted: bool = False
    series: tuple[int, timedelta] | None = None
    """(count, every): a series master expanded into ``count`` occurrences."""

    def occurrences(self) -> list[dict[str, Any]]:
        """The event as calendarView shows it: itself, or its occurrences."""
        if self.series is None:
            return [self.data]
        count, every = self.series
        found = []
        for index in range(count):
            offset = every * index
            found.append(
                self.data
                | {
                    "id": f"{self.data['id']}_occ{index}",
                    "type": "occurrence",
                    "seriesMasterId": self.data["id"],
                    "start": _stamp(self.start + offset),
                    "end": _stamp(self.end + offset),
                }
            )
        return found


@dataclass
class _Calendar:
    id: str
    name: str
    is_default: bool
    can_edit: bool = True
    events: dict[str, _Event] = field(default_factory=dict)


@dataclass
class _User:
    address: str
    object_id: str
    calendars: dict[str, _Calendar] = field(default_factory=dict)


@dataclass
class _Delta:
    user: str
    calendar_id: str
    start: datetime
    end: datetime
    seq: int
    """Changes after this counter are new to the holder of the token."""


@dataclass
class _Subscription:
    id: str
    user: str
    resource: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    change_types: set[str]


class FakeGraph(FakeApi):
    """Microsoft Graph and its token endpoint; see the module docstring.

    Harness: ``add_user``, ``add_calendar``, ``add_busy``, ``add_series``, ``update_event``,
    ``remove_event``, ``events``, ``revoke``, ``expire_delta_tokens``, ``take_notifications``,
    ``lifecycle``; ``invitations`` lists events written with attendees; ``subscriptions``
    the live subscriptions; ``oauth`` the token side.
    """

    provider = "microsoft"
    client_id = "00000000-closerdesk-test-client"
    client_secret = "microsoft-test-secret"
    webhook_path = "/hooks/microsoft"

    def __init__(self) -> None:
        super().__init__()
        self.oauth = OAuthServer(
            client_id=self.client_id,
            client_secret=self.client_secret,
            authorize_path="/{tenant}/oauth2/v2.0/authorize",
            token_path="/{tenant}/oauth2/v2.0/token",
            rotate_refresh_tokens=True,
        )
        self._state = threading.RLock()
        self.users: dict[str, _User] = {}
        self.invitations: list[dict[str, Any]] = []
        self.subscriptions: dict[str, _Subscription] = {}
        self._seq = 0
        self._deltas: dict[str, _Delta] = {}
        self._pages: dict[str, tuple[list[dict[str, Any]], str, int]] = {}
        self._outbox: list[tuple[str, dict[str, str], bytes]] = []
        self._changes: list[tuple[str, str, str]] = []
        """(user, change type, event id) not yet turned into notifications."""

    # -- harness --------------------------------------------------------------------------

    @property
    def api(self) -> str:
        return f"{self.url}/v1.0"

    def settings_overrides(self) -> dict[str, object]:
        return {
            "microsoft_api_uri": self.api,
            "microsoft_authorization_uri": f"{self.url}/{{tenant}}/oauth2/v2.0/authorize",
            "microsoft_token_uri": f"{self.url}/{{tenant}}/oauth2/v2.0/token",
            "microsoft_tenant": "common",
            "microsoft_client_id": self.client_id,
            "microsoft_client_secret": self.client_secret,
        }

    def connect_body(self, user: str, **extra: object) -> dict[str, object]:
        self.add_user(user)
        return {"provider": "microsoft", "refresh_token": self.oauth.grant(user)} | extra

    def add_user(self, user: str, *, calendar_id: str | None = None) -> str:
        """``user`` (their address) with a default calendar (id ``calendar_id`` or a fresh
        one); returns the default calendar's id. Idempotent."""
        with self._state:
            found = self.users.get(user)
            if found is None:
                found = self.users[user] = _User(address=user, object_id=str(uuid.uuid4()))
                default_id = calendar_id or _graph_id()
                found.calendars[default_id] = _Calendar(default_id, "Calendar", is_default=True)
            return next(c.id for c in found.calendars.values() if c.is_default)

    def add_calendar(
        self, user: str, name: str, *, calendar_id: str | None = None, can_edit: bool = True
    ) -> str:
        """Another (not default) calendar of ``user``; returns its id."""
        self.add_user(user)
        with self._state:
            new_id = calendar_id or _graph_id()
            self.users[user].calendars[new_id] = _Calendar(
                new_id, name, is_default=False, can_edit=can_edit
            )
            return new_id

    def _calendar_of(self, user: str, calendar_id: str | None) -> _Calendar:
        self.add_user(user)
        calendars = self.users[user].calendars
        if calendar_id is None:
            return next(c for c in calendars.values() if c.is_default)
        return calendars[calendar_id]

    def _bump(self) -> int:
        self._seq += 1
        return self._seq

    def add_busy(
        self,
        user: str,
        start: datetime,
        end: datetime,
        *,
        title: str = "Dentist",
        free: bool = False,
        cancelled: bool = False,
        calendar_id: str | None = None,
    ) -> str:
        """A foreign event (``showAs`` busy, or free) on ``user``'s calendar (the default one
        unless ``calendar_id``); returns its id and records a ``created`` change."""
        return self._add(user, start, end, title, free, cancelled, calendar_id, None)

    def add_series(
        self,
        user: str,
        start: datetime,
        end: datetime,
        *,
        count: int,
        every: timedelta = timedelta(days=1),
        title: str = "Standup",
        calendar_id: str | None = None,
    ) -> str:
        """A recurring foreign event: ``count`` occurrences, ``every`` apart, the first at
        ``start``-``end``. Returns the series master's id (occurrences: ``{id}_occ{n}``)."""
        return self._add(user, start, end, title, False, False, calendar_id, (count, every))

    def _add(
        self,
        user: str,
        start: datetime,
        end: datetime,
        title: str,
        free: bool,
        cancelled: bool,
        calendar_id: str | None,
        series: tuple[int, timedelta] | None,
    ) -> str:
        with self._state:
            calendar = self._calendar_of(user, calendar_id)
            event_id = _graph_id()
            data = {
                "id": event_id,
                "subject": title,
                "start": _stamp(start),
                "end": _stamp(end),
                "showAs": "free" if free else "busy",
                "isCancelled": cancelled,
                "isAllDay": False,
                "type": "seriesMaster" if series else "singleInstance",
                "transactionId": None,
                "attendees": [],
                "body": {"contentType": "text", "content": ""},
                "location": {"displayName": ""},
            }
            calendar.events[event_id] = _Event(data, start, end, self._bump(), series=series)
            self._changes.append((user, "created", event_id))
            return event_id

    def update_event(self, user: str, event_id: str, **fields: Any) -> None:
        """The user edited an event (Graph field names; ``start``/``end`` as datetimes)."""
        with self._state:
            event = self._find(user, event_id)
            if event is None:
                raise KeyError(event_id)
            for name, value in fields.items():
                if name in ("start", "end"):
                    setattr(event, name, value)
                    event.data[name] = _stamp(value)
                else:
                    event.data[name] = value
            event.seq = self._bump()
            self._changes.append((user, "updated", event_id))

    def remove_event(self, user: str, event_id: str) -> None:
        """The user deleted the event; records a ``deleted`` change."""
        with self._state:
            event = self._find(user, event_id)
            if event is None or event.deleted:
                raise KeyError(event_id)
            event.deleted = True
            event.seq = self._bump()
            self._changes.append((user, "deleted", event_id))

    def events(self, user: str, calendar_id: str | None = None) -> list[dict[str, Any]]:
        """``user``'s live events (series as their master) in Graph's JSON shape, on every
        calendar unless ``calendar_id``."""
        with self._state:
            self.add_user(user)
            calendars = self.users[user].calendars.values()
            return [
                dict(event.data)
                for calendar in calendars
                if calendar_id is None or calendar.id == calendar_id
                for event in calendar.events.values()
                if not event.deleted
            ]

    def revoke(self, user: str) -> None:
        """The user removed closerdesk's consent: refresh and access tokens stop working."""
        with self._state:
            self.oauth.revoke(user)

    def expire_delta_tokens(self) -> None:
        """Graph dropped every delta token from its cache (the next use answers 410)."""
        with self._state:
            self._deltas.clear()
            self._pages.clear()

    def lifecycle(self, subscription_id: str, event: str = "reauthorizationRequired") -> None:
        """Queue a lifecycle notification (``reauthorizationRequired``,
        ``subscriptionRemoved``, ``missed``) for ``take_notifications``."""
        with self._state:
            sub = self.subscriptions[subscription_id]
            item = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": _iso(sub.expires),
                "tenantId": TENANT_ID,
                "clientState": sub.client_state,
                "lifecycleEvent": event,
            }
            self._outbox.append(self._post(sub.lifecycle_url or sub.notification_url, [item]))

    def take_notifications(self) -> list[tuple[str, dict[str, str], bytes]]:
        """What Graph would have POSTed since the last call, oldest first: subscription
        validations (``(path?validationToken=…, text/plain, b"")``), change notifications for
        the subscribed users' changes, lifecycle notifications."""
        with self._state:
            for user, change_type, event_id in self._changes:
                for sub in self.subscriptions.values():
                    if sub.user != user or change_type not in sub.change_types:
                        continue
                    resource = f"Users/{self.users[user].object_id}/Events/{event_id}"
                    item = {
                        "subscriptionId": sub.id,
                        "subscriptionExpirationDateTime": _iso(sub.expires),
                        "changeType": change_type,
                        "resource": resource,
                        "resourceData": {
                            "@odata.type": "#Microsoft.Graph.Event",
                            "@odata.id": resource,
                            "@odata.etag": f'W/"{secrets.token_hex(8)}"',
                            "id": event_id,
                        },
                        "clientState": sub.client_state,
                        "tenantId": TENANT_ID,
                    }
                    self._outbox.append(self._post(sub.notification_url, [item]))
            self._changes.clear()
            taken, self._outbox = self._outbox, []
            return taken

    @staticmethod
    def _post(url: str, items: list[dict[str, Any]]) -> tuple[str, dict[str, str], bytes]:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = json.dumps({"value": items}).encode()
        return path, {"content-type": "application/json"}, body

    def reset(self) -> None:
        super().reset()
        with self._state:
            self.users.clear()
            self.invitations.clear()
            self.subscriptions.clear()
            self._deltas.clear()
            self._pages.clear()
            self._outbox.clear()
            self._changes.clear()
            self.oauth.refresh_tokens.clear()
            self.oauth.access_tokens.clear()
            self.oauth.codes.clear()

    # -- routes ---------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        api = "/v1.0"
        return [
            *self.oauth.routes(),
            Route(f"{api}/me", self._me, methods=["GET"]),
            Route(f"{api}/me/calendar", self._default_calendar, methods=["GET"]),
            Route(f"{api}/me/calendar/getSchedule", self._get_schedule, methods=["POST"]),
            Route(f"{api}/me/calendars/{{cal}}", self._calendar, methods=["GET"]),
            Route(f"{api}/me/calendars/{{cal}}/events", self._create, methods=["POST"]),
            Route(f"{api}/me/calendars/{{cal}}/calendarView", self._view, methods=["GET"]),
            Route(f"{api}/me/calendars/{{cal}}/calendarView/delta", self._delta, methods=["GET"]),
            Route(f"{api}/me/events/{{event}}", self._event, methods=["GET", "PATCH", "DELETE"]),
            Route(f"{api}/subscriptions", self._subscribe, methods=["POST"]),
            Route(f"{api}/subscriptions/{{sub}}", self._unsubscribe, methods=["DELETE"]),
        ]

    def _user(self, request: Request) -> str | None:
        return self.oauth.user_of(request.headers.get("authorization"))

    @staticmethod
    def _unauthorized(request: Request) -> JSONResponse:
        if not request.headers.get("authorization"):
            return _error(401, "InvalidAuthenticationToken", "Access token is empty.")
        return _error(
            401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
        )

    async def _json_body(self, request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _find(self, user: str, event_id: str) -> _Event | None:
        for calendar in self.users[user].calendars.values():
            if event_id in calendar.events:
                return calendar.events[event_id]
        return None

    def _calendar_json(self, user: str, calendar: _Calendar) -> dict[str, Any]:
        return {
            "@odata.context": f"{self.api}/$metadata#users('{user}')/calendars/$entity",
            "id": calendar.id,
            "name": calendar.name,
            "color": "auto",
            "isDefaultCalendar": calendar.is_default,
            "canEdit": calendar.can_edit,
            "canShare": calendar.is_default,
            "canViewPrivateItems": True,
            "owner": {"name": user.split("@")[0], "address": user},
        }

    async def _me(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        with self._state:
            self.add_user(user)
            found = self.users[user]
            return JSONResponse(
                {
                    "@odata.context": f"{self.api}/$metadata#users/$entity",
                    "id": found.object_id,
                    "displayName": user.split("@")[0].title(),
                    "mail": user,
                    "userPrincipalName": user,
                }
            )

    async def _default_calendar(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        with self._state:
            return JSONResponse(self._calendar_json(user, self._calendar_of(user, None)))

    async def _calendar(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        with self._state:
            self.add_user(user)
            calendar = self.users[user].calendars.get(request.path_params["cal"])
            if calendar is None:
                return _not_found()
            return JSONResponse(self._calendar_json(user, calendar))

    def _write_fields(self, body: dict[str, Any]) -> tuple[datetime, datetime] | JSONResponse:
        """Checks of a create or update body; the new times or Graph's 400."""
        try:
            start, end = _read_time(body["start"]), _read_time(body["end"])
        except (KeyError, ValueError) as exc:
            return _error(400, "ErrorInvalidRequest", f"Invalid start or end: {exc}")
        if end < start:
            return _error(400, "ErrorInvalidRequest", "The end must be after the start.")
        content = body.get("body")
        if content is not None and str(content.get("contentType", "")).lower() not in (
            "text",
            "html",
        ):
            return _error(400, "RequestBodyRead", "Invalid body contentType.")
        return start, end

    async def _create(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        body = await self._json_body(request)
        if body is None:
            return _error(400, "RequestBodyRead", "Cannot read the request body.")
        with self._state:
            self.add_user(user)
            calendar = self.users[user].calendars.get(request.path_params["cal"])
            if calendar is None:
                return _not_found()
            if not calendar.can_edit:
                return _error(403, "ErrorAccessDenied", "Access is denied.")
            transaction = body.get("transactionId")
            if transaction:
                for event in calendar.events.values():
                    if not event.deleted and event.data.get("transactionId") == transaction:
                        return JSONResponse(event.data, status_code=201)  # the same event
            times = self._write_fields(body)
            if isinstance(times, JSONResponse):
                return times
            event_id = _graph_id()
            data: dict[str, Any] = {
                "id": event_id,
                "subject": body.get("subject", ""),
                "body": body.get("body") or {"contentType": "text", "content": ""},
                "start": _stamp(times[0]),
                "end": _stamp(times[1]),
                "location": body.get("location") or {"displayName": ""},
                "showAs": body.get("showAs", "busy"),
                "isCancelled": False,
                "isAllDay": bool(body.get("isAllDay", False)),
                "type": "singleInstance",
                "transactionId": transaction,
                "attendees": body.get("attendees") or [],
                "isOnlineMeeting": bool(body.get("isOnlineMeeting", False)),
                "onlineMeetingProvider": body.get("onlineMeetingProvider", "unknown"),
                "onlineMeeting": None,
                "isOrganizer": True,
            }
            if data["isOnlineMeeting"] and data["onlineMeetingProvider"] == "teamsForBusiness":
                data["onlineMeeting"] = {
                    "joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_"
                    + secrets.token_urlsafe(12)
                    + "%40thread.v2/0"
                }
            if data["attendees"]:
                self.invitations.append(dict(data))  # Graph would email every attendee now
            calendar.events[event_id] = _Event(data, times[0], times[1], self._bump())
            self._changes.append((user, "created", event_id))
            return JSONResponse(data, status_code=201)

    async def _event(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        body = await self._json_body(request) if request.method == "PATCH" else None
        with self._state:
            self.add_user(user)
            event_id = request.path_params["event"]
            event = self._find(user, event_id)
            if event is None or event.deleted:
                return _not_found()
            if request.method == "GET":
                return JSONResponse(event.data)
            if request.method == "DELETE":
                event.deleted = True
                event.seq = self._bump()
                self._changes.append((user, "deleted", event_id))
                return Response(status_code=204)
            if body is None:
                return _error(400, "RequestBodyRead", "Cannot read the request body.")
            if "transactionId" in body and body["transactionId"] != event.data["transactionId"]:
                return _error(400, "ErrorInvalidRequest", "transactionId cannot be changed.")
            merged = event.data | body
            times = self._write_fields(merged)
            if isinstance(times, JSONResponse):
                return times
            event.data = merged | {"start": _stamp(times[0]), "end": _stamp(times[1])}
            event.start, event.end = times
            if body.get("attendees"):
                self.invitations.append(dict(event.data))
            event.seq = self._bump()
            self._changes.append((user, "updated", event_id))
            return JSONResponse(event.data)

    def _window(self, request: Request) -> tuple[datetime, datetime] | JSONResponse:
        start = _query_time(request.query_params.get("startDateTime"))
        end = _query_time(request.query_params.get("endDateTime"))
        if start is None or end is None:
            return _error(
                400,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters "
                "StartDateTime and EndDateTime.",
            )
        return start, end

    @staticmethod
    def _in(occurrence: dict[str, Any], start: datetime, end: datetime) -> bool:
        return _read_time(occurrence["start"]) < end and _read_time(occurrence["end"]) > start

    def _view_items(
        self, calendar: _Calendar, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        return [
            occurrence
            for event in calendar.events.values()
            if not event.deleted
            for occurrence in event.occurrences()
            if self._in(occurrence, start, end)
        ]

    def _paged(
        self, items: list[dict[str, Any]], size: int, final: dict[str, Any], base: str
    ) -> dict[str, Any]:
        """The first page of ``items``; the rest behind an ``@odata.nextLink`` (``base`` with
        a ``$skiptoken``); ``final`` (e.g. the ``@odata.deltaLink``) on the last page."""
        page, rest = items[:size], items[size:]
        if not rest:
            return {"value": page} | final
        token = secrets.token_urlsafe(12)
        self._pages[token] = (rest, json.dumps(final), size)
        return {"value": page, "@odata.nextLink": f"{base}?" + urlencode({"$skiptoken": token})}

    def _next_page(self, request: Request, base: str) -> Response | None:
        """The page a ``$skiptoken`` names (410 when unknown); None without one."""
        token = request.query_params.get("$skiptoken")
        if token is None:
            return None
        found = self._pages.pop(token, None)
        if found is None:
            return _error(410, "syncStateNotFound", "The sync state generation is not found.")
        rest, final, size = found
        return JSONResponse(self._paged(rest, size, json.loads(final), base))

    async def _view(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        base = f"{self.api}/me/calendars/{request.path_params['cal']}/calendarView"
        with self._state:
            page = self._next_page(request, base)
        if page is not None:
            return page
        window = self._window(request)
        if isinstance(window, JSONResponse):
            return window
        try:
            top = int(request.query_params.get("$top", "10"))
        except ValueError:
            return _error(400, "BadRequest", "Invalid $top.")
        with self._state:
            self.add_user(user)
            calendar = self.users[user].calendars.get(request.path_params["cal"])
            if calendar is None:
                return _not_found()
            items = self._view_items(calendar, *window)
            return JSONResponse(self._paged(items, max(1, min(top, 1000)), {}, base))

    async def _delta(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        size = 10
        max_page = _prefer(request).get("odata.maxpagesize")
        if max_page and max_page.isdigit():
            size = max(1, int(max_page))
        base = f"{self.api}/me/calendars/{request.path_params['cal']}/calendarView/delta"
        with self._state:
            page = self._next_page(request, base)
            if page is not None:
                return page
            self.add_user(user)
            calendar = self.users[user].calendars.get(request.path_params["cal"])
            if calendar is None:
                return _not_found()
            token = request.query_params.get("$deltatoken")
            if token is not None:
                delta = self._deltas.pop(token, None)
                if delta is None or delta.user != user or delta.calendar_id != calendar.id:
                    return _error(
                        410,
                        "syncStateNotFound",
                        "The sync state generation is not found. The delta token is expired "
                        "and data must be synchronized again.",
                    )
                start, end = delta.start, delta.end
                items = self._delta_items(calendar, start, end, delta.seq)
            else:
                window = self._window(request)
                if isinstance(window, JSONResponse):
                    return window
                start, end = window
                items = self._view_items(calendar, start, end)
            new_token = secrets.token_urlsafe(16)
            self._deltas[new_token] = _Delta(user, calendar.id, start, end, self._seq)
            link = f"{base}?" + urlencode({"$deltatoken": new_token})
            return JSONResponse(self._paged(items, size, {"@odata.deltaLink": link}, base))

    def _delta_items(
        self, calendar: _Calendar, start: datetime, end: datetime, since: int
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for event in calendar.events.values():
            if event.seq <= since:
                continue
            for occurrence in event.occurrences():
                if event.deleted or not self._in(occurrence, start, end):
                    items.append({"id": occurrence["id"], "@removed": {"reason": "deleted"}})
                else:
                    items.append(occurrence)
        return items

    async def _get_schedule(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        body = await self._json_body(request)
        if body is None or not isinstance(body.get("schedules"), list) or not body["schedules"]:
            return _error(400, "ErrorInvalidParameter", "schedules is required.")
        try:
            start, end = _read_time(body.get("startTime")), _read_time(body.get("endTime"))
        except ValueError as exc:
            return _error(400, "ErrorInvalidParameter", f"Invalid startTime or endTime: {exc}")
        interval = body.get("availabilityViewInterval", 30)
        if not isinstance(interval, int) or not 5 <= interval <= 1440:
            return _error(
                400, "ErrorInvalidParameter", "availabilityViewInterval must be 5 to 1440."
            )
        with self._state:
            value = []
            for address in body["schedules"]:
                found = self.users.get(str(address))
                if found is None:
                    value.append(
                        {
                            "scheduleId": address,
                            "availabilityView": "",
                            "scheduleItems": [],
                            "error": {
                                "message": "The user was not found.",
                                "responseCode": "ErrorMailRecipientNotFound",
                            },
                        }
                    )
                    continue
                calendar = next(c for c in found.calendars.values() if c.is_default)
                items = [
                    {
                        "isPrivate": False,
                        "status": occurrence.get("showAs", "busy"),
                        "subject": occurrence.get("subject", ""),
                        "location": "",
                        "start": occurrence["start"],
                        "end": occurrence["end"],
                    }
                    for occurrence in self._view_items(calendar, start, end)
                    if not occurrence.get("isCancelled")
                ]
                value.append(
                    {
                        "scheduleId": address,
                        "availabilityView": self._view_string(items, start, end, interval),
                        "scheduleItems": items,
                        "workingHours": {
                            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                            "startTime": "08:00:00.0000000",
                            "endTime": "17:00:00.0000000",
                            "timeZone": {"name": "UTC"},
                        },
                    }
                )
        context = f"{self.api}/$metadata#Collection(microsoft.graph.scheduleInformation)"
        return JSONResponse({"@odata.context": context, "value": value})

    @staticmethod
    def _view_string(
        items: list[dict[str, Any]], start: datetime, end: datetime, minutes: int
    ) -> str:
        codes = {"free": "0", "tentative": "1", "busy": "2", "oof": "3", "workingElsewhere": "4"}
        slots = []
        slot = start
        while slot < end:
            slot_end = slot + timedelta(minutes=minutes)
            code = "0"
            for item in items:
                if _read_time(item["start"]) < slot_end and _read_time(item["end"]) > slot:
                    code = max(code, codes.get(item["status"], "2"))
            slots.append(code)
            slot = slot_end
        return "".join(slots)

    async def _subscribe(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        body = await self._json_body(request)
        if body is None:
            return _error(400, "InvalidRequest", "Cannot read the request body.")
        change_types = {t.strip() for t in str(body.get("changeType", "")).split(",") if t}
        if not change_types or not change_types <= {"created", "updated", "deleted"}:
            return _error(400, "InvalidRequest", "changeType is invalid.")
        url = body.get("notificationUrl")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return _error(400, "InvalidRequest", "notificationUrl is invalid.")
        resource = str(body.get("resource", "")).lstrip("/")
        parts = resource.split("/")
        valid = resource == "me/events" or (
            len(parts) == 4 and parts[:2] == ["me", "calendars"] and parts[3] == "events"
        )
        if not valid:
            return _error(400, "InvalidRequest", f"Resource '{resource}' is not supported.")
        expires = _query_time(body.get("expirationDateTime"))
        now = datetime.now(UTC)
        if expires is None or expires <= now:
            return _error(400, "InvalidRequest", "expirationDateTime is invalid.")
        if expires > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
            return _error(
                400,
                "InvalidRequest",
                f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} minutes in "
                "the future.",
            )
        client_state = body.get("clientState")
        if client_state is not None and (
            not isinstance(client_state, str) or len(client_state) > 128
        ):
            return _error(400, "InvalidRequest", "clientState is longer than 128 characters.")
        lifecycle = body.get("lifecycleNotificationUrl")
        with self._state:
            # Graph validates each endpoint first: POST ?validationToken=… (text/plain).
            for target in dict.fromkeys([url, lifecycle]):
                if isinstance(target, str):
                    parts_ = urlsplit(target)
                    query = (parts_.query + "&" if parts_.query else "") + urlencode(
                        {"validationToken": "Validation: Testing client application"}
                    )
                    self._outbox.append(
                        (f"{parts_.path}?{query}", {"content-type": "text/plain"}, b"")
                    )
            sub = _Subscription(
                id=str(uuid.uuid4()),
                user=user,
                resource=resource,
                notification_url=url,
                lifecycle_url=lifecycle if isinstance(lifecycle, str) else None,
                client_state=client_state,
                expires=expires,
                change_types=change_types,
            )
            self.subscriptions[sub.id] = sub
        return JSONResponse(
            {
                "@odata.context": f"{self.api}/$metadata#subscriptions/$entity",
                "id": sub.id,
                "resource": body.get("resource"),
                "applicationId": self.client_id,
                "changeType": body.get("changeType"),
                "clientState": client_state,
                "notificationUrl": url,
                "lifecycleNotificationUrl": lifecycle,
                "expirationDateTime": _iso(expires),
                "creatorId": self.users.get(user, _User(user, "")).object_id,
                "latestSupportedTlsVersion": body.get("latestSupportedTlsVersion", "v1_2"),
                "notificationContentType": "application/json",
            },
            status_code=201,
        )

    async def _unsubscribe(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._unauthorized(request)
        with self._state:
            sub = self.subscriptions.get(request.path_params["sub"])
            if sub is None or sub.user != user:
                return _error(404, "ResourceNotFound", "The object was not found.")
            del self.subscriptions[sub.id]
        return Response(status_code=204)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
