"""``/v1/products`` (docs/api.md, "Products")."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import select

from closerdesk.auth.dependencies import ReadKey, WriteKey
from closerdesk.db import Session
from closerdesk.errors import ProductNotFound, responses
from closerdesk.kit.pagination import Cursor, Limit, paginate
from closerdesk.kit.schemas import Envelope, ListEnvelope
from closerdesk.models import Product as ProductRow
from closerdesk.products import service
from closerdesk.products.schemas import Product, ProductCreate, ProductUpdate

router = APIRouter(prefix="/v1/products", tags=["products"])


@router.get("", response_model=ListEnvelope[Product])
async def list_products(
    session: Session,
    auth: ReadKey,
    is_active: bool | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListEnvelope[Product]:
    """Products, oldest first."""
    stmt = select(ProductRow).where(ProductRow.organization_id == auth.organization_id)
    if is_active is not None:
        stmt = stmt.where(ProductRow.is_active == is_active)
    page = await paginate(session, stmt, keys=[ProductRow.id], limit=limit, cursor=cursor)
    return page.envelope([Product.model_validate(r) for r in page.items])


@router.post("", response_model=Envelope[Product], status_code=status.HTTP_201_CREATED)
async def create_product(
    body: ProductCreate, session: Session, auth: WriteKey
) -> Envelope[Product]:
    """Create a product; ``price`` in integer cents."""
    product = await service.create_product(session, auth.organization_id, body)
    return Envelope(data=Product.model_validate(product))


@router.get("/{product_id}", response_model=Envelope[Product], responses=responses(ProductNotFound))
async def get_product(product_id: str, session: Session, auth: ReadKey) -> Envelope[Product]:
    """One product."""
    product = await service.get_product(session, auth.organization_id, product_id)
    return Envelope(data=Product.model_validate(product))


@router.patch(
    "/{product_id}", response_model=Envelope[Product], responses=responses(ProductNotFound)
)
async def update_product(
    product_id: str, body: ProductUpdate, session: Session, auth: WriteKey
) -> Envelope[Product]:
    """Change a product (deactivate with ``is_active: false``)."""
    product = await service.update_product(session, auth.organization_id, product_id, body)
    return Envelope(data=Product.model_validate(product))
