"""Leads: the prospects calls are booked with (docs/api.md, "Leads")."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import UniqueViolation, unique_write
from closerdesk.errors import LeadEmailTaken, LeadNotFound, ValidationFailed
from closerdesk.kit.ids import new_id
from closerdesk.leads import schemas
from closerdesk.leads.schemas import LeadCreate, LeadUpdate
from closerdesk.models import Lead
from closerdesk.webhooks.service import EventType, record_event


def lead_contact(lead: Lead) -> dict[str, Any]:
    """What a partner needs to reach the lead: ``id, email, full_name, phone, time_zone``."""
    return {
        "id": lead.id,
        "email": lead.email,
        "full_name": lead.full_name,
        "phone": lead.phone,
        "time_zone": lead.time_zone,
    }


async def get_lead(session: AsyncSession, organization_id: str, lead_id: str) -> Lead:
    """Raises ``LeadNotFound`` (404) when missing or of another organization."""
    lead = await session.scalar(
        select(Lead).where(Lead.organization_id == organization_id, Lead.id == lead_id)
    )
    if lead is None:
        raise LeadNotFound()
    return lead


async def find_by_email(session: AsyncSession, organization_id: str, email: str) -> Lead | None:
    return await session.scalar(
        select(Lead).where(Lead.organization_id == organization_id, Lead.email == email.lower())
    )


async def find_or_create(
    session: AsyncSession,
    organization_id: str,
    *,
    email: str,
    full_name: str | None = None,
    phone: str | None = None,
    time_zone: str | None = None,
) -> tuple[Lead, bool]:
    """The lead with this email (case-insensitive), else a new one; ``(lead, created)``.

    An existing lead keeps its fields; only empty ones are filled from the inline values.
    """
    lead = await find_by_email(session, organization_id, email)
    if lead is not None:
        lead.full_name = lead.full_name or full_name
        lead.phone = lead.phone or phone
        lead.time_zone = lead.time_zone or time_zone
        return lead, False
    lead = Lead(
        id=new_id("lead"),
        organization_id=organization_id,
        email=email.lower(),
        full_name=full_name,
        phone=phone,
        time_zone=time_zone,
        status="new",
        metadata_={},
    )
    try:
        async with unique_write(session):
            session.add(lead)
            await session.flush()
    except UniqueViolation:  # created by a concurrent request since we looked
        existing = await find_by_email(session, organization_id, email)
        if existing is None:
            raise
        return existing, False
    return lead, True


def lead_json(lead: Lead) -> dict[str, Any]:
    """The lead as it goes on the wire (and into webhook payloads)."""
    return schemas.Lead.model_validate(lead).model_dump(mode="json")


def _metadata_size_ok(metadata: dict[str, Any]) -> bool:
    return len(json.dumps(metadata)) <= 16_384


async def create_lead(session: AsyncSession, organization_id: str, body: LeadCreate) -> Lead:
    """Create a lead. Raises ``LeadEmailTaken`` (409), ``ValidationFailed`` (400) for metadata
    over 16 KiB. Fires ``lead.created``."""
    if not _metadata_size_ok(body.metadata):
        raise ValidationFailed.field("metadata", "at most 16 KiB of JSON")
    if await find_by_email(session, organization_id, str(body.email)) is not None:
        raise LeadEmailTaken()
    lead = Lead(
        id=new_id("lead"),
        organization_id=organization_id,
        email=str(body.email).lower(),
        full_name=body.full_name,
        phone=body.phone,
        company=body.company,
        time_zone=body.time_zone,
        status=body.status,
        metadata_=body.metadata,
    )
    try:
        async with unique_write(session):
            session.add(lead)
            await session.flush()
    except UniqueViolation as exc:
        raise LeadEmailTaken() from exc
    await record_event(session, organization_id, EventType.lead_created, {"lead": lead_json(lead)})
    return lead


async def update_lead(
    session: AsyncSession, organization_id: str, lead_id: str, body: LeadUpdate
) -> Lead:
    """Partial update. Raises ``LeadNotFound`` (404), ``LeadEmailTaken`` (409), ``ValidationFailed``
    (400: ``email``/``status`` cannot be null). Fires ``lead.updated`` when something changed."""
    lead = await get_lead(session, organization_id, lead_id)
    changes = body.model_dump(exclude_unset=True)
    for required in ("email", "status", "metadata"):
        if required in changes and changes[required] is None:
            raise ValidationFailed.field(required, "cannot be null")
    if "metadata" in changes and not _metadata_size_ok(changes["metadata"]):
        raise ValidationFailed.field("metadata", "at most 16 KiB of JSON")
    if "email" in changes:
        changes["email"] = str(changes["email"]).lower()
        other = await find_by_email(session, organization_id, changes["email"])
        if other is not None and other.id != lead.id:
            raise LeadEmailTaken()
    before = lead_json(lead)
    for name, value in changes.items():
        setattr(lead, "metadata_" if name == "metadata" else name, value)
    await session.flush()
    after = lead_json(lead)
    changed = sorted(k for k in changes if before[k] != after[k])
    if changed:
        await record_event(
            session,
            organization_id,
            EventType.lead_updated,
            {"lead": after, "changed_fields": changed, "previous": {k: before[k] for k in changed}},
        )
    return lead
