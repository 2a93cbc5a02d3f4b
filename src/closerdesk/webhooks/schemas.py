"""Webhook subscription and delivery shapes (docs/webhooks.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from closerdesk.kit.schemas import RequestSchema, Schema, UTCDateTime
from closerdesk.webhooks.events import ALL_EVENTS, SUBSCRIBABLE, EventType

# Both enumerations are made from ``EventType``, the one list of event types: pydantic and the
# OpenAPI document see the Literal, mypy (which cannot read a computed Literal) a plain string.
if TYPE_CHECKING:
    EventTypeName = str
    DeliveredEventType = str
else:
    EventTypeName = Literal[(*(e.value for e in EventType if e.value in SUBSCRIBABLE), ALL_EVENTS)]
    DeliveredEventType = Literal[tuple(e.value for e in EventType)]
"""``EventTypeName``: a type a subscription may list, or ``"*"`` (alone) for every type, present
and future. ``DeliveredEventType``: the type of a delivered event (every type, ``ping``
included)."""

EVENT_TYPES_DESCRIPTION = (
    'The event types to receive, or `["*"]` for every type (including types added later). '
    "At least one; no repeats; `ping` is sent by the test endpoint only."
)


def _not_empty(values: object) -> object:
    if isinstance(values, list) and not values:
        raise ValueError('list at least one event type, or ["*"] for every type')
    return values


def _unique(values: list[str]) -> list[str]:
    if ALL_EVENTS in values and len(values) > 1:
        raise ValueError('"*" already means every type: list it alone')
    if len(set(values)) != len(values):
        raise ValueError("event types must not repeat")
    missing = set(values) - SUBSCRIBABLE - {ALL_EVENTS}
    if missing:
        raise ValueError(f"unknown event types: {sorted(missing)}")
    return values


class WebhookSubscription(Schema):
    """A subscription as listed (the secret is shown only on create and rotate).

    Health (docs/webhooks.md, "Webhook health"): ``failing_since`` is when the current run of
    failed attempts began (null while deliveries succeed); ``disabled_at``/``disabled_reason``
    say when and why it was disabled (410 Gone, 5 days of failures, or through the API)."""

    id: str
    target_url: str
    event_types: list[EventTypeName]
    description: str | None
    is_active: bool
    disabled_at: UTCDateTime | None
    disabled_reason: str | None
    failing_since: UTCDateTime | None
    created_at: UTCDateTime
    updated_at: UTCDateTime


class WebhookSubscriptionWithSecret(WebhookSubscription):
    """The subscription plus its ``whsec_…`` secret: answered once, on create or rotate."""

    secret: str


class WebhookSubscriptionCreate(RequestSchema):
    target_url: str = Field(max_length=2000, examples=["https://crm.example.com/hooks/closerdesk"])
    event_types: list[EventTypeName] = Field(
        min_length=1, max_length=20, description=EVENT_TYPES_DESCRIPTION, examples=[["*"]]
    )
    description: str | None = Field(default=None, max_length=500)

    _present = field_validator("event_types", mode="before")(_not_empty)
    _check = field_validator("event_types")(_unique)


class WebhookSubscriptionUpdate(RequestSchema):
    """Only the fields present change. ``is_active: true`` re-enables a disabled subscription
    (failed deliveries are not re-sent by that alone: use ``recover``)."""

    target_url: str | None = Field(default=None, max_length=2000)
    event_types: list[EventTypeName] | None = Field(
        default=None, min_length=1, max_length=20, description=EVENT_TYPES_DESCRIPTION
    )
    description: str | None = Field(default=None, max_length=500)
    is_active: bool | None = None

    _present = field_validator("event_types", mode="before")(_not_empty)

    @field_validator("event_types")
    @classmethod
    def _check(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique(values)


class WebhookAttempt(Schema):
    """One HTTP attempt: when, status code (null when no answer), latency (ms), excerpt."""

    id: str
    attempted_at: UTCDateTime
    status_code: int | None
    latency_ms: int
    succeeded: bool
    response_excerpt: str | None
    error: str | None


class WebhookDelivery(Schema):
    """One event for one subscription with every attempt made so far."""

    id: str
    subscription_id: str
    event_id: str
    event_type: DeliveredEventType
    status: Literal["pending", "succeeded", "failed"]
    attempt_count: int
    next_attempt_at: UTCDateTime | None
    delivered_at: UTCDateTime | None
    last_status_code: int | None
    last_error: str | None
    created_at: UTCDateTime
    attempts: list[WebhookAttempt] = Field(default_factory=list)


class PingResult(Schema):
    """What ``POST /v1/webhooks/{id}/test`` saw: the ping's delivery and its one attempt
    (``status_code`` null when the target did not answer; ``latency_ms`` in milliseconds;
    ``delivery_id`` null when the subscription is disabled and nothing was sent)."""

    delivery_id: str | None
    success: bool
    status_code: int | None
    latency_ms: int
    error: str | None


class RecoverResult(Schema):
    requeued: int = Field(description="How many failed deliveries were queued again")
