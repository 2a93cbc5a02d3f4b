"""``/v1/payments`` (docs/api.md, "Payments")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from closerdesk.auth.dependencies import ReadKey, WriteKey
from closerdesk.db import Session
from closerdesk.errors import (
    CallLeadMismatch,
    CallNotFound,
    LeadNotFound,
    PaymentNotFound,
    ProductNotFound,
    responses,
)
from closerdesk.kit.pagination import Cursor, Limit, paginate
from closerdesk.kit.schemas import Envelope, ListEnvelope
from closerdesk.models import Payment as PaymentRow
from closerdesk.payments import service
from closerdesk.payments.schemas import Payment, PaymentCreate

router = APIRouter(prefix="/v1/payments", tags=["payments"])


@router.get("", response_model=ListEnvelope[Payment])
async def list_payments(
    session: Session,
    auth: ReadKey,
    lead_id: Annotated[str | None, Query(max_length=40)] = None,
    call_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListEnvelope[Payment]:
    """Payments, oldest first."""
    stmt = select(PaymentRow).where(PaymentRow.organization_id == auth.organization_id)
    if lead_id is not None:
        stmt = stmt.where(PaymentRow.lead_id == lead_id)
    if call_id is not None:
        stmt = stmt.where(PaymentRow.call_id == call_id)
    page = await paginate(session, stmt, keys=[PaymentRow.id], limit=limit, cursor=cursor)
    return page.envelope([Payment.model_validate(r) for r in page.items])


@router.post(
    "",
    response_model=Envelope[Payment],
    status_code=status.HTTP_201_CREATED,
    responses=responses(LeadNotFound, CallNotFound, ProductNotFound, CallLeadMismatch),
)
async def record_payment(
    body: PaymentCreate, session: Session, auth: WriteKey
) -> Envelope[Payment]:
    """Record a payment (integer cents). Fires ``payment.recorded``."""
    payment = await service.record_payment(session, auth, body)
    return Envelope(data=Payment.model_validate(payment))


@router.get("/{payment_id}", response_model=Envelope[Payment], responses=responses(PaymentNotFound))
async def get_payment(payment_id: str, session: Session, auth: ReadKey) -> Envelope[Payment]:
    """One payment."""
    payment = await service.get_payment(session, auth.organization_id, payment_id)
    return Envelope(data=Payment.model_validate(payment))
