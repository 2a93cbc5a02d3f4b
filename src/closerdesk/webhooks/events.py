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
    ping = "ping"


SUBSCRIBABLE = frozenset(e.value for e in EventType if e is not EventType.ping)
"""What a subscription may list; ``ping`` goes only to the subscription being tested."""
