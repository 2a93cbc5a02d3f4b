"""Call shapes on the wire: Aura's call field for field, plus docs/api.md's additions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, EmailStr, Field, computed_field, model_validator

from closerdesk.kit.schemas import (
    Cents,
    E164Phone,
    LongText,
    MemberId,
    RequestSchema,
    Schema,
    ShortText,
    StrictSchema,
    TimeZoneName,
    UTCDateTime,
)
from closerdesk.leads.schemas import LeadText
from closerdesk.models.call import MAX_CALL_MINUTES

CallKind = Literal["booking", "intent"]
CallStatus = Literal[
    "pending",
    "scheduled",
    "declined",
    "cancelled",
    "shown",
    "no_show",
    "closed",
    "lost",
    "follow_up",
]
"""``pending``: booked through a link that requires confirmation, holding its slot;
``declined``: a pending call that was declined (its slot is free again)."""
OutcomeStatus = Literal["shown", "no_show", "closed", "lost", "follow_up"]
RsvpStatus = Literal["yes", "no", "maybe", "pending"]
HistoryType = Literal[
    "booked",
    "rescheduled",
    "closer_reassigned",
    "cancelled",
    "outcome_set",
    "updated",
    "absence_marked",
    "confirmed",
    "declined",
]
"""What a call history entry records."""
Duration = Annotated[int, Field(ge=5, le=MAX_CALL_MINUTES, description="Minutes, 5–1440")]
Reason = Annotated[str, Field(max_length=1000)]
CancelReasonCode = Literal[
    "lead_requested", "closer_unavailable", "not_qualified", "duplicate", "other"
]
"""Why a call was cancelled or declined (docs/sales-floor.md, "Reason codes")."""
ChangeReasonCode = Literal["closer_unavailable", "lead_requested", "rebalance", "other"]
"""Why a call was rescheduled or reassigned (docs/sales-floor.md, "Reason codes")."""
ReasonCode = Literal[
    "lead_requested", "closer_unavailable", "not_qualified", "duplicate", "rebalance", "other"
]
"""Any reason code: the call's ``reason_code`` and the list filter take each of them."""
LossReason = Literal["price", "timing", "authority", "need", "competitor", "other"]
"""Why a ``lost`` call was lost (docs/sales-floor.md, "Reason codes")."""


class ActionItem(StrictSchema):
    """One follow-up from the call's analysis (Aura: get call); extra keys are kept."""

    model_config = ConfigDict(extra="allow", from_attributes=True)

    title: str | None = None
    owner: str | None = None
    due_at: str | None = None
    notes: str | None = None


class FormAnswer(StrictSchema):
    """One answer of the booking form (Aura: get call); extra keys are kept."""

    model_config = ConfigDict(extra="allow", from_attributes=True)

    field_id: str = Field(max_length=200)
    label: str | None = Field(default=None, max_length=1000)
    value: Any = None


class TranscriptSegment(StrictSchema):
    model_config = ConfigDict(extra="allow", from_attributes=True)

    start_seconds: float = Field(ge=0)
    end_seconds: float = Field(ge=0)
    speaker: str | None = None
    text: str = ""


class TranscriptData(StrictSchema):
    model_config = ConfigDict(extra="allow", from_attributes=True)

    duration_seconds: float | None = Field(default=None, ge=0)
    language: str | None = None
    segments: list[TranscriptSegment] = Field(default_factory=list)


