"""Helpers for the webhook tests: an independent Standard Webhooks verifier, a movable clock,
and ``Hooks``, which subscribes endpoints of the test receiver and checks every request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import ulid
from closerdesk.kit.time import utcnow
from closerdesk.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from closerdesk.webhooks.dispatcher import Dispatcher
from closerdesk.webhooks.payloads import LeadCreatedData, LeadUpdatedData
from tests.envelopes import error, ok  # noqa: F401 - re-exported to the tests of this package
from tests.factories import Org
from tests.webhooks.receiver import Received, Receiver

ALL_EVENT_TYPES = [
    "call.booked",
    "call.updated",
    "call.rescheduled",
    "call.cancelled",
    "call.closer_reassigned",
    "call.outcome_set",
    "call.no_show",
    "lead.created",
    "lead.updated",
    "payment.recorded",
    "call.absence_marked",
    "call.confirmed",
    "call.declined",
]
TOLERANCE_SECONDS = 300


def a_lead(lead_id: str = "lead_1", email: str | None = None) -> dict[str, Any]:
    """A lead object as ``GET /v1/leads/{id}`` answers it (for events written directly)."""
    return {
        "id": lead_id,
        "email": email or f"{lead_id}@x.test",
        "full_name": None,
        "phone": None,
        "company": None,
        "time_zone": None,
        "status": "new",
        "metadata": {},
        "created_at": "2026-01-20T15:00:00Z",
        "updated_at": "2026-01-20T15:00:00Z",
    }


def lead_created(lead_id: str = "lead_1", email: str | None = None) -> LeadCreatedData:
    """A ``lead.created`` event's data, to record straight into the outbox."""
    return LeadCreatedData(lead=a_lead(lead_id, email))


def lead_updated(lead_id: str = "lead_1") -> LeadUpdatedData:
    """A ``lead.updated`` event's data (its ``full_name`` changed), for the outbox."""
    return LeadUpdatedData(
        lead=a_lead(lead_id), changed_fields=["full_name"], previous={"full_name": "Old"}
    )


# --- an independent verifier (hmac/hashlib/base64 only, not the standardwebhooks library) ------
class SignatureError(AssertionError):
    pass


def _key(secret: str) -> bytes:
    assert secret.startswith("whsec_"), secret
    return base64.b64decode(secret[len("whsec_") :])


def matching_secrets(secrets: Sequence[str], headers: dict[str, str], body: bytes) -> list[str]:
    """The secrets (of ``secrets``) whose HMAC-SHA256 over ``id.timestamp.body`` is among the
    ``v1,<base64>`` signatures of the request. Raises ``SignatureError`` for a malformed or
    stale request. Works on the raw body bytes, as a receiver must."""
    try:
        msg_id = headers["webhook-id"]
        timestamp = headers["webhook-timestamp"]
        signature_header = headers["webhook-signature"]
    except KeyError as exc:
        raise SignatureError(f"missing header {exc}") from exc
    if not timestamp.isdigit():
        raise SignatureError(f"bad timestamp {timestamp!r}")
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureError("timestamp outside the tolerance")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    offered: list[bytes] = []
    for part in signature_header.split(" "):
        version, _, value = part.partition(",")
        if version != "v1" or not value:
            raise SignatureError(f"malformed signature {part!r}")
        offered.append(base64.b64decode(value, validate=True))
    matched = []
    for secret in secrets:
        expected = hmac.new(_key(secret), signed, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, sig) for sig in offered):
            matched.append(secret)
    return matched


def signature_count(headers: dict[str, str]) -> int:
    return len(headers["webhook-signature"].split(" "))


def check_request(request: Received, secrets: Sequence[str]) -> dict[str, Any]:
    """Every delivered request: the envelope, and a signature that both the independent
    verifier and ``standardwebhooks.Webhook.verify`` accept with one of ``secrets``."""
    assert request.headers["content-type"] == "application/json"
    payload = json.loads(request.body)
    assert list(payload) == ["id", "event", "created_at", "organization_id", "data"], payload
    assert request.webhook_id == payload["id"]
    assert payload["id"].startswith("msg_")
    matched = matching_secrets(secrets, request.headers, request.body)
    if not matched:
        raise SignatureError(f"no known secret signed {request.webhook_id}")
    for secret in matched:  # the reference library agrees, on the same bytes and headers
        assert Webhook(secret).verify(request.body, request.headers) == payload
    return dict(payload)


