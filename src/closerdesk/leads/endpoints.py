"""``/v1/leads`` (docs/api.md, "Leads")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from closerdesk.auth.dependencies import ReadKey, WriteKey
from closerdesk.db import Session
from closerdesk.errors import LeadEmailTaken, LeadNotFound, responses
from closerdesk.kit.pagination import Cursor, Limit, paginate
from closerdesk.kit.schemas import Envelope, ListEnvelope
from closerdesk.leads import service
from closerdesk.leads.schemas import Lead, LeadCreate, LeadStatus, LeadUpdate
from closerdesk.models import Lead as LeadRow

router = APIRouter(prefix="/v1/leads", tags=["leads"])


@router.get("", response_model=ListEnvelope[Lead])
async def list_leads(
    session: Session,
    auth: ReadKey,
    status_: Annotated[LeadStatus | None, Query(alias="status")] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListEnvelope[Lead]:
    """Leads, oldest first. ``email`` matches exactly (case-insensitive)."""
    stmt = select(LeadRow).where(LeadRow.organization_id == auth.organization_id)
    if status_ is not None:
        stmt = stmt.where(LeadRow.status == status_)
    if email is not None:
        stmt = stmt.where(LeadRow.email == email.strip().lower())
    page = await paginate(session, stmt, keys=[LeadRow.id], limit=limit, cursor=cursor)
    return page.envelope([Lead.model_validate(r) for r in page.items])


@router.post(
    "",
    response_model=Envelope[Lead],
    status_code=status.HTTP_201_CREATED,
    responses=responses(LeadEmailTaken),
)
async def create_lead(body: LeadCreate, session: Session, auth: WriteKey) -> Envelope[Lead]:
    """Create a lead (email unique per organization). Fires ``lead.created``."""
    lead = await service.create_lead(session, auth.organization_id, body)
    return Envelope(data=Lead.model_validate(lead))


@router.get("/{lead_id}", response_model=Envelope[Lead], responses=responses(LeadNotFound))
async def get_lead(lead_id: str, session: Session, auth: ReadKey) -> Envelope[Lead]:
    """One lead."""
    lead = await service.get_lead(session, auth.organization_id, lead_id)
    return Envelope(data=Lead.model_validate(lead))


@router.patch(
    "/{lead_id}",
    response_model=Envelope[Lead],
    responses=responses(LeadNotFound, LeadEmailTaken),
)
async def update_lead(
    lead_id: str, body: LeadUpdate, session: Session, auth: WriteKey
) -> Envelope[Lead]:
    """Change a lead's fields or status. Fires ``lead.updated``."""
    lead = await service.update_lead(session, auth.organization_id, lead_id, body)
    return Envelope(data=Lead.model_validate(lead))
