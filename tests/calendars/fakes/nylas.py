"""A fake of the Nylas API v3 calendar endpoints (grants, calendars, events, free/busy, webhooks).

Speaks the documented wire format of:

* the Email, Calendar and Contacts API reference, https://developer.nylas.com/docs/api/v3/ecc/
  (``GET /v3/grants/{grant_id}/calendars/{calendar_id}``, ``POST …/calendars/free-busy``,
  ``GET``/``POST /v3/grants/{grant_id}/events``, ``GET``/``PUT``/``DELETE …/events/{event_id}``;
  ``calendar_id`` required on every events endpoint, ``notify_participants``, ``start``/``end``,
  ``expand_recurring``, ``show_cancelled``, ``limit`` ≤ 200, ``page_token``/``next_cursor``;
  also https://developer.nylas.com/docs/reference/api/events/get-all-events/ and
  https://developer.nylas.com/docs/reference/api/events/delete-events-id/);
* the Administration API reference, https://developer.nylas.com/docs/api/v3/admin/
  (``GET /v3/grants/{grant_id}``: ``grant_status`` ``valid``/``invalid``, ``email``,
  ``provider``);
* errors, https://developer.nylas.com/docs/api/errors/ and
  https://developer.nylas.com/docs/api/errors/event-codes/ (``{"request_id", "error": {"type",
  "message", "provider_error"?}}``; ``grant.not_found`` 404, ``not_found_error`` 404,
  ``invalid_request_error`` 400, ``unauthorized`` 401, ``rate_limit_error`` 429);
* notifications, https://developer.nylas.com/docs/v3/notifications/notification-schemas/,
  https://developer.nylas.com/docs/reference/notifications/events/event-deleted/,
  https://developer.nylas.com/docs/reference/notifications/grants/grant-expired/ and
  https://developer.nylas.com/docs/v3/webhooks/ (``event.created``,
  ``event.updated``, ``event.deleted``, ``grant.expired``; ``X-Nylas-Signature``: hex
  HMAC-SHA256 of the raw body keyed with the webhook secret; the ``?challenge=`` handshake).

What it does like Nylas: a missing or wrong API key is a 401 ``unauthorized``; an unknown grant
a 404 ``grant.not_found``; a revoked grant (``revoke``) keeps its record with ``grant_status:
invalid`` and answers every data request 401 with the provider's ``invalid_grant`` as
``provider_error``; a deleted event turns ``status: cancelled`` (hidden unless
``show_cancelled=true``). Microsoft and iCloud grants email participants whatever
``notify_participants`` says (Nylas "Create an event"), which ``invitations`` records, as it
records every invitation a Google grant would send without ``notify_participants=false``.

Simplifications: recurrences are ``RRULE:FREQ=DAILY|WEEKLY;COUNT=n`` only, instances have the id
``<master id>_<start as YYYYMMDDTHHMMSSZ>``; free/busy reads the grant's primary calendar.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.calendars.fakes.base import FakeApi

CONFERENCING_BY_PROVIDER = {
    "Google Meet": "google",
    "Microsoft Teams": "microsoft",
    "Zoom Meeting": None,
}
"""Nylas conferencing providers → the grant provider they need (Zoom: a Zoom grant instead)."""
IGNORES_NOTIFY_FALSE = frozenset({"microsoft", "icloud"})
FREE_BUSY_MAX_SECONDS = 30 * 86400


@dataclass
class _User:
    email: str
    grant_id: str
    provider: str
    primary: str
    calendars: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = "valid"


def _now() -> int:
    return int(time.time())


def _epoch(value: datetime) -> int:
    return int(value.astimezone(UTC).timestamp())


def _day(value: str) -> int:
    return _epoch(datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC))


def _bounds(when: dict[str, Any]) -> tuple[int, int]:
    """An event's ``when`` as Unix seconds ``[start, end)`` (all-day read as UTC days)."""
    if "start_time" in when:
        return int(when["start_time"]), int(when["end_time"])
    if "date" in when:
        start = _day(when["date"])
        return start, start + 86400
    if "start_date" in when:
        return _day(when["start_date"]), _day(when["end_date"]) + 86400
    if "time" in when:
        return int(when["time"]), int(when["time"])
    raise ValueError("unknown when")


def _error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    error: dict[str, Any] = {"type": kind, "message": message, **extra}
    return JSONResponse({"request_id": str(uuid.uuid4()), "error": error}, status_code=status)


