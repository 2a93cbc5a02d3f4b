from __future__ import annotations

from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, JSONType, TimestampMixin, org_fk


class Lead(TimestampMixin, Base):
    """A prospect (docs/api.md). id ``lead_…``; ``email`` is unique per organization, lower case."""

    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("organization_id", "email"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    email: Mapped[str] = mapped_column(String(320))
    full_name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(20))
    company: Mapped[str | None] = mapped_column(String(200))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(14), default="new")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
