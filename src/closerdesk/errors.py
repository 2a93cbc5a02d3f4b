"""Errors are types: each carries its HTTP status and its ``UPPER_SNAKE`` code (docs/api.md).

Services raise these; one exception handler (``closerdesk.app``) renders the envelope
``{"success": false, "error", "code", "requestId", "details"?}``.
"""

from __future__ import annotations

from typing import Any

from closerdesk.kit.schemas import ErrorEnvelope


class ApiError(Exception):
    """Base of every error a client can see."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    message: str = "An internal error occurred."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.text = message or self.message
        self.details = details
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        super().__init__(self.text)


# --- 400 -----------------------------------------------------------------------------------------
class ValidationFailed(ApiError):
    status, code, message = 400, "VALIDATION_ERROR", "The request is not valid."

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", details=[{"field": field, "message": message}])


class BulkLimitExceeded(ApiError):
    """A bulk reassign whose selection holds more calls than one batch moves: narrow the
    window or name the calls (docs/sales-floor.md, "Bulk reassign")."""

    status, code = 400, "BULK_LIMIT_EXCEEDED"
    message = "More than 500 calls match; narrow scheduled_after/scheduled_before or pass call_ids."


class WebhookTargetNotAllowed(ApiError):
    status, code = 400, "WEBHOOK_TARGET_NOT_ALLOWED"
    message = "Webhook targets must be https URLs on public addresses."


class SlotInPast(ApiError):
    status, code, message = 400, "SLOT_IN_PAST", "The requested time is not in the future."


class CalendarAuthFailed(ApiError):
    """Connecting a calendar: the provider refused the credentials (its reason follows)."""

    status, code = 400, "CALENDAR_AUTH_FAILED"
    message = "The calendar provider refused these credentials."


class CalendarProviderNotConfigured(ApiError):
    """This closerdesk has no client for the calendar provider (its OAuth client, the Nylas
    API key): the operator sets the settings the message names."""

    status, code = 400, "CALENDAR_PROVIDER_NOT_CONFIGURED"
    message = "This calendar provider is not configured on this closerdesk."


class OAuthStateInvalid(ApiError):
    """An OAuth callback whose ``state`` closerdesk did not make, or made too long ago."""

    status, code = 400, "OAUTH_STATE_INVALID"
    message = "The authorization is not valid or has expired; connect the calendar again."


# --- 401/403 -------------------------------------------------------------------------------------
class Unauthorized(ApiError):
    status, code = 401, "UNAUTHORIZED"
    message = "A valid API key is required: Authorization: Bearer cdk_…"


class Forbidden(ApiError):
    status, code, message = 403, "FORBIDDEN", "This API key lacks the scope this operation needs."


class NotificationRejected(ApiError):
    """A push notification that does not carry its channel's secret (``/hooks/*``)."""

    status, code = 403, "NOTIFICATION_REJECTED"
    message = "The notification is not signed by the calendar provider."


# --- 404 -----------------------------------------------------------------------------------------
class NotFound(ApiError):
    status, code, message = 404, "NOT_FOUND", "Resource not found."


class CallNotFound(NotFound):
    code, message = "CALL_NOT_FOUND", "Call not found."


class CloserNotFound(NotFound):
    code, message = "CLOSER_NOT_FOUND", "Closer not found or not active."


class MemberNotFound(NotFound):
    code, message = "MEMBER_NOT_FOUND", "Team member not found."


class SetterNotFound(NotFound):
    code, message = "SETTER_NOT_FOUND", "Setter not found or not active."


class LeadNotFound(NotFound):
    code, message = "LEAD_NOT_FOUND", "Lead not found."


class ProductNotFound(NotFound):
    code, message = "PRODUCT_NOT_FOUND", "Product not found."


class PaymentNotFound(NotFound):
    code, message = "PAYMENT_NOT_FOUND", "Payment not found."


class BusyBlockNotFound(NotFound):
    code, message = "BUSY_BLOCK_NOT_FOUND", "Busy block not found."


