"""Record webhook events into the outbox, in the caller's transaction (SPEC §6)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.kit.ids import new_id
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import WebhookEvent


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
    ping = "ping"


async def record_event(
    session: AsyncSession, organization_id: str, event_type: EventType, data: dict[str, Any]
) -> WebhookEvent:
    """Write one outbox row; it commits or rolls back with the change that caused it.

    ``data`` must be JSON-ready (use ``model_dump(mode="json")``). The stored payload is the exact
    body partners receive: ``{"id": "msg_…", "event", "created_at", "organization_id", "data"}``.
    """
    now = utcnow()
    event_id = new_id("msg")
    row = WebhookEvent(
        id=event_id,
        organization_id=organization_id,
        type=event_type.value,
        created_at=now,
        payload={
            "id": event_id,
            "event": event_type.value,
            "created_at": isoformat_z(now),
            "organization_id": organization_id,
            "data": data,
        },
    )
    session.add(row)
    return row