def _ok(data: Any, **extra: Any) -> JSONResponse:
    return JSONResponse({"request_id": str(uuid.uuid4()), "data": data, **extra})


def _bad(message: str) -> JSONResponse:
    return _error(400, "invalid_request_error", message)


class FakeNylas(FakeApi):
    """Nylas API v3 for closerdesk's tests; see the module docstring.

    State (read it after a request has been answered): ``users`` by email, ``invitations``
    (``(grant email, participant email)`` pairs Nylas or the provider would have emailed).
    Knobs: ``page_size`` (the most events one page holds, to exercise paging),
    ``conferencing_deferred`` (answer a create with ``conferencing.autocreate`` and no room
    URL yet, as when the provider makes the room later).
    """

    provider = "nylas"

    def __init__(self) -> None:
        super().__init__()
        self.api_key = "nyk_v0_" + secrets.token_urlsafe(24)
        self.webhook_secret = secrets.token_hex(32)
        self.application_id = str(uuid.uuid4())
        self._state = threading.RLock()
        self.users: dict[str, _User] = {}
        self.invitations: list[tuple[str, str]] = []
        self.page_size = 200
        self.conferencing_deferred = False
        self._notifications: list[tuple[str, dict[str, str], bytes]] = []

    # -- harness --------------------------------------------------------------------------------

    def settings_overrides(self) -> dict[str, object]:
        """``Settings`` fields pointing closerdesk at this fake."""
        return {
            "nylas_api_uri": self.url,
            "nylas_api_key": self.api_key,
            "nylas_webhook_secret": self.webhook_secret,
        }

    def add_user(
        self, user: str, *, provider: str = "google", calendar_id: str | None = None
    ) -> str:
        """A grant for ``user`` (an email) with a primary calendar (Google's primary calendar
        id is the address itself); returns the grant id. Adding a known user changes nothing."""
        with self._state:
            found = self.users.get(user)
            if found is not None:
                return found.grant_id
            primary = calendar_id or (user if provider == "google" else "cal_" + uuid.uuid4().hex)
            record = _User(user, str(uuid.uuid4()), provider, primary)
            record.calendars[primary] = self._calendar_object(record, primary, "Calendar", True)
            self.users[user] = record
            return record.grant_id

    def add_calendar(self, user: str, calendar_id: str, *, read_only: bool = False) -> str:
        """Another (not primary) calendar of ``user``."""
        with self._state:
            record = self._user(user)
            calendar = self._calendar_object(record, calendar_id, calendar_id, False)
            calendar["read_only"] = read_only
            record.calendars[calendar_id] = calendar
            return calendar_id

    def grant_id(self, user: str) -> str:
        return self._user(user).grant_id

    def primary_calendar(self, user: str) -> str:
        return self._user(user).primary

    def connect_body(self, user: str, **extra: object) -> dict[str, object]:
        """A ``PUT /v1/team/{id}/calendar`` body connecting ``user``'s grant."""
        return {"provider": "nylas", "grant_id": self.add_user(user), **extra}

    def add_event(
        self, user: str, fields: dict[str, Any], *, calendar_id: str | None = None
    ) -> str:
        """A foreign event made by the user (``fields`` in Nylas' shape, ``when`` required);
        records ``event.created`` for push. Returns its id (the user is added if new)."""
        self.add_user(user)
        with self._state:
            record = self._user(user)
            event = self._new_event(record, calendar_id or record.primary, fields)
            self._notify(record, "event.created", event)
            return str(event["id"])

    def add_busy(
        self,
        user: str,
        start: datetime,
        end: datetime,
        *,
        title: str = "Dentist",
        free: bool = False,
    ) -> str:
        """A foreign event ``[start, end)`` on the user's primary calendar (``busy: false`` when
        ``free``); returns its id."""
        when = {"object": "timespan", "start_time": _epoch(start), "end_time": _epoch(end)}
        return self.add_event(user, {"title": title, "when": when, "busy": not free})

    def add_recurring(
        self,
        user: str,
        start: datetime,
        end: datetime,
        *,
        count: int,
        freq: str = "WEEKLY",
        title: str = "Standup",
    ) -> str:
        """A foreign recurring event (``count`` occurrences, ``freq`` DAILY or WEEKLY) whose
        first occurrence is ``[start, end)``; returns the master event's id."""
        when = {"object": "timespan", "start_time": _epoch(start), "end_time": _epoch(end)}
        return self.add_event(
            user,
            {"title": title, "when": when, "recurrence": [f"RRULE:FREQ={freq};COUNT={count}"]},
        )

    def remove_event(self, user: str, event_id: str) -> None:
        """The user deleted the event; records ``event.deleted`` for push."""
        with self._state:
            record = self._user(user)
            event = record.events[event_id]
            event["status"] = "cancelled"
            self._notify_deleted(record, event)

    def events(self, user: str) -> list[dict[str, Any]]:
        """The user's live events (all calendars, not cancelled), in Nylas' shape."""
        with self._state:
            record = self._user(user)
            return [
                json.loads(json.dumps(e))
                for e in record.events.values()
                if e.get("status") != "cancelled"
            ]

    def revoke(self, user: str) -> None:
        """The user revoked access: the grant turns ``invalid`` (``grant.expired`` recorded)."""
        with self._state:
            record = self._user(user)
            record.status = "invalid"
            self._push(
                "grant.expired",
                "/nylas/system",
                {
                    "code": 25009,
                    "grant_id": record.grant_id,
                    "integration_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, record.provider)),
                    "provider": record.provider,
                    "email": record.email,
                    "grant_updated_at": _now(),
                },
            )

    def take_notifications(self) -> list[tuple[str, dict[str, str], bytes]]:
        """Webhook POSTs Nylas would have sent since the last call: ``("/hooks/nylas",
        headers, body)``, signed with ``webhook_secret``."""
        with self._state:
            taken, self._notifications = self._notifications, []
            return taken

    def challenge(self) -> str:
        """The ``challenge`` Nylas sends as ``GET /hooks/nylas?challenge=…`` when a webhook is
        created; the endpoint must answer 200 with exactly this as the body."""
        return secrets.token_urlsafe(16)

    def sign(self, body: bytes) -> str:
        return hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()

    def reset(self) -> None:
        """Forget requests, faults, users, events, invitations and notifications."""
        super().reset()
        with self._state:
            self.users.clear()
            self.invitations.clear()
            self._notifications.clear()
            self.page_size = 200
            self.conferencing_deferred = False

    # -- internals ------------------------------------------------------------------------------

    def _user(self, user: str) -> _User:
        record = self.users.get(user)
        if record is None:
            raise KeyError(f"no such user in the fake: {user}")
        return record

    def _by_grant(self, grant_id: str) -> _User | None:
        return next((u for u in self.users.values() if u.grant_id == grant_id), None)

    @staticmethod
    def _calendar_object(
        record: _User, calendar_id: str, name: str, primary: bool
    ) -> dict[str, Any]:
        return {
            "id": calendar_id,
            "grant_id": record.grant_id,
            "object": "calendar",
            "name": name,
            "description": None,
            "is_primary": primary,
            "is_owned_by_user": True,
            "read_only": False,
            "timezone": "UTC",
            "metadata": {},
        }

    def _new_event(self, record: _User, calendar_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        event: dict[str, Any] = {
            "id": uuid.uuid4().hex[:26],
            "grant_id": record.grant_id,
            "calendar_id": calendar_id,
            "object": "event",
            "title": "",
            "description": None,
            "location": None,
            "busy": True,
            "status": "confirmed",
            "participants": [],
            "metadata": {},
            "organizer": {"email": record.email, "name": ""},
            "read_only": False,
            "created_at": now,
            "updated_at": now,
            "ical_uid": uuid.uuid4().hex + "@fake.nylas",
        }
        event.update(json.loads(json.dumps(fields)))
        event["when"] = dict(event["when"])
        event["when"].setdefault(
            "object",
            "timespan"
            if "start_time" in event["when"]
            else "datespan"
            if "start_date" in event["when"]
            else "date",
        )
        record.events[str(event["id"])] = event
        return event

    def _push(self, kind: str, source: str, obj: dict[str, Any]) -> None:
        payload = {
            "specversion": "1.0",
            "type": kind,
            "source": source,
            "id": str(uuid.uuid4()),
            "time": _now(),
            "webhook_delivery_attempt": 1,
            "data": {"application_id": self.application_id, "object": obj},
        }
        body = json.dumps(payload).encode()
        headers = {"content-type": "application/json", "x-nylas-signature": self.sign(body)}
        self._notifications.append(("/hooks/nylas", headers, body))

    def _notify(self, record: _User, kind: str, event: dict[str, Any]) -> None:
        self._push(kind, f"/{record.provider}/events/realtime", json.loads(json.dumps(event)))

    def _notify_deleted(self, record: _User, event: dict[str, Any]) -> None:
        obj = {
            "grant_id": record.grant_id,
            "calendar_id": event["calendar_id"],
            "id": event["id"],
            "object": "event",
        }
        if event.get("metadata"):
            obj["metadata"] = event["metadata"]
        self._push("event.deleted", f"/{record.provider}/events/incremental", obj)

    def _instances(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """A recurring master's occurrences (``FREQ=DAILY|WEEKLY;COUNT=n``)."""
        rule = next((r for r in event.get("recurrence") or [] if r.startswith("RRULE:")), None)
        if rule is None:
            return [event]
        parts = dict(p.split("=", 1) for p in rule.removeprefix("RRULE:").split(";"))
        step = {"DAILY": 86400, "WEEKLY": 7 * 86400}[parts["FREQ"]]
        start, end = _bounds(event["when"])
        instances = []
        for n in range(int(parts.get("COUNT", "1"))):
            offset = n * step
            stamp = datetime.fromtimestamp(start + offset, UTC).strftime("%Y%m%dT%H%M%SZ")
            instance = {k: v for k, v in event.items() if k != "recurrence"}
            instance["id"] = f"{event['id']}_{stamp}"
            instance["master_event_id"] = event["id"]
            instance["when"] = {
                "object": "timespan",
                "start_time": start + offset,
                "end_time": end + offset,
            }
            instances.append(instance)
        return instances

    # -- request checks -------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return hmac.compare_digest(header, f"Bearer {self.api_key}")

    def _grant(self, request: Request, *, data: bool = True) -> _User | Response:
        """The grant of the path, or Nylas' error answer."""
        if not self._authorized(request):
            return _error(401, "unauthorized", "Unauthorized")
        record = self._by_grant(request.path_params["grant_id"])
        if record is None:
            return _error(404, "grant.not_found", "Grant not found")
        if data and record.status != "valid":
            return _error(
                401,
                "unauthorized",
                "Unauthorized",
                provider_error={
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                },
            )
        return record

    @staticmethod
    def _calendar_id(request: Request, record: _User) -> str | Response:
        calendar_id = request.query_params.get("calendar_id")
        if not calendar_id:
            return _bad("calendar_id is a required query parameter")
        if calendar_id == "primary":
            return record.primary
        if calendar_id not in record.calendars:
            return _error(404, "not_found_error", "calendar not found")
        return calendar_id

    @staticmethod
    async def _json(request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid_request_error", "error parsing request body")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "error parsing request body")
        return body

    def _check_event_fields(self, record: _User, body: dict[str, Any], *, create: bool) -> str:
        """What is wrong with an event body (empty: nothing)."""
        when = body.get("when")
        if create and not isinstance(when, dict):
            return "when is required"
        if when is not None:
            if not isinstance(when, dict):
                return "when must be an object"
            start, end = when.get("start_time"), when.get("end_time")
            if not (isinstance(start, int) and isinstance(end, int)) or start >= end:
                return "when.start_time must be before when.end_time (Unix seconds)"
        for key, limit in (("title", 1024), ("description", 8192), ("location", 255)):
            value = body.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                return f"{key} must be a string of at most {limit} characters"
        participants = body.get("participants", [])
        if not isinstance(participants, list) or not all(
            isinstance(p, dict) and isinstance(p.get("email"), str) for p in participants
        ):
            return "participants must be objects with an email"
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict) or len(metadata) > 50:
            return "metadata must be an object of at most 50 keys"
        if not all(isinstance(v, str) and len(v) <= 500 for v in metadata.values()):
            return "metadata values must be strings of at most 500 characters"
        if "busy" in body and not isinstance(body["busy"], bool):
            return "busy must be a boolean"
        conferencing = body.get("conferencing")
        if conferencing is not None:
            if not create:
                return ""
            provider = conferencing.get("provider") if isinstance(conferencing, dict) else None
            if provider not in CONFERENCING_BY_PROVIDER:
                return "conferencing.provider must be Google Meet, Zoom Meeting or Microsoft Teams"
            autocreate = conferencing.get("autocreate")
            if not isinstance(autocreate, dict):
                return "conferencing needs autocreate or details"
            needed = CONFERENCING_BY_PROVIDER[provider]
            if needed is None and not autocreate.get("conf_grant_id"):
                return "Zoom Meeting autocreate needs conf_grant_id"
            if needed is not None and needed != record.provider:
                return f"{provider} cannot be created on a {record.provider} grant"
        return ""

    def _invite(self, record: _User, request: Request, participants: list[dict[str, Any]]) -> None:
        quiet = request.query_params.get("notify_participants", "true").lower() == "false"
        if quiet and record.provider not in IGNORES_NOTIFY_FALSE:
            return
        self.invitations.extend((record.email, p["email"]) for p in participants)

    # -- routes ---------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        grants = "/v3/grants/{grant_id}"
        return [
            Route(grants, self._get_grant, methods=["GET"]),
            Route(f"{grants}/calendars/free-busy", self._free_busy, methods=["POST"]),
            Route(f"{grants}/calendars/{{calendar_id}}", self._get_calendar, methods=["GET"]),
            Route(f"{grants}/events", self._list_events, methods=["GET"]),
            Route(f"{grants}/events", self._create_event, methods=["POST"]),
            Route(f"{grants}/events/{{event_id}}", self._get_event, methods=["GET"]),
            Route(f"{grants}/events/{{event_id}}", self._update_event, methods=["PUT"]),
            Route(f"{grants}/events/{{event_id}}", self._delete_event, methods=["DELETE"]),
        ]

    async def _get_grant(self, request: Request) -> Response:
        with self._state:
            record = self._grant(request, data=False)
            if not isinstance(record, _User):
                return record
            return _ok(
                {
                    "id": record.grant_id,
                    "provider": record.provider,
                    "grant_status": record.status,
                    "email": record.email,
                    "scope": ["https://www.googleapis.com/auth/calendar"],
                    "created_at": _now() - 86400,
                    "updated_at": _now() - 3600,
                }
            )

    async def _get_calendar(self, request: Request) -> Response:
        with self._state:
            record = self._grant(request)
            if not isinstance(record, _User):
                return record
            calendar_id = request.path_params["calendar_id"]
            if calendar_id == "primary":
                calendar_id = record.primary
            calendar = record.calendars.get(calendar_id)
            if calendar is None:
                return _error(404, "not_found_error", "calendar not found")
            return _ok(calendar)

    async def _free_busy(self, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return body
        with self._state:
            record = self._grant(request)
            if not isinstance(record, _User):
                return record
            start, end, emails = body.get("start_time"), body.get("end_time"), body.get("emails")
            if not (isinstance(start, int) and isinstance(end, int)) or start >= end:
                return _bad("start_time and end_time are required Unix times, start first")
            if end - start > FREE_BUSY_MAX_SECONDS:
                return _bad("free/busy covers at most 30 days from start_time")
            if not isinstance(emails, list) or not emails:
                return _bad("emails is required")
            data = []
            for email in emails:
                owner = self.users.get(str(email))
                if owner is None:
                    data.append(
                        {
                            "email": email,
                            "error": f"Unable to resolve e-mail address {email}.",
                            "object": "error",
                        }
                    )
                    continue
                slots = []
                for event in owner.events.values():
                    if event["calendar_id"] != owner.primary or event.get("status") == "cancelled":
                        continue
                    if event.get("busy") is False:
                        continue
                    for instance in self._instances(event):
                        s, e = _bounds(instance["when"])
                        s, e = max(s, start), min(e, end)
                        if s < e:
                            slots.append(
                                {
                                    "start_time": s,
                                    "end_time": e,
                                    "status": "busy",
                                    "object": "time_slot",
                                }
                            )
                slots.sort(key=lambda slot: slot["start_time"])
                data.append({"email": email, "time_slots": slots, "object": "free_busy"})
            return _ok(data)

    async def _list_events(self, request: Request) -> Response:
        with self._state:
            record = self._grant(request)
            if not isinstance(record, _User):
                return record
            calendar_id = self._calendar_id(request, record)
            if not isinstance(calendar_id, str):
                return calendar_id
            q = request.query_params
            try:
                start = int(q.get("start", _now()))
                end = int(q.get("end", _now() + 30 * 86400))
                limit = int(q.get("limit", "50"))
                offset = int(base64.urlsafe_b64decode(q["page_token"])) if "page_token" in q else 0
            except (ValueError, TypeError):
                return _bad("start, end, limit and page_token must be valid")
            if start > end:
                return _bad("start cannot be later than end")
            if not 1 <= limit <= 200:
                return _bad("limit must be between 1 and 200")
            expand = q.get("expand_recurring", "false").lower() == "true"
            cancelled = q.get("show_cancelled", "false").lower() == "true"
            found = []
            for event in record.events.values():
                if event["calendar_id"] != calendar_id:
                    continue
                if event.get("status") == "cancelled" and not cancelled:
                    continue
                instances = self._instances(event)
                if expand:
                    for instance in instances:
                        s, e = _bounds(instance["when"])
                        if s < end and e > start:
                            found.append(instance)
                elif any(
                    _bounds(i["when"])[0] < end and _bounds(i["when"])[1] > start for i in instances
                ):
                    found.append(event)
            found.sort(key=lambda e: (_bounds(e["when"])[0], e["id"]))
            size = min(limit, self.page_size)
            page = found[offset : offset + size]
            extra: dict[str, Any] = {}
            if offset + size < len(found):
                extra["next_cursor"] = base64.urlsafe_b64encode(
                    str(offset + size).encode()
                ).decode()
            return _ok(page, **extra)

    def _event_of(self, request: Request, record: _User) -> dict[str, Any] | Response:
        calendar_id = self._calendar_id(request, record)
        if not isinstance(calendar_id, str):
            return calendar_id
        event = record.events.get(request.path_params["event_id"])
        if event is None or event.get("status") == "cancelled":
            return _error(404, "not_found_error", "requested object not found")
        if event["calendar_id"] != calendar_id:
            return _error(404, "not_found_error", "requested object not found")
        return event

    async def _create_event(self, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return body
        with self._state:
            record = self._grant(request)
            if not isinstance(record, _User):
                return record
            calendar_id = self._calendar_id(request, record)
            if not isinstance(calendar_id, str):
                return calendar_id
            if record.calendars[calendar_id].get("read_only"):
                return _error(403, "forbidden", "calendar is read-only")
            problem = self._check_event_fields(record, body, create=True)
            if problem:
                return _bad(problem)
            fields = dict(body)
            conferencing = fields.pop("conferencing", None)
            event = self._new_event(record, calendar_id, fields)
            if conferencing is not None:
                provider = conferencing["provider"]
                if self.conferencing_deferred:
                    event["conferencing"] = {"provider": provider, "autocreate": {}}
                else:
                    code = secrets.token_hex(5)
                    url = {
                        "Google Meet": f"https://meet.google.com/{code[:3]}-{code[3:7]}-{code[7:]}",
                        "Microsoft Teams": f"https://teams.microsoft.com/l/meetup-join/{code}",
                        "Zoom Meeting": f"https://zoom.us/j/{int(code, 16)}",
                    }[provider]
                    event["conferencing"] = {"provider": provider, "details": {"url": url}}
            self._invite(record, request, event["participants"])
            self._notify(record, "event.created", event)
            return _ok(event)

    async def _get_event(self, request: Request) -> Response:
        with self._state:
            record = self._grant(request)
            if not isinstance(record, _User):
                return record
            event = self._event_of(request, record)
            return _ok(event) if isinstance(event, dict) else event

    async def _update_event(self, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return body
        with self._state:
            record = self._grant(request)
            if not isinstance(record, _User):
                return record
            event = self._event_of(request, record)
            if not isinstance(event, dict):
                return event
            problem = self._check_event_fields(record, body, create=False)
            if problem:
                return _bad(problem)
            for key in ("title", "description", "location", "busy", "participants", "metadata"):
                if key in body:
                    event[key] = body[key]
            if "when" in body:
                event["when"] = {"object": "timespan", **body["when"]}
            event["updated_at"] = _now()
            self._invite(record, request, body.get("participants", []))
            self._notify(record, "event.updated", event)
            return _ok(event)

    async def _delete_event(self, request: Request) -> Response:
        with self._state:
            record = self._grant(request)
            if not isinstance(record, _User):
                return record
            event = self._event_of(request, record)
            if not isinstance(event, dict):
                return event
            event["status"] = "cancelled"
            self._notify_deleted(record, event)
            return JSONResponse({"request_id": str(uuid.uuid4())})