class CalendarConnectionNotFound(NotFound):
    code, message = "CALENDAR_NOT_FOUND", "This team member has no calendar connection."


class BookingLinkNotFound(NotFound):
    code, message = "BOOKING_LINK_NOT_FOUND", "Booking link not found."


class ReservationNotFound(NotFound):
    """A slot reservation that does not exist in the key's organization (or of another link)."""

    code, message = "RESERVATION_NOT_FOUND", "Slot reservation not found."


class WebhookNotFound(NotFound):
    code, message = "WEBHOOK_NOT_FOUND", "Webhook subscription not found."


class DeliveryNotFound(NotFound):
    code, message = "DELIVERY_NOT_FOUND", "Webhook delivery not found."


class MeetingLinkNotFound(NotFound):
    code, message = "LINK_NOT_FOUND", "Meeting link not found."


class CalendarFileLinkNotFound(NotFound):
    """A ``/ics/{token}`` whose signature does not match, or whose call is gone or has no
    slot (``docs/links.md``)."""

    code, message = "LINK_NOT_FOUND", "Calendar link not found."


# --- 405/409/410/413/415 -------------------------------------------------------------------------
class MethodNotAllowed(ApiError):
    status, code, message = 405, "METHOD_NOT_ALLOWED", "Method not allowed on this resource."


class Conflict(ApiError):
    status, code, message = 409, "CONFLICT", "The request conflicts with the current state."


class CallNotReassignable(Conflict):
    code = "CALL_NOT_REASSIGNABLE"
    message = "Intent calls have no slot and cannot be reassigned or rescheduled."


class CallCancelled(Conflict):
    code, message = "CALL_CANCELLED", "The call is cancelled."


class CallDeclined(Conflict):
    code, message = "CALL_DECLINED", "The call was declined; its slot is free."


class CallNotPending(Conflict):
    """Confirm and decline take only a ``pending`` call (docs/sales-floor.md, "Confirmation")."""

    code, message = "CALL_NOT_PENDING", "The call is not awaiting confirmation."


class CallNotConfirmed(Conflict):
    """An outcome describes a call that took place; a pending call never was confirmed."""

    code = "CALL_NOT_CONFIRMED"
    message = "The call awaits confirmation; confirm or decline it first."


class CallInPast(Conflict):
    code, message = "CALL_IN_PAST", "The call has already started; use the outcome flow instead."


class CallNotStarted(Conflict):
    code, message = "CALL_NOT_STARTED", "The call is still in the future; it has no outcome yet."


class SameCloser(Conflict):
    code, message = "SAME_CLOSER", "The new closer is already the closer of this call."


class CalendarNotConnected(Conflict):
    code, message = "CALENDAR_NOT_CONNECTED", "The closer has no valid calendar connection."


class CloserConflict(Conflict):
    code, message = "CLOSER_CONFLICT", "The closer is busy during the call."


class CallNotOfCloser(Conflict):
    """Bulk reassign: a listed call that is not ``from_closer_id``'s (a per-call code)."""

    code, message = "CALL_NOT_OF_CLOSER", "The call is not a call of from_closer_id."


class CallOutsideWindow(Conflict):
    """Bulk reassign: a listed call outside ``scheduled_after``/``scheduled_before`` (a
    per-call code)."""

    code, message = "CALL_OUTSIDE_WINDOW", "The call is outside the requested time window."


class ProductInactive(Conflict):
    code, message = "PRODUCT_INACTIVE", "The product is not active."


class LeadEmailTaken(Conflict):
    code, message = "LEAD_EMAIL_TAKEN", "A lead with this email already exists."


class MemberIdTaken(Conflict):
    code, message = "MEMBER_ID_TAKEN", "A team member with this id already exists."


class MemberEmailTaken(Conflict):
    code, message = "MEMBER_EMAIL_TAKEN", "A team member with this email already exists."


class MemberHasUpcomingCalls(Conflict):
    code = "MEMBER_HAS_UPCOMING_CALLS"
    message = "Reassign or cancel this member's upcoming calls first."


