"""Property-based run of the API against its own OpenAPI document (schemathesis 4).

Every operation of ``/openapi.json`` gets generated requests, schema-valid and schema-invalid,
sent with an admin key so that the real handlers run; every other schema-valid case names rows
that exist (seeded per operation). Each response must conform to the document (declared status
code, content type, headers, body schema), no response may be a 5xx, and a request the schema
forbids must be refused with a 4xx.

Not checked: ``positive_data_acceptance`` (a schema-valid request must succeed). The API has
rules no JSON schema states, and refuses their violation with a documented 400: IANA zone
names, ``end`` after ``start``, opaque cursors, webhook targets that resolve to a public address.

schemathesis' ASGI transport is synchronous: it runs the app on its own event loop in a helper
thread (starting the app's lifespan, and ending it after each test). The app under test
therefore gets a ``Database`` of its own, whose connections belong to that loop; the rows are
seeded through the test's own database handle, on the test loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.app import create_app
from closerdesk.calendars.provider import CalendarAccount, CalendarAuthError, CalendarProvider
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import ulid
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.providers import Providers, default_providers
from tests.factories import Org, create_call, create_lead, create_member

MAX_EXAMPLES = 15  # fuzzed cases per operation, on top of the deterministic coverage cases
CASES: dict[str, int] = {}


class _CaseCountReport:
    """Adds ``schemathesis case count: N`` to pytest's terminal summary."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        total = sum(CASES.values())
        terminalreporter.write_line(
            f"schemathesis case count: {total} across {len(CASES)} operations"
        )