class Call(Schema):
    """The call object (Aura: get call) plus ``closer_name, closer_email, time_zone,
    calendar_event_id, cancelled_at, cancel_reason, confirmed_at, declined_at, decline_reason,
    reschedule_count`` (docs/api.md) and ``host_no_show, reason_code, loss_reason``
    (docs/sales-floor.md).

    Money in integer cents; times RFC 3339 UTC; ``duration_minutes`` in minutes.
    """

    id: str
    call_kind: CallKind
    lead_id: str
    closer_id: str | None
    setter_id: str | None
    booking_link_id: str | None
    product_id: str | None
    scheduled_at: UTCDateTime | None
    started_at: UTCDateTime | None
    ended_at: UTCDateTime | None
    duration_minutes: int | None
    status: CallStatus
    conferencing_link: str | None
    expected_deal_value: int | None
    linked_payment_id: str | None
    ai_summary: str | None
    action_items: list[ActionItem]
    form_data: list[FormAnswer]
    notes: str | None
    recording_url: str | None
    transcript_data: TranscriptData | None
    guest_rsvp_status: RsvpStatus | None
    guest_rsvp_confirmed_at: UTCDateTime | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    referral: str | None
    created_at: UTCDateTime
    updated_at: UTCDateTime
    # Deliberately beyond Aura's call (docs/api.md, "The call object"):
    closer_name: str | None
    closer_email: str | None
    time_zone: str | None
    calendar_event_id: str | None
    cancelled_at: UTCDateTime | None
    cancel_reason: str | None
    confirmed_at: UTCDateTime | None = Field(
        description='When a pending call was confirmed (docs/sales-floor.md, "Confirmation")'
    )
    declined_at: UTCDateTime | None
    decline_reason: str | None
    reschedule_count: int
    # The sales floor (docs/sales-floor.md, "Reason codes" and "Absence"):
    host_no_show: bool = Field(
        description="The closer missed the call (``POST /v1/calls/{id}/absence``)"
    )
    reason_code: ReasonCode | None = Field(
        description="The code of the latest cancel, decline, reschedule or reassign"
    )
    loss_reason: LossReason | None = Field(description="Why a ``lost`` call was lost")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def has_recording(self) -> bool:
        return self.recording_url is not None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def has_analysis(self) -> bool:
        return self.ai_summary is not None or bool(self.action_items)


class LeadInline(RequestSchema):
    """A lead given inline on booking: found by email, else created."""

    email: EmailStr
    full_name: LeadText | None = None
    phone: E164Phone | None = None
    time_zone: TimeZoneName | None = None


class UtmFields(RequestSchema):
    utm_source: ShortText | None = None
    utm_medium: ShortText | None = None
    utm_campaign: ShortText | None = None
    utm_term: ShortText | None = None
    utm_content: ShortText | None = None
    referral: ShortText | None = None


class CallCreate(UtmFields):
    """Book a call (docs/api.md). A ``booking`` needs ``scheduled_at`` and either ``closer_id``
    (manual) or ``booking_link_id`` alone (round robin at an offered slot, docs/api.md "Slots"),
    or with a ``reservation_id`` of that link and time (its host); its ``duration_minutes``
    defaults to the link's. An ``intent`` has neither time nor event."""

    lead_id: str | None = Field(default=None, max_length=40)
    lead: LeadInline | None = None
    call_kind: CallKind = "booking"
    scheduled_at: UTCDateTime | None = None
    duration_minutes: Duration | None = None
    time_zone: TimeZoneName | None = None
    closer_id: MemberId | None = None
    booking_link_id: str | None = Field(default=None, max_length=40)
    setter_id: MemberId | None = None
    product_id: str | None = Field(default=None, max_length=40)
    expected_deal_value: Cents | None = None
    notes: LongText | None = None
    form_data: list[FormAnswer] = Field(default_factory=list, max_length=200)
    override_conflict: bool = False
    reservation_id: str | None = Field(
        default=None,
        max_length=40,
        description="A slot reservation of ``booking_link_id`` at ``scheduled_at`` "
        '(docs/sales-floor.md, "Slot reservations"): the call goes to the host it holds and '
        "consumes it. Not with ``closer_id``.",
    )

    @model_validator(mode="after")
    def _check_shape(self) -> CallCreate:
        if (self.lead_id is None) == (self.lead is None):
            raise ValueError("give exactly one of lead_id or lead")
        if self.call_kind == "booking":
            if self.scheduled_at is None:
                raise ValueError("a booking call needs scheduled_at")
            if self.closer_id is None and self.booking_link_id is None:
                raise ValueError("a booking call needs closer_id or booking_link_id")
            if self.duration_minutes is None and self.booking_link_id is None:
                raise ValueError("a booking call needs duration_minutes (or a booking link)")
            if self.reservation_id is not None and self.closer_id is not None:
                raise ValueError("give closer_id or reservation_id, not both")
        elif self.scheduled_at is not None or self.duration_minutes is not None:
            raise ValueError("an intent call has no scheduled_at or duration_minutes")
        elif self.reservation_id is not None:
            raise ValueError("an intent call has no reservation_id")
        return self


