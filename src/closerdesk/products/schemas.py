"""Product shapes (docs/api.md, "Products"): ``price`` in integer cents."""

from __future__ import annotations

from pydantic import Field

from closerdesk.kit.schemas import Cents, Currency, LongText, RequestSchema, Schema, UTCDateTime


class Product(Schema):
    id: str
    name: str
    description: str | None
    price: int = Field(description="Integer cents")
    currency: str
    is_active: bool
    created_at: UTCDateTime
    updated_at: UTCDateTime


class ProductCreate(RequestSchema):
    name: str = Field(min_length=1, max_length=200)
    description: LongText | None = None
    price: Cents
    currency: Currency = "USD"
    is_active: bool = True


class ProductUpdate(RequestSchema):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: LongText | None = None
    price: Cents | None = None
    currency: Currency | None = None
    is_active: bool | None = None
