"""One pydantic model per webhook event type: the ``data`` of each event, and its envelope.

``record_event`` takes one of the ``…Data`` models below and nothing else, so every body a
partner receives is built from (and checked against) the shape the OpenAPI document publishes
under ``webhooks`` (docs/webhooks.md, "Event types"). Version 1 of every shape: fields may be
added, never removed, renamed or retyped.

Times are RFC 3339 UTC strings, money integer cents, durations minutes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from closerdesk.calls.schemas import (
    Call,
    CancelReasonCode,
    ChangeReasonCode,
    LossReason,
    ReassignResult,
)
from closerdesk.kit.schemas import Schema, UTCDateTime
from closerdesk.leads.schemas import Lead
from closerdesk.payments.schemas import Payment
from closerdesk.webhooks.events import EventType
from closerdesk.webhooks.schemas import WebhookSubscription

Assignment = Literal["manual", "round_robin"]


class Actor(Schema):
    """Who made the change: the API key that called."""

    type: Literal["api_key"] = "api_key"
    id: str


class LeadContact(Schema):
    """What a partner needs to reach the lead."""

    id: str
    email: str
    full_name: str | None
    phone: str | None
    time_zone: str | None


class CalendarConnectionRef(Schema):
    """A closer's calendar connection as partners see it: never a credential."""

    id: str
    member_id: str
    provider: str
    calendar_id: str | None
    status: Literal["valid", "invalid"]
    invalid_reason: str | None
    sync_status: str | None
    last_synced_at: UTCDateTime | None