class CallUpdate(RequestSchema):
    """``PATCH /v1/calls/{id}``: fields for recorders and analysers feeding results back.

    Only the fields present change; ``null`` clears a field.
    """

    notes: LongText | None = None
    expected_deal_value: Cents | None = None
    product_id: str | None = Field(default=None, max_length=40)
    setter_id: MemberId | None = None
    linked_payment_id: str | None = Field(default=None, max_length=40)
    ai_summary: LongText | None = None
    action_items: list[ActionItem] | None = Field(default=None, max_length=200)
    recording_url: Annotated[str, Field(max_length=2000, pattern=r"^https?://")] | None = None
    transcript_data: TranscriptData | None = None
    guest_rsvp_status: RsvpStatus | None = None
    started_at: UTCDateTime | None = None
    ended_at: UTCDateTime | None = None

    @model_validator(mode="after")
    def _check_times(self) -> CallUpdate:
        if self.started_at and self.ended_at and self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


class OutcomeSet(RequestSchema):
    """Aura set-outcome: ``status`` ∈ shown | no_show | closed | lost | follow_up, ``notes?``,
    and ``loss_reason?`` (only with ``lost``; optional there: docs/sales-floor.md,
    "Reason codes")."""

    status: OutcomeStatus
    notes: LongText | None = None
    loss_reason: LossReason | None = None

    @model_validator(mode="after")
    def _loss_reason_only_when_lost(self) -> OutcomeSet:
        if self.loss_reason is not None and self.status != "lost":
            raise ValueError("loss_reason is only allowed with status lost")
        return self


class ReassignCloser(RequestSchema):
    """Aura Partner API reassign closer, plus ``reason`` (after Cal.com's reassign)."""

    new_closer_id: MemberId
    override_conflict: bool = False
    reason: Reason | None = None
    reason_code: ChangeReasonCode | None = None


class ReassignResult(Schema):
    """Aura reassign closer's response ``data``."""

    call_id: str
    conferencing_link: str | None
    new_closer_id: str
    new_closer_name: str
    new_event_id: str | None = Field(
        description="The new closer's calendar event; null for a pending call, which gets "
        "its event when confirmed"
    )
    old_event_orphaned: bool
    previous_closer_id: str | None
    previous_closer_name: str | None


class Reschedule(RequestSchema):
    """After eventCalls: the new time, the lead's zone, why, and optionally a new closer."""

    scheduled_at: UTCDateTime
    time_zone: TimeZoneName | None = None
    reason: Reason | None = None
    reason_code: ChangeReasonCode | None = None
    notes: LongText | None = None
    duration_minutes: Duration | None = None
    new_closer_id: MemberId | None = None
    override_conflict: bool = False


class Cancel(RequestSchema):
    """``POST /v1/calls/{id}/cancel``: why, in words and as a code (docs/sales-floor.md)."""

    reason: Reason | None = None
    reason_code: CancelReasonCode | None = None


class Confirm(RequestSchema):
    """``POST /v1/calls/{id}/confirm`` (Cal.com: confirm a booking that requires one)."""

    override_conflict: bool = Field(
        default=False,
        description="Confirm even when the closer's calendar now shows busy time in the slot",
    )


class Decline(RequestSchema):
    """``POST /v1/calls/{id}/decline`` (Cal.com: decline a booking that requires
    confirmation)."""

    reason: Reason | None = None
    reason_code: CancelReasonCode | None = None


class ConflictItem(Schema):
    """A busy span that overlaps the requested time."""

    start: UTCDateTime
    end: UTCDateTime
    source: Literal["call", "calendar", "reservation"] = Field(
        description="``call``: another call of the closer (``call_id`` names it); "
        "``calendar``: busy time on the closer's calendar; ``reservation``: a slot the closer "
        'holds for a lead being booked (docs/sales-floor.md, "Slot reservations")'
    )
    call_id: str | None = None


CandidateReason = Literal[
    "SAME_CLOSER",
    "CALENDAR_NOT_CONNECTED",
    "CLOSER_CONFLICT",
    "NOT_A_HOST",
    "OUTSIDE_AVAILABILITY",
    "CAP_REACHED",
]
"""Why a closer cannot take a call: the codes of docs/api.md "Reassign" checks 6–8, then round
robin's (docs/sales-floor.md "Reassign candidates")."""


class ReassignCandidate(Schema):
    """A closer the call could go to (docs/sales-floor.md "Reassign candidates").

    ``available``: no reason against it (round robin could give it the call). ``reasons``:
    codes in the order above. ``conflicts``: what the closer has during the call, as
    ``CLOSER_CONFLICT`` details. ``period_bookings``: its calls of the link in the link's
    fairness period, as round robin counts them. ``rank``: round robin's order among the
    available hosts of the link (1 = its pick); ``null`` for the others.
    """

    member_id: str
    name: str
    available: bool
    reasons: list[CandidateReason]
    conflicts: list[ConflictItem]
    period_bookings: int
    rank: int | None


