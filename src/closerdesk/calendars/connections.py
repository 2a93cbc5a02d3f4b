"""What happens to a connection whose provider refused its credentials (``docs/calendars.md``,
failures): it turns ``invalid`` and ``calendar.connection_invalid`` fires, once."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import CalendarConnection
from closerdesk.webhooks.payloads import CalendarConnectionInvalidData
from closerdesk.webhooks.service import record_event

log = structlog.get_logger(__name__)


def connection_json(connection: CalendarConnection) -> dict[str, Any]:
    """A connection as partners see it: never a credential."""
    return {
        "id": connection.id,
        "member_id": connection.member_id,
        "provider": connection.provider,
        "calendar_id": connection.calendar_id,
        "status": connection.status,
        "invalid_reason": connection.invalid_reason,
        "sync_status": connection.sync_status,
        "last_synced_at": (
            isoformat_z(connection.last_synced_at) if connection.last_synced_at else None
        ),
    }


async def mark_invalid(
    session: AsyncSession, organization_id: str, connection_id: str, reason: str
) -> bool:
    """Turn the connection ``invalid`` with ``reason`` and record ``calendar.connection_invalid``
    in the session's transaction. Only the first caller does it (a guarded UPDATE, so two
    requests that both hit the refusal fire one event). Returns True for that caller."""
    reason = reason[:500]
    changed = await session.execute(
        update(CalendarConnection)
        .where(
            CalendarConnection.organization_id == organization_id,
            CalendarConnection.id == connection_id,
            CalendarConnection.status == "valid",
        )
        .values(status="invalid", invalid_reason=reason, updated_at=utcnow())
        .returning(CalendarConnection.id)
        .execution_options(synchronize_session="fetch")
    )
    if changed.first() is None:
        return False
    connection = await session.get(CalendarConnection, connection_id, populate_existing=True)
    if connection is None:  # deleted in between: nothing to announce
        return False
    log.warning("calendar.connection_invalid", connection_id=connection_id, reason=reason)
    await record_event(
        session,
        organization_id,
        CalendarConnectionInvalidData(connection=connection_json(connection), reason=reason),
    )
    return True
