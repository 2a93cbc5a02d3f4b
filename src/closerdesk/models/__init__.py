"""Every ORM table, one module each; importing this package registers them all on ``Base``."""

from closerdesk.models.api_key import ApiKey
from closerdesk.models.base import Base
from closerdesk.models.booking_link import BookingLink
from closerdesk.models.booking_link_host import BookingLinkHost
from closerdesk.models.busy_block import BusyBlock
from closerdesk.models.calendar_busy import CalendarBusy
from closerdesk.models.calendar_cleanup import CalendarCleanup
from closerdesk.models.calendar_connection import CalendarConnection
from closerdesk.models.calendar_event import CalendarEvent
from closerdesk.models.call import Call
from closerdesk.models.call_event import CallEvent
from closerdesk.models.conferencing_link import ConferencingLink
from closerdesk.models.idempotency_key import IdempotencyKey
from closerdesk.models.lead import Lead
from closerdesk.models.member import TeamMember
from closerdesk.models.organization import Organization
from closerdesk.models.payment import Payment
from closerdesk.models.product import Product
from closerdesk.models.slot_reservation import SlotReservation
from closerdesk.models.webhook_attempt import WebhookAttempt
from closerdesk.models.webhook_delivery import WebhookDelivery
from closerdesk.models.webhook_event import WebhookEvent
from closerdesk.models.webhook_subscription import WebhookSubscription

__all__ = [
    "ApiKey",
    "Base",
    "BookingLink",
    "BookingLinkHost",
    "BusyBlock",
    "CalendarBusy",
    "CalendarCleanup",
    "CalendarConnection",
    "CalendarEvent",
    "Call",
    "CallEvent",
    "ConferencingLink",
    "IdempotencyKey",
    "Lead",
    "Organization",
    "Payment",
    "Product",
    "SlotReservation",
    "TeamMember",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
]
