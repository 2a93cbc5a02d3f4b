"""Payments: recorded, linked to a lead and optionally a call."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.auth.service import AuthContext
from closerdesk.calls import repository as calls_repository
from closerdesk.calls.service import record_call_change, unlink_previous_payment
from closerdesk.calls.steps import call_json
from closerdesk.errors import CallLeadMismatch, CallNotFound, PaymentNotFound
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.leads.service import get_lead, lead_contact
from closerdesk.models import Payment
from closerdesk.payments.schemas import Payment as PaymentSchema
from closerdesk.payments.schemas import PaymentCreate
from closerdesk.products.service import get_product
from closerdesk.webhooks.payloads import PaymentRecordedData
from closerdesk.webhooks.service import record_event


async def get_payment(session: AsyncSession, organization_id: str, payment_id: str) -> Payment:
    """Raises ``PaymentNotFound`` (404) when missing or of another organization."""
    payment = await session.scalar(
        select(Payment).where(Payment.organization_id == organization_id, Payment.id == payment_id)
    )
    if payment is None:
        raise PaymentNotFound()
    return payment


async def record_payment(session: AsyncSession, auth: AuthContext, body: PaymentCreate) -> Payment:
    """Record a payment; with ``call_id`` link it to the call (``linked_payment_id``).

    Raises ``LeadNotFound``, ``CallNotFound``, ``ProductNotFound`` (404), ``CallLeadMismatch``
    (409). A call's earlier linked payment is released (its ``call_id`` cleared).
    Fires ``payment.recorded`` (and ``call.updated`` when a call is linked).
    """
    org = auth.organization_id
    lead = await get_lead(session, org, body.lead_id)
    if body.product_id is not None:
        await get_product(session, org, body.product_id)
    call = None
    if body.call_id is not None:
        call = await calls_repository.get_call(session, org, body.call_id, lock=True)
        if call is None:
            raise CallNotFound()
        if call.lead_id != lead.id:
            raise CallLeadMismatch()
    payment = Payment(
        id=new_id("pay"),
        organization_id=org,
        lead_id=lead.id,
        call_id=body.call_id,
        product_id=body.product_id,
        amount=body.amount,
        currency=body.currency,
        provider=body.provider,
        provider_payment_id=body.provider_payment_id,
        paid_at=body.paid_at or utcnow(),
    )
    session.add(payment)
    await session.flush()
    if call is not None:
        before = {"linked_payment_id": call.linked_payment_id}
        await unlink_previous_payment(session, call, payment.id)
        call.linked_payment_id = payment.id
        await session.flush()
        await record_call_change(
            session, call, auth, before=before, after={"linked_payment_id": payment.id}
        )
    await record_event(
        session,
        org,
        PaymentRecordedData(
            payment=PaymentSchema.model_validate(payment),
            lead=lead_contact(lead),
            call=call_json(call) if call is not None else None,
        ),
    )
    return payment
