"""The demo organization: closers with connected calendars, a setter, leads, a product, and past
and upcoming calls, made through the same services the API uses (README, ``serve --demo``).

Loading it again replaces the previous demo organization, so the printed ids and times are
always fresh and every printed ``curl`` line works as pasted.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.auth.service import AuthContext, create_organization
from closerdesk.booking_links import service as booking_links
from closerdesk.booking_links.schemas import BookingLinkCreate
from closerdesk.calendars.provider import CalendarAccount
from closerdesk.calendars.unit_of_work import calendar_change
from closerdesk.calls import booking as calls
from closerdesk.calls.schemas import CallCreate, LeadInline
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import (
    CalendarConnection,
    CalendarEvent,
    Call,
    ConferencingLink,
    Lead,
    Organization,
    Product,
    TeamMember,
)
from closerdesk.providers import Providers, default_providers
from closerdesk.team.calendar import save_calendar
from closerdesk.team.schemas import BusyBlockCreate
from closerdesk.team.service import add_busy_block

DEMO_NAME = "Demo Sales Co"

_CLOSERS = [
    ("user_alice", "Alice Moreno", "alice@demo.closerdesk.dev", "America/New_York"),
    ("user_bruno", "Bruno Keller", "bruno@demo.closerdesk.dev", "Europe/Berlin"),
    ("user_chloe", "Chloe Park", "chloe@demo.closerdesk.dev", "America/Los_Angeles"),
]
_LEADS = [
    ("dana@example.com", "Dana Whitfield", "+13125550101", "America/Chicago", "Whitfield Dental"),
    ("eli@example.com", "Eli Brandt", "+4915155501020", "Europe/Berlin", "Brandt Fitness"),
    ("farah@example.com", "Farah Haddad", "+14155550103", "America/Los_Angeles", None),
    ("gus@example.com", "Gus Oyelaran", "+442075550104", "Europe/London", "Oyelaran Realty"),
]


@dataclass(frozen=True)
class DemoData:
    organization_id: str
    api_key: str
    past_call_id: str
    reassign_call_id: str
    reassign_to: str
    reschedule_call_id: str
    reschedule_to: datetime
    cancel_call_id: str
    booking_link_id: str
    slots_from: datetime
    slots_to: datetime
    round_robin_slot: datetime
    auto_reassign_call_id: str
    pending_call_id: str
    reservation_slot: datetime


def _weekdays(start: str, end: str) -> list[dict[str, str]]:
    days = ["monday", "tuesday", "wednesday", "thursday", "friday"]
    return [{"weekday": d, "start": start, "end": end} for d in days]


_STRATEGY_CALL = BookingLinkCreate.model_validate(
    {
        "slug": "strategy-call",
        "title": "Strategy call",
        "duration_minutes": 45,
        "assignment": "round_robin",
        "minimum_notice_minutes": 120,
        "slot_interval_minutes": 30,
        "buffer_before_minutes": 0,
        "buffer_after_minutes": 15,
        "hosts": [
            {
                "member_id": "user_alice",
                "priority": "high",
                "weight": 100,
                "schedule": {
                    "time_zone": "America/New_York",
                    "weekly": _weekdays("09:00", "17:00"),
                },
            },
            {
                "member_id": "user_bruno",
                "priority": "medium",
                "weight": 100,
                "schedule": {"time_zone": "Europe/Berlin", "weekly": _weekdays("10:00", "18:00")},
            },
            {
                "member_id": "user_chloe",
                "priority": "low",
                "weight": 50,
                "schedule": {
                    "time_zone": "America/Los_Angeles",
                    "weekly": _weekdays("08:00", "16:00"),
                },
            },
        ],
    }
)
"""Three closers of different priorities in three zones (issue "Scheduling", part 4)."""

_DISCOVERY_CALL = BookingLinkCreate.model_validate(
    {
        "slug": "vip-discovery",
        "title": "VIP discovery call",
        "duration_minutes": 30,
        "assignment": "round_robin",
        "minimum_notice_minutes": 60,
        "requires_confirmation": True,
        "fairness_period": "week",
        "hosts": [
            {
                "member_id": "user_bruno",
                "schedule": {"time_zone": "Europe/Berlin", "weekly": _weekdays("10:00", "18:00")},
            },
            {
                "member_id": "user_chloe",
                "schedule": {
                    "time_zone": "America/Los_Angeles",
                    "weekly": _weekdays("08:00", "16:00"),
                },
            },
        ],
    }
)
"""Calls booked through it wait for a manager's confirmation (docs/sales-floor.md,
"Confirmation"); its round robin is fair over the week."""


def _at(days: int, hour: int) -> datetime:
    day = (utcnow() + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


async def load_demo(
    database: Database, settings: Settings, providers: Providers | None = None
) -> DemoData:
    """Replace the demo organization with a fresh one; returns its admin key and call ids."""
    providers = providers or default_providers(settings)
    async with database.writer() as session:
        await session.execute(delete(Organization).where(Organization.is_demo.is_(True)))
        org, key = await create_organization(
            session, secret_key=settings.secret_key, name=DEMO_NAME, is_demo=True
        )
        auth = AuthContext(org.id, key.id, key.scope)
        for member_id, name, email, zone in _CLOSERS:
            session.add(
                TeamMember(
                    organization_id=org.id,
                    id=member_id,
                    name=name,
                    email=email,
                    role="closer",
                    time_zone=zone,
                    is_active=True,
                )
            )
        session.add(
            TeamMember(
                organization_id=org.id,
                id="user_sam",
                name="Sam Rivera",
                email="sam@demo.closerdesk.dev",
                role="setter",
                time_zone="America/Chicago",
                is_active=True,
            )
        )
        await session.flush()
        for member_id, *_ in _CLOSERS:
            builtin = CalendarAccount("", org.id, member_id, "builtin", f"builtin:{member_id}")
            await save_calendar(session, providers.secrets, org.id, member_id, builtin)
        product = Product(
            id=new_id("prod"),
            organization_id=org.id,
            name="Scale Accelerator (12 weeks)",
            description="Done-with-you growth program",
            price=500_000,
            currency="USD",
            is_active=True,
        )
        session.add(product)
        leads = []
        for email, name, phone, zone, company in _LEADS:
            lead = Lead(
                id=new_id("lead"),
                organization_id=org.id,
                email=email,
                full_name=name,
                phone=phone,
                time_zone=zone,
                company=company,
                status="new",
                metadata_={"utm_source": "youtube"},
            )
            session.add(lead)
            leads.append(lead)
        await add_busy_block(
            session,
            org.id,
            "user_chloe",
            BusyBlockCreate(start=_at(5, 16), end=_at(5, 20), title="Dentist"),
        )
        past = await _past_call(session, settings, org.id, leads[3], product.id)
        link_id = (await booking_links.create_link(session, org.id, _STRATEGY_CALL)).id
        discovery_id = (await booking_links.create_link(session, org.id, _DISCOVERY_CALL)).id
        # Chloe takes at most four calls a day (docs/sales-floor.md, "Round-robin controls").
        chloe = await session.get(TeamMember, (org.id, "user_chloe"))
        if chloe is not None:
            chloe.max_bookings_per_day = 4
        await session.commit()

    async def book(lead: Lead, closer_id: str, start: datetime) -> Call:
        async with (
            database.writer() as session,
            calendar_change(session, providers) as change,
        ):
            return await calls.book(
                session,
                auth,
                change,
                CallCreate(
                    lead_id=lead.id,
                    scheduled_at=start,
                    duration_minutes=45,
                    closer_id=closer_id,
                    setter_id="user_sam",
                    product_id=product.id,
                    expected_deal_value=500_000,
                    utm_source="youtube",
                    utm_medium="video",
                    utm_campaign="q4-webinar",
                    notes="Booked from the Q4 webinar",
                ),
            )

    reassign = await book(leads[0], "user_alice", _at(2, 15))
    reschedule = await book(leads[1], "user_bruno", _at(3, 15))
    cancel = await book(leads[2], "user_chloe", _at(4, 18))

    # Round robin: a call booked through the link at a slot where several hosts are free (for
    # the auto-reassign line), and a later free slot for the reader's own booking.
    slots_from, slots_to = _at(1, 0), _at(8, 0)
    async with database.writer() as session:
        link = await booking_links.get_link(session, org.id, link_id)
        slots = await booking_links.link_slots(session, link, slots_from, slots_to, utcnow())
    shared = next(s for s in slots if len(s.member_ids) >= 2)
    async with database.writer() as session, calendar_change(session, providers) as change:
        routed = await calls.book(
            session,
            auth,
            change,
            CallCreate(
                lead=LeadInline(
                    email="hana@example.com",
                    full_name="Hana Sato",
                    phone="+819055501050",
                    time_zone="Asia/Tokyo",
                ),
                scheduled_at=shared.start,
                booking_link_id=link_id,
            ),
        )
    later = next(s for s in slots if s.start >= shared.start + timedelta(days=1))
    held = next(s for s in slots if s.start >= later.start + timedelta(days=1))

    # A VIP request waiting for a manager's confirmation: pending, its slot held.
    async with database.writer() as session:
        discovery = await booking_links.get_link(session, org.id, discovery_id)
        vip_slots = await booking_links.link_slots(
            session, discovery, slots_from, slots_to, utcnow()
        )
    async with database.writer() as session, calendar_change(session, providers) as change:
        pending = await calls.book(
            session,
            auth,
            change,
            CallCreate(
                lead=LeadInline(
                    email="jonas@example.com",
                    full_name="Jonas Berg",
                    phone="+4917055501060",
                    time_zone="Europe/Berlin",
                ),
                scheduled_at=vip_slots[len(vip_slots) // 2].start,
                booking_link_id=discovery_id,
            ),
        )
    return DemoData(
        organization_id=org.id,
        api_key=key.api_key,
        past_call_id=past,
        reassign_call_id=reassign.id,
        reassign_to="user_bruno",
        reschedule_call_id=reschedule.id,
        reschedule_to=_at(3, 17),
        cancel_call_id=cancel.id,
        booking_link_id=link_id,
        slots_from=slots_from,
        slots_to=slots_to,
        round_robin_slot=later.start,
        auto_reassign_call_id=routed.id,
        pending_call_id=pending.id,
        reservation_slot=held.start,
    )


async def _past_call(
    session: AsyncSession, settings: Settings, org_id: str, lead: Lead, product_id: str
) -> str:
    """Yesterday's call with Alice, ready for an outcome (the API only books the future)."""
    connection = await session.scalar(
        select(CalendarConnection).where(
            CalendarConnection.organization_id == org_id,
            CalendarConnection.member_id == "user_alice",
        )
    )
    start = _at(-1, 16)
    end = start + timedelta(minutes=45)
    call_id, event_id = new_id("call"), new_id("evt")
    if connection is not None:
        session.add(
            CalendarEvent(
                id=event_id,
                organization_id=org_id,
                connection_id=connection.id,
                call_id=call_id,
                title=f"{lead.full_name} and Alice Moreno",
                starts_at=start,
                ends_at=end,
            )
        )
    token = new_id("t").lower()[2:]
    session.add(
        ConferencingLink(
            id=new_id("conf"),
            organization_id=org_id,
            call_id=call_id,
            token=token,
            room_url=f"https://meet.jit.si/closerdesk-demo-{token[-8:]}",
        )
    )
    session.add(
        Call(
            id=call_id,
            organization_id=org_id,
            call_kind="booking",
            status="scheduled",
            lead_id=lead.id,
            closer_id="user_alice",
            closer_name="Alice Moreno",
            closer_email="alice@demo.closerdesk.dev",
            setter_id="user_sam",
            product_id=product_id,
            scheduled_at=start,
            ends_at=end,
            duration_minutes=45,
            time_zone=lead.time_zone,
            expected_deal_value=500_000,
            calendar_event_id=event_id if connection else None,
            calendar_grant_id=connection.id if connection else None,
            action_items=[],
            form_data=[],
            reschedule_count=0,
            sequence=0,
        )
    )
    lead.status = "booked"
    await session.flush()
    return call_id


