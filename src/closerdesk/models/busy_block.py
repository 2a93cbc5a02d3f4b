from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from closerdesk.kit.time import utcnow
from closerdesk.models.base import Base, UTCDateTime, org_fk


class BusyBlock(Base):
    """Time off on a member's built-in calendar: busy for conflict checks and slots.

    Indexed by member and ``ends_at``: an overlap query (``ends_at > start``) then reads only the
    blocks that have not ended by ``start``, never the member's past. A block may span a year,
    so a lower bound on ``starts_at`` would still read a year of them.
    """

    __tablename__ = "busy_blocks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "member_id"],
            ["team_members.organization_id", "team_members.id"],
            ondelete="CASCADE",
        ),
        Index("ix_busy_blocks_member_end", "organization_id", "member_id", "ends_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = org_fk()
    member_id: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    title: Mapped[str] = mapped_column(String(200), default="Busy")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
