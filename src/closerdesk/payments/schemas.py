"""Payment shapes (docs/api.md, "Payments"): ``amount`` in integer cents."""

from __future__ import annotations

from pydantic import Field

from closerdesk.kit.schemas import Cents, Currency, RequestSchema, Schema, UTCDateTime


class Payment(Schema):
    id: str
    lead_id: str
    call_id: str | None
    product_id: str | None
    amount: int = Field(description="Integer cents")
    currency: str
    provider: str
    provider_payment_id: str | None
    paid_at: UTCDateTime
    created_at: UTCDateTime


class PaymentCreate(RequestSchema):
    """Record a payment taken elsewhere (Stripe, Whop, wire…). With ``call_id``, the call's
    ``linked_payment_id`` becomes this payment."""

    amount: Cents = Field(gt=0)
    currency: Currency = "USD"
    provider: str = Field(min_length=1, max_length=40, examples=["stripe"])
    provider_payment_id: str | None = Field(default=None, max_length=200)
    lead_id: str = Field(max_length=40)
    call_id: str | None = Field(default=None, max_length=40)
    product_id: str | None = Field(default=None, max_length=40)
    paid_at: UTCDateTime | None = None
