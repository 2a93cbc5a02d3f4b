"""Products: what is being sold."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.errors import ProductNotFound, ValidationFailed
from closerdesk.kit.ids import new_id
from closerdesk.models import Product
from closerdesk.products.schemas import ProductCreate, ProductUpdate


async def get_product(session: AsyncSession, organization_id: str, product_id: str) -> Product:
    """Raises ``ProductNotFound`` (404) when missing or of another organization."""
    product = await session.scalar(
        select(Product).where(Product.organization_id == organization_id, Product.id == product_id)
    )
    if product is None:
        raise ProductNotFound()
    return product


async def create_product(
    session: AsyncSession, organization_id: str, body: ProductCreate
) -> Product:
    product = Product(id=new_id("prod"), organization_id=organization_id, **body.model_dump())
    session.add(product)
    await session.flush()
    return product


async def update_product(
    session: AsyncSession, organization_id: str, product_id: str, body: ProductUpdate
) -> Product:
    """Raises ``ProductNotFound`` (404); ``ValidationFailed`` (400) for a null required field."""
    product = await get_product(session, organization_id, product_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        if value is None and name != "description":
            raise ValidationFailed.field(name, "cannot be null")
        setattr(product, name, value)
    await session.flush()
    return product