class CalendarGrantInUse(Conflict):
    code = "CALENDAR_GRANT_IN_USE"
    message = "This calendar grant is already connected for another team member."


class PaymentAlreadyLinked(Conflict):
    code, message = "PAYMENT_ALREADY_LINKED", "The payment is linked to another call."


class CallLeadMismatch(Conflict):
    code, message = "CALL_LEAD_MISMATCH", "The call belongs to another lead."


class BookingLinkSlugTaken(Conflict):
    code, message = "BOOKING_LINK_SLUG_TAKEN", "A booking link with this slug already exists."


class BookingLinkInactive(Conflict):
    code, message = "BOOKING_LINK_INACTIVE", "The booking link is not active."


class CallNotScheduled(Conflict):
    code, message = "CALL_NOT_SCHEDULED", "Intent calls have no time to put on a calendar."


class SlotNotAvailable(Conflict):
    code, message = "SLOT_NOT_AVAILABLE", "No host of the booking link is free at that time."


class ReservationExpired(Conflict):
    """Booking with a reservation past its ``expires_at`` (docs/sales-floor.md)."""

    code, message = "RESERVATION_EXPIRED", "The slot reservation has expired."


class ReservationConsumed(Conflict):
    """Booking with, or releasing, a reservation a call was already booked with."""

    code, message = "RESERVATION_CONSUMED", "A call was already booked with this reservation."


class ReservationMismatch(Conflict):
    """Booking with a reservation of another booking link, start or duration."""

    code = "RESERVATION_MISMATCH"
    message = "The call does not match the reservation's booking link, start or duration."


class NoHostAvailable(Conflict):
    code, message = "NO_HOST_AVAILABLE", "No other host is free at the time of the call."


class WebhookDisabled(Conflict):
    code = "WEBHOOK_DISABLED"
    message = "The subscription is disabled; re-enable it (PATCH is_active: true) first."


class IdempotencyKeyInUse(Conflict):
    """A request with this ``Idempotency-Key`` is still running (docs/idempotency.md)."""

    code = "IDEMPOTENCY_KEY_IN_USE"
    message = "A request with this Idempotency-Key is still running; retry after it answers."


class IdempotencyKeyReused(ApiError):
    """The ``Idempotency-Key`` was first used for another request (docs/idempotency.md)."""

    status, code = 422, "IDEMPOTENCY_KEY_REUSED"
    message = "This Idempotency-Key was used for a different request; use a new key."


class LinkRevoked(ApiError):
    status, code, message = 410, "LINK_REVOKED", "This meeting link has been revoked."


class PayloadTooLarge(ApiError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "Request bodies are limited to 1 MiB."


class UnsupportedMediaType(ApiError):
    status, code, message = (
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "Request bodies must be application/json.",
    )


class RateLimited(ApiError):
    """Over a rate limit (docs/rate-limits.md): ``Retry-After`` gives the seconds to wait."""

    status, code = 429, "RATE_LIMITED"
    message = "Too many requests; retry after the number of seconds in Retry-After."


# --- 5xx -----------------------------------------------------------------------------------------
class CalendarProviderError(ApiError):
    status, code = 502, "CALENDAR_PROVIDER_ERROR"
    message = "The calendar provider failed; nothing was changed."


class ServiceUnavailable(ApiError):
    status, code, message = 503, "SERVICE_UNAVAILABLE", "The service is busy; retry shortly."


def responses(*errors: type[ApiError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for an endpoint: every error it can answer, grouped by status.

    Validation (400), auth (401/403) and internal (500) errors are added to every operation by
    ``closerdesk.app``; list here only what is specific to the operation.
    """
    by_status: dict[int, list[type[ApiError]]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error)
    if 400 in by_status and ValidationFailed not in by_status[400]:
        # An operation's own 400 replaces the shared one in the document: keep its code.
        by_status[400].insert(0, ValidationFailed)
    out: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        codes = ", ".join(f"`{e.code}`" for e in group)
        out[status] = {"model": ErrorEnvelope, "description": f"Error: {codes}"}
    return out
