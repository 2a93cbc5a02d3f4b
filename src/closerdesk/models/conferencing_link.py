from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.kit.time import utcnow
from closerdesk.models.base import Base, UTCDateTime, org_fk


class ConferencingLink(Base):
    """A revocable meeting link ``{public_base_url}/meet/{token}`` → ``room_url`` (docs/api.md)."""

    __tablename__ = "conferencing_links"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    call_id: Mapped[str | None] = mapped_column(String(40), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    room_url: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