class RescheduleResult(Call):
    """The call after the move, plus eventCalls' ``is_slot_free`` and what overlapped."""

    is_slot_free: bool
    conflicts: list[ConflictItem]
    previous_scheduled_at: UTCDateTime | None


class CallHistoryEntry(Schema):
    """One row of ``GET /v1/calls/{id}/history``, oldest first."""

    id: str
    call_id: str
    type: HistoryType
    actor_type: Literal["api_key", "member"]
    actor_id: str
    reason: str | None
    reason_code: ReasonCode | None
    before: dict[str, Any]
    after: dict[str, Any]
    created_at: UTCDateTime


class AutoReassign(RequestSchema):
    """``POST /v1/calls/{id}/auto-reassign`` (after Cal.com's automatic reassign)."""

    reason: Reason | None = None
    reason_code: ChangeReasonCode | None = None


class AbsenceMark(RequestSchema):
    """``POST /v1/calls/{id}/absence`` (after Cal.com's "mark a booking absence"): who missed
    the call; at least one of ``host`` (the closer) and ``lead`` is true."""

    host: bool = Field(description="The closer (host) did not join")
    lead: bool = Field(description="The lead did not join")
    notes: LongText | None = None

    @model_validator(mode="after")
    def _someone_absent(self) -> AbsenceMark:
        if not (self.host or self.lead):
            raise ValueError("mark at least one of host or lead absent")
        return self


class CalendarLinks(Schema):
    """Add-to-calendar links for the call's lead (after Cal.com's)."""

    google: str
    outlook: str
    office365: str
    yahoo: str
    ics: str


# --- POST /v1/calls/bulk-reassign (docs/sales-floor.md, "Bulk reassign") -------------------------
BULK_REASSIGN_LIMIT = 500
"""The most calls one bulk reassign moves (docs/sales-floor.md, "Bulk reassign")."""


class BulkReassign(RequestSchema):
    """Move a closer's upcoming calls: to one closer, or spread by round robin (``"auto"``).

    ``scheduled_after`` is inclusive, ``scheduled_before`` exclusive (as in ``GET /v1/calls``);
    ``call_ids`` restricts the batch to those calls (at most 500, duplicates counted once).
    """

    from_closer_id: MemberId
    to: Annotated[
        str,
        Field(
            pattern=r"^(auto|user_[A-Za-z0-9]+)$",
            max_length=64,
            description='`"auto"` (round robin over the free hosts) or a closer\'s id',
        ),
    ]
    scheduled_after: UTCDateTime | None = None
    scheduled_before: UTCDateTime | None = None
    call_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=40)]] | None,
        Field(min_length=1, max_length=BULK_REASSIGN_LIMIT),
    ] = None
    reason: Reason | None = None
    reason_code: ChangeReasonCode | None = None
    dry_run: bool = False

    @model_validator(mode="after")
    def _window(self) -> BulkReassign:
        after, before = self.scheduled_after, self.scheduled_before
        if after is not None and before is not None and before <= after:
            raise ValueError("scheduled_before must be after scheduled_after")
        return self


class BulkReassignItem(Schema):
    """One call of a bulk reassign: what happened (or, in a dry run, would happen) to it.

    ``code`` is null when the move succeeded (would succeed); otherwise the error code the
    single reassign answers for that call (``CLOSER_CONFLICT``, ``NO_HOST_AVAILABLE``, …) with
    its ``error`` sentence and ``details``, and ``new_closer_id`` is null. The event, link and
    ``old_event_orphaned`` fields are those of the reassign answer, set only in a real run.
    """

    call_id: str
    scheduled_at: UTCDateTime | None = None
    previous_closer_id: str | None = None
    new_closer_id: str | None = None
    code: str | None = None
    error: str | None = None
    details: Any = None
    new_closer_name: str | None = None
    new_event_id: str | None = None
    conferencing_link: str | None = None
    old_event_orphaned: bool | None = None


class BulkReassignResult(Schema):
    """The bulk reassign's answer: one item per call (the batch in ``scheduled_at`` order,
    then the rejected ``call_ids`` in the order given) and the totals; ``assigned`` counts the
    calls (to be) moved per new closer."""

    dry_run: bool
    from_closer_id: str
    to: str
    total: int
    succeeded: int
    failed: int
    assigned: dict[str, int]
    results: list[BulkReassignItem]
