from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.models.base import Base, UTCDateTime, org_fk


class IdempotencyKey(Base):
    """One ``Idempotency-Key`` of one organization (docs/idempotency.md). id ``idem_…``.

    Claimed (inserted) before the request's handler runs, guarded by the unique
    ``(organization_id, key)``; ``locked_until`` is the claim's lease (a process that died
    mid-request frees the key when it runs out). ``applied`` turns true in the commit of the
    request's change. ``response_status``/``response_body`` (the JSON text answered) are set
    once the request has answered anything but a 5xx; ``expires_at`` is 24 h after the claim.
    ``fingerprint`` is the hex SHA-256 of method, path with query, and body.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("organization_id", "key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    applied: Mapped[bool] = mapped_column(default=False)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime())
    response_status: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
