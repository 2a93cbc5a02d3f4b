"""The webhook event types (docs/webhooks.md)."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    call_booked = "call.booked"
    call_updated = "call.updated"
    call_rescheduled = "call.rescheduled"
    call_cancelled = "call.cancelled"
    call_closer_reassigned = "call.closer_reassigned"
    call_outcome_set = "call.outcome_set"
    call_no_show = "call.no_show"
    lead_created = "lead.created"
    lead_updated = "lead.updated"
    payment_recorded = "payment.recorded"
    calendar_connection_invalid = "calendar.connection_invalid"
    webhook_failing = "webhook.failing"
    webhook_disabled = "webhook.disabled"
    ping = "ping"
    call_absence_marked = "call.absence_marked"
    call_confirmed = "call.confirmed"
    call_declined = "call.declined"


SUBSCRIBABLE = frozenset(e.value for e in EventType if e is not EventType.ping)
"""What a subscription may list; ``ping`` goes only to the subscription being tested."""

ALL_EVENTS = "*"
"""``event_types: ["*"]``: every subscribable type, including types added later."""


def subscribed(event_types: list[str], event_type: EventType) -> bool:
    """Whether a subscription listing ``event_types`` receives ``event_type``."""
    if event_type is EventType.ping:
        return False
    return ALL_EVENTS in event_types or event_type.value in event_types
