from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, JSONType, TimestampMixin, UTCDateTime, org_fk


class WebhookSubscription(TimestampMixin, Base):
    """A partner's endpoint (docs/webhooks.md). id ``wh_…``.

    ``secret`` (``whsec_…``) signs every delivery; after a rotation ``previous_secret`` signs
    too until ``previous_secret_expires_at`` (24 h), so both signatures are sent. Both are
    stored as Fernet tokens (``kit/secrets.py``), never in clear: ``webhooks.service`` seals
    and opens them.
    ``failing_since`` marks the start of an unbroken run of failed attempts (5 days → disabled);
    ``last_failed_at`` the latest of them: a gap longer than a delivery's whole retry schedule
    means the target recovered in between, and a new run starts.
    """

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    target_url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSONType)
    description: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    is_active: Mapped[bool] = mapped_column(default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
