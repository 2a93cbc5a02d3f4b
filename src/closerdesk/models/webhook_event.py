from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.kit.time import utcnow
from closerdesk.models.base import Base, JSONType, UTCDateTime, org_fk


class WebhookEvent(Base):
    """The outbox (docs/webhooks.md): one row per event, written in the transaction of its change.

    ``id`` is the ``msg_…`` id partners see as ``webhook-id``; ``payload`` is the full body.
    The deliveries for the matching subscriptions are written in the same transaction.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_org_created", "organization_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