@pytest.fixture(scope="module", autouse=True)
def _report_case_count(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.has_plugin("closerdesk-schemathesis-count"):
        manager.register(_CaseCountReport(), "closerdesk-schemathesis-count")


# The document is read at collection time from an app like the one under test (same code, same
# document); requests go to ``st_app`` (``app=`` below), which runs on the test database.
# (``schemathesis.pytest.from_fixture`` would load it from a fixture, but its lazy loader sets
# ``node._nodeid``, which pytest 9.2 no longer has.)
_DOCUMENT_APP = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", env="test"))
schema = schemathesis.openapi.from_asgi("/openapi.json", _DOCUMENT_APP)


@pytest.fixture(scope="module")
def local_settings(settings: Settings) -> Settings:
    """Webhook targets may be local: the seeded subscription points at a closed local port, so
    ``POST /v1/webhooks/{id}/test`` never reaches out of the machine."""
    return settings.model_copy(update={"webhook_allow_private_targets": True})


class _RefusingCalDav:
    """Stands in for the CalDAV servers of the URLs schemathesis makes up (``0.com`` …), which
    this machine cannot reach: every one refuses the credentials, so connecting answers the
    declared 400 ``CALENDAR_AUTH_FAILED`` instead of waiting on DNS. The real provider is
    tested against real servers in tests/calendars/."""

    name = "caldav"

    async def connect(self, account: CalendarAccount) -> CalendarAccount:
        raise CalendarAuthError("CalDAV server refused the credentials: Unauthorized")


def _offline_providers(settings: Settings) -> Providers:
    real = default_providers(settings)

    def calendars(session: AsyncSession, name: str) -> CalendarProvider:
        if name == "caldav":
            return cast(CalendarProvider, _RefusingCalDav())
        return real.calendars(session, name)

    return Providers(calendars=calendars, conferencing=real.conferencing, secrets=real.secrets)


@pytest.fixture
def st_app(local_settings: Settings) -> FastAPI:
    """A fresh app per operation: schemathesis ends the app's lifespan after every test, and
    the lifespan closes what the app opened (database pool, webhook HTTP client)."""
    return create_app(
        local_settings,
        database=Database(local_settings.database_url),
        providers=_offline_providers(local_settings),
    )


@pytest.fixture(scope="module")
async def seed_client(
    local_settings: Settings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """Seeds through the API, on the test loop and the suite's own database handle."""
    app = create_app(local_settings, database=database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://seed") as client:
        yield client


@pytest.fixture
async def seeded(seed_client: httpx.AsyncClient, session: AsyncSession, org: Org) -> dict[str, str]:
    """Fresh rows of every kind for each operation, so that generated requests can name ids
    that exist (the suite empties the tables after each operation)."""
    return await _seed(seed_client, session, org)


async def _seed(client: httpx.AsyncClient, session: AsyncSession, org: Org) -> dict[str, str]:
    closer = await create_member(session, org)
    closer2 = await create_member(session, org)
    setter = await create_member(session, org, role="setter", calendar=False)
    lead = await create_lead(session, org)
    upcoming = await create_call(session, org, lead=lead, closer=closer, setter_id=setter.id)
    past = await create_call(
        session, org, lead=lead, closer=closer2, scheduled_at=utcnow() - timedelta(days=1)
    )
    h = org.headers

    async def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await client.post(url, headers=h, json=body)
        assert r.status_code in (200, 201), r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    product = await post("/v1/products", {"name": "P", "price": 100})
    payment = await post(
        "/v1/payments",
        {"amount": 100, "provider": "stripe", "lead_id": lead.id, "call_id": past.id},
    )
    start = utcnow() + timedelta(days=4)
    block = await post(
        f"/v1/team/{closer.id}/busy-blocks",
        {"start": isoformat_z(start), "end": isoformat_z(start + timedelta(hours=1))},
    )
    schedule = {
        "time_zone": "America/New_York",
        "weekly": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in ("monday", "friday")],
    }
    link = await post(
        "/v1/booking-links",
        {
            "slug": f"link-{ulid().lower()}",
            "title": "Strategy call",
            "duration_minutes": 45,
            "hosts": [{"member_id": closer.id, "schedule": schedule}],
        },
    )
    webhook = await post(
        "/v1/webhooks",
        {"target_url": "http://127.0.0.1:9/hooks", "event_types": ["lead.created"]},
    )
    # A new lead gives the webhook a delivery.
    await post("/v1/leads", {"email": f"hooked-{ulid().lower()}@example.com"})
    deliveries = await client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=h)
    return {
        "call_id": upcoming.id,
        "lead_id": lead.id,
        "member_id": closer.id,
        "closer_id": closer.id,
        "new_closer_id": closer2.id,
        "setter_id": setter.id,
        "product_id": product["id"],
        "payment_id": payment["id"],
        "linked_payment_id": payment["id"],
        "block_id": block["id"],
        "webhook_id": webhook["id"],
        "link_id": link["id"],
        "booking_link_id": link["id"],
        "delivery_id": deliveries.json()["data"][0]["id"],
        "token": (upcoming.conferencing_link or "").rsplit("/", 1)[-1],
    }


def _is_positive(case: Any, location: ParameterLocation) -> bool:
    meta = getattr(case, "meta", None)
    if meta is None:
        return True
    component = meta.components.get(location)
    mode = component.mode if component is not None else meta.generation.mode
    return bool(mode == GenerationMode.POSITIVE)


def _use_real_ids(case: Any, seeded: dict[str, str]) -> None:
    """Swap generated ids for seeded ones, in the parts of the case that are schema-valid
    (a schema-invalid part must stay as generated: the check expects it refused)."""
    if case.path_parameters and _is_positive(case, ParameterLocation.PATH):
        for name in case.path_parameters:
            if name in seeded:
                case.path_parameters[name] = seeded[name]
    if isinstance(case.body, dict) and _is_positive(case, ParameterLocation.BODY):
        for name in case.body:
            if name in seeded:
                case.body[name] = seeded[name]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_api_conforms_to_its_schema(
    case: Any, org: Org, seeded: dict[str, str], st_app: FastAPI
) -> None:
    key = case.operation.label  # "GET /v1/calls" (coverage also sends other methods to it)
    CASES[key] = CASES.get(key, 0) + 1
    if CASES[key] % 2 == 0:
        _use_real_ids(case, seeded)
    case.call_and_validate(
        headers={"Authorization": f"Bearer {org.admin_key}"},
        app=st_app,
        excluded_checks=[positive_data_acceptance],
    )


def test_every_operation_was_exercised() -> None:
    """Runs after the operations above: each got cases, and the count is reported."""
    doc = _DOCUMENT_APP.openapi()
    operations = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item}
    assert operations <= set(CASES), sorted(operations - set(CASES))
    assert all(count >= 5 for count in CASES.values()), {k: v for k, v in CASES.items() if v < 5}