class EventData(Schema):
    """Base of every event's ``data``; ``event_type`` says which event it is."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)
    event_type: ClassVar[EventType]


class CallBookedData(EventData):
    """``call.booked``: the call as booked, the lead's contact, who booked it and how its closer
    was chosen (``manual``: named in the request; ``round_robin``: by the booking link)."""

    event_type = EventType.call_booked
    call: Call
    lead: LeadContact
    booked_by: Actor
    assignment: Assignment


class CallUpdatedData(EventData):
    """``call.updated``: the call after the change, which fields changed and their old values."""

    event_type = EventType.call_updated
    call: Call
    changed_fields: list[str]
    previous: dict[str, Any] = Field(description="The changed fields' values before the change")
    updated_by: Actor


class CallRescheduledData(EventData):
    """``call.rescheduled``: old and new start (RFC 3339 UTC) and why."""

    event_type = EventType.call_rescheduled
    call: Call
    lead: LeadContact
    previous_scheduled_at: UTCDateTime | None
    scheduled_at: UTCDateTime | None
    reason: str | None
    reason_code: ChangeReasonCode | None = Field(
        default=None, description='docs/sales-floor.md, "Reason codes"'
    )
    rescheduled_by: Actor
    is_slot_free: bool = Field(description="False when the move was forced over a conflict")


class CallCancelledData(EventData):
    """``call.cancelled``: the cancelled call, why and by whom."""

    event_type = EventType.call_cancelled
    call: Call
    lead: LeadContact
    reason: str | None
    reason_code: CancelReasonCode | None = Field(
        default=None, description='docs/sales-floor.md, "Reason codes"'
    )
    cancelled_by: Actor


class CallCloserReassignedData(ReassignResult, EventData):
    """``call.closer_reassigned``: the reassign answer plus everything needed to email the
    lead (``duration_minutes`` in minutes, ``time_zone`` the lead's IANA zone)."""

    event_type = EventType.call_closer_reassigned
    reason: str | None
    reason_code: ChangeReasonCode | None = Field(
        default=None, description='docs/sales-floor.md, "Reason codes"'
    )
    scheduled_at: UTCDateTime | None
    duration_minutes: int | None
    time_zone: str | None
    new_closer_email: str | None
    lead: LeadContact
    reassigned_by: Actor
    assignment: Assignment
    call: Call


class CallOutcomeSetData(EventData):
    """``call.outcome_set``: the call with its outcome, the status before and who set it."""

    event_type = EventType.call_outcome_set
    call: Call
    lead: LeadContact
    previous_status: str
    loss_reason: LossReason | None = Field(
        default=None, description="With ``lost`` only: why (docs/sales-floor.md)"
    )
    set_by: Actor


class CallNoShowData(CallOutcomeSetData):
    """``call.no_show``: sent with ``call.outcome_set`` when the outcome is ``no_show``."""

    event_type = EventType.call_no_show


class LeadCreatedData(EventData):
    """``lead.created``: the lead as ``GET /v1/leads/{id}`` answers it."""

    event_type = EventType.lead_created
    lead: Lead


class LeadUpdatedData(EventData):
    """``lead.updated``: the lead after the change, the changed fields and their old values."""

    event_type = EventType.lead_updated
    lead: Lead
    changed_fields: list[str]
    previous: dict[str, Any]


class PaymentRecordedData(EventData):
    """``payment.recorded``: the payment (amount in cents), the lead and the linked call."""

    event_type = EventType.payment_recorded
    payment: Payment
    lead: LeadContact
    call: Call | None


class CalendarConnectionInvalidData(EventData):
    """``calendar.connection_invalid``: the connection refused closerdesk's credentials."""

    event_type = EventType.calendar_connection_invalid
    connection: CalendarConnectionRef
    reason: str


class WebhookFailingData(EventData):
    """``webhook.failing``: another subscription of the organization has failed every attempt
    for an hour (sent once per run of failures)."""

    event_type = EventType.webhook_failing
    webhook: WebhookSubscription
    failing_since: UTCDateTime
    last_error: str | None = Field(description="The error or HTTP status of the last attempt")


class WebhookDisabledData(EventData):
    """``webhook.disabled``: another subscription of the organization was disabled by
    closerdesk (410 Gone, or 5 days of failures); ``reason`` says which."""

    event_type = EventType.webhook_disabled
    webhook: WebhookSubscription
    reason: str


class PingData(EventData):
    """``ping``: sent by ``POST /v1/webhooks/{id}/test`` to that subscription only."""

    event_type = EventType.ping
    webhook_id: str
    message: str


class AbsenceMarked(Schema):
    """What was marked, as the request said it: ``host`` (the closer) and ``lead`` absent."""

    host: bool
    lead: bool
    notes: str | None


class CallAbsenceMarkedData(EventData):
    """``call.absence_marked``: who missed a call that has started (``absence``, as the request
    said it), the call after the mark (``status: no_show`` when the lead was absent,
    ``host_no_show: true`` when the host was), the status before, the lead's contact and who
    marked it (after Cal.com's "mark a booking absence"; docs/sales-floor.md, "Absence")."""

    event_type = EventType.call_absence_marked
    call: Call
    lead: LeadContact
    absence: AbsenceMarked
    previous_status: str
    marked_by: Actor


class CallConfirmedData(EventData):
    """``call.confirmed``: a pending call was confirmed; ``call`` is ``scheduled`` now, with its
    calendar event and conferencing link (docs/sales-floor.md, "Confirmation")."""

    event_type = EventType.call_confirmed
    call: Call
    lead: LeadContact
    confirmed_by: Actor


class CallDeclinedData(EventData):
    """``call.declined``: a pending call was declined and its slot is free again."""

    event_type = EventType.call_declined
    call: Call
    lead: LeadContact
    reason: str | None
    reason_code: CancelReasonCode | None
    declined_by: Actor


DATA_MODELS: dict[EventType, type[EventData]] = {
    model.event_type: model
    for model in (
        CallBookedData,
        CallUpdatedData,
        CallRescheduledData,
        CallCancelledData,
        CallCloserReassignedData,
        CallOutcomeSetData,
        CallNoShowData,
        LeadCreatedData,
        LeadUpdatedData,
        PaymentRecordedData,
        CalendarConnectionInvalidData,
        WebhookFailingData,
        WebhookDisabledData,
        PingData,
        CallAbsenceMarkedData,
        CallConfirmedData,
        CallDeclinedData,
    )
}
"""The ``data`` model of every event type (a test checks that none is missing)."""


class EventEnvelope(BaseModel):
    """What every delivery's body is: the event id (= ``webhook-id``), its type, when its
    change committed (RFC 3339 UTC), the organization and the type's ``data``."""

    id: str = Field(examples=["msg_01JD3Y8V5QW6N1GQ4Z8KXT0R2M"])
    event: str
    created_at: UTCDateTime
    organization_id: str


def _envelope_model(event_type: EventType, data: type[EventData]) -> type[EventEnvelope]:
    name = data.__name__.removesuffix("Data") + "Event"
    return create_model(
        name,
        __base__=EventEnvelope,
        __doc__=f"The body of a ``{event_type.value}`` delivery.",
        event=(Literal[event_type.value], ...),  # type: ignore[arg-type]
        data=(data, ...),
    )


EVENT_MODELS: dict[EventType, type[EventEnvelope]] = {
    event_type: _envelope_model(event_type, data) for event_type, data in DATA_MODELS.items()
}
"""The whole body of every event type, as published in the OpenAPI ``webhooks`` section."""