# --- a clock the tests move ----------------------------------------------------------------------
class Clock:
    """Real time plus an offset that only grows; give it to ``Dispatcher(clock=…)``."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta

    def move_to(self, when: datetime) -> None:
        """Move forward to ``when`` (never back)."""
        self.offset = max(self.offset, when - utcnow())


# --- the webhook side of a test ------------------------------------------------------------------


class Hooks:
    """The API client, the organization, the receiver, and what each endpoint's secrets are.

    ``check_all()`` (run after every test) verifies every request the receiver saw.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        org: Org,
        receiver: Receiver,
        database: Database,
        settings: Settings,
    ) -> None:
        self.client = client
        self.org = org
        self.receiver = receiver
        self.database = database
        self.settings = settings
        self.secrets: dict[str, list[str]] = {}
        self._dispatchers: list[Dispatcher] = []

    # --- subscriptions ---------------------------------------------------------------------------
    def new_name(self) -> str:
        return "h" + ulid().lower()

    async def subscribe(
        self,
        name: str | None = None,
        event_types: Iterable[str] = ALL_EVENT_TYPES,
        **extra: Any,
    ) -> dict[str, Any]:
        """``POST /v1/webhooks`` for a fresh receiver endpoint; returns the answer (with secret)."""
        name = name or self.new_name()
        body = {"target_url": self.receiver.url(name), "event_types": list(event_types), **extra}
        data = ok(await self.client.post("/v1/webhooks", headers=self.org.headers, json=body), 201)
        self.secrets[name] = [data["secret"]]
        data["name"] = name
        return dict(data)

    async def rotate(self, subscription: dict[str, Any]) -> str:
        data = ok(
            await self.client.post(
                f"/v1/webhooks/{subscription['id']}/rotate-secret", headers=self.org.headers
            )
        )
        self.secrets[subscription["name"]].append(data["secret"])
        return str(data["secret"])

    async def get(self, subscription_id: str) -> dict[str, Any]:
        return dict(
            ok(await self.client.get(f"/v1/webhooks/{subscription_id}", headers=self.org.headers))
        )

    async def deliveries(
        self, subscription_id: str, org: Org | None = None, **params: Any
    ) -> list[dict[str, Any]]:
        """Every delivery of the subscription (all pages), through the API."""
        headers = (org or self.org).headers
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {"limit": 100, **params, **({"cursor": cursor} if cursor else {})}
            r = await self.client.get(
                f"/v1/webhooks/{subscription_id}/deliveries", headers=headers, params=query
            )
            assert r.status_code == 200, r.text
            body = r.json()
            out.extend(body["data"])
            cursor = body["pagination"]["next_cursor"]
            if not body["pagination"]["has_more"]:
                return out

    # --- dispatchers -----------------------------------------------------------------------------
    def dispatcher(self, **options: Any) -> Dispatcher:
        """A dispatcher allowed to post to 127.0.0.1; closed after the test."""
        dispatcher = Dispatcher(self.database, self.settings, **options)
        self._dispatchers.append(dispatcher)
        return dispatcher

    async def aclose(self) -> None:
        for dispatcher in self._dispatchers:
            await dispatcher.aclose()

    # --- what arrived ----------------------------------------------------------------------------
    def payloads(self, name: str) -> list[dict[str, Any]]:
        """The verified bodies received on ``name``, in arrival order."""
        return [check_request(r, self.secrets[name]) for r in self.receiver.requests(name)]

    def check_all(self) -> int:
        """Verify every request received during the test; returns how many."""
        requests = self.receiver.requests()
        for request in requests:
            assert request.name in self.secrets, f"a request to an unknown endpoint {request.path}"
            check_request(request, self.secrets[request.name])
        return len(requests)


# --- database reads ------------------------------------------------------------------------------
async def delivery_rows(database: Database, subscription_id: str) -> list[WebhookDelivery]:
    async with database.reader() as s:
        rows = await s.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.subscription_id == subscription_id)
            .order_by(WebhookDelivery.id)
        )
        return list(rows)


async def attempt_rows(database: Database, delivery_id: str) -> list[WebhookAttempt]:
    async with database.reader() as s:
        rows = await s.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.id)
        )
        return list(rows)


async def subscription_row(database: Database, subscription_id: str) -> WebhookSubscription:
    async with database.reader() as s:
        row = await s.get(WebhookSubscription, subscription_id)
        assert row is not None
        return row