def curl_lines(demo: DemoData, base_url: str) -> list[tuple[str, str]]:
    """(title, command) for each main operation, ready to paste into a shell."""
    base = base_url.rstrip("/")
    auth = f"-H {shlex.quote('Authorization: Bearer ' + demo.api_key)}"
    json_type = "-H 'Content-Type: application/json'"

    def post(path: str, body: str) -> str:
        return f"curl -s -X POST {base}{path} {auth} {json_type} -d {shlex.quote(body)}"

    return [
        ("Get a call", f"curl -s {base}/v1/calls/{demo.reassign_call_id} {auth}"),
        (
            "Who could take this call instead (reassign candidates)",
            f"curl -s {base}/v1/calls/{demo.reassign_call_id}/reassign-candidates {auth}",
        ),
        (
            "Set an outcome on yesterday's call",
            post(
                f"/v1/calls/{demo.past_call_id}/outcome",
                '{"status": "closed", "notes": "Paid in full on the call"}',
            ),
        ),
        (
            "Reassign a closer",
            post(
                f"/v1/calls/{demo.reassign_call_id}/reassign-closer",
                f'{{"new_closer_id": "{demo.reassign_to}", "reason": "Alice is out sick"}}',
            ),
        ),
        (
            "Reschedule",
            post(
                f"/v1/calls/{demo.reschedule_call_id}/reschedule",
                f'{{"scheduled_at": "{isoformat_z(demo.reschedule_to)}", '
                '"time_zone": "Europe/Berlin", "reason": "Lead asked for a later slot"}',
            ),
        ),
        (
            "Cancel, with a reason code",
            post(
                f"/v1/calls/{demo.cancel_call_id}/cancel",
                '{"reason": "Lead cancelled", "reason_code": "lead_requested"}',
            ),
        ),
        (
            "Calls cancelled because the lead asked",
            f"curl -s '{base}/v1/calls?status=cancelled&reason_code=lead_requested' {auth}",
        ),
        (
            "Slots of the round-robin booking link, in the lead's zone",
            f"curl -s '{base}/v1/booking-links/{demo.booking_link_id}/slots?"
            f"start={isoformat_z(demo.slots_from)}&end={isoformat_z(demo.slots_to)}"
            f"&time_zone=America/Chicago' {auth}",
        ),
        (
            "Book a slot; round robin picks the closer",
            post(
                "/v1/calls",
                f'{{"booking_link_id": "{demo.booking_link_id}", '
                f'"scheduled_at": "{isoformat_z(demo.round_robin_slot)}", '
                '"lead": {"email": "ivy@example.com", "full_name": "Ivy Chen"}}',
            ),
        ),
        (
            "Auto-reassign a round-robin call to the next free host",
            post(
                f"/v1/calls/{demo.auto_reassign_call_id}/auto-reassign",
                '{"reason": "Closer called in sick"}',
            ),
        ),
        (
            "Add-to-calendar links",
            f"curl -s {base}/v1/calls/{demo.reassign_call_id}/calendar-links {auth}",
        ),
        (
            "Plan moving all of Bruno's upcoming calls (bulk reassign, dry run)",
            post(
                "/v1/calls/bulk-reassign",
                '{"from_closer_id": "user_bruno", "to": "auto", "reason_code": '
                '"closer_unavailable", "dry_run": true}',
            ),
        ),
        (
            "Confirm the VIP request waiting for approval",
            post(f"/v1/calls/{demo.pending_call_id}/confirm", "{}"),
        ),
        (
            "Hold a slot while a lead fills in the form",
            post(
                f"/v1/booking-links/{demo.booking_link_id}/reservations",
                f'{{"start": "{isoformat_z(demo.reservation_slot)}"}}',
            ),
        ),
    ]
