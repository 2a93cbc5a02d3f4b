"""Add-to-calendar links and the ``.ics`` of a call (``docs/architecture.md``, "What is written
to a calendar"). Pure: call values in, URLs and bytes out.

Both render the call's ``EventDraft`` from ``closerdesk.calendars.drafts``, the same title,
time, join link and description a calendar event gets; nothing else of the call is read.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from icalendar import Calendar, Event, vCalAddress, vText

from closerdesk import models
from closerdesk.calendars.drafts import event_draft
from closerdesk.calendars.provider import EventDraft
from closerdesk.kit.time import as_utc, utcnow
from closerdesk.models.call import FREED_STATUSES

PRODID = "-//closerdesk//Partner API//EN"


def _stamp(value: datetime) -> str:
    return as_utc(value).strftime("%Y%m%dT%H%M%SZ")


def _iso(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


_ICS_STATUS = {"pending": "TENTATIVE", "cancelled": "CANCELLED", "declined": "CANCELLED"}
"""RFC 5545 ``STATUS`` of the call's VEVENT by call status; every other status is
``CONFIRMED`` (docs/sales-floor.md, "Confirmation")."""


def event_uid(call: models.Call) -> str:
    """Stable across every change of the call, so calendars update the same event."""
    return f"{call.id}@closerdesk"


def _draft(
    call: models.Call, lead: models.Lead, booking_link_description: str | None
) -> EventDraft:
    return event_draft(
        call,
        lead,
        closer_name=call.closer_name,
        booking_link_description=booking_link_description,
    )


def calendar_links(
    call: models.Call,
    lead: models.Lead,
    ics_url: str,
    *,
    booking_link_description: str | None,
) -> dict[str, str]:
    """``{"google", "outlook", "office365", "yahoo", "ics"}`` for a scheduled call;
    ``booking_link_description`` is the public text of the call's booking link, if any."""
    draft = _draft(call, lead, booking_link_description)
    start, end = draft.starts_at, draft.ends_at
    title, details, location = draft.title, draft.description, draft.location
    outlook = {
        "path": "/calendar/action/compose",
        "rru": "addevent",
        "subject": title,
        "startdt": _iso(start),
        "enddt": _iso(end),
        "body": details,
        "location": location,
    }
    return {
        "google": "https://calendar.google.com/calendar/render?"
        + urlencode(
            {
                "action": "TEMPLATE",
                "text": title,
                "dates": f"{_stamp(start)}/{_stamp(end)}",
                "details": details,
                "location": location,
            }
        ),
        "outlook": "https://outlook.live.com/calendar/0/deeplink/compose?" + urlencode(outlook),
        "office365": "https://outlook.office.com/calendar/0/deeplink/compose?" + urlencode(outlook),
        "yahoo": "https://calendar.yahoo.com/?"
        + urlencode(
            {
                "v": "60",
                "title": title,
                "st": _stamp(start),
                "et": _stamp(end),
                "desc": details,
                "in_loc": location,
            }
        ),
        "ics": ics_url,
    }


def ics(call: models.Call, lead: models.Lead, *, booking_link_description: str | None) -> bytes:
    """The call as an iCalendar ``VEVENT`` (RFC 5545): UID stable, ``SEQUENCE`` = the call's
    change counter (bumped by reschedule, reassign, cancel, confirm, decline),
    ``STATUS:TENTATIVE`` while pending, ``METHOD:CANCEL`` with ``STATUS:CANCELLED`` once
    cancelled or declined. ``booking_link_description`` as in ``calendar_links``."""
    draft = _draft(call, lead, booking_link_description)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    freed = call.status in FREED_STATUSES
    calendar.add("method", "CANCEL" if freed else "PUBLISH")
    event = Event()
    event.add("uid", event_uid(call))
    event.add("dtstamp", utcnow())
    event.add("dtstart", as_utc(draft.starts_at))
    event.add("dtend", as_utc(draft.ends_at))
    event.add("summary", draft.title)
    event.add("sequence", draft.sequence)
    event.add("status", _ICS_STATUS.get(call.status, "CONFIRMED"))
    if call.updated_at is not None:
        event.add("last-modified", as_utc(call.updated_at))
    if draft.description:
        event.add("description", draft.description)
    if draft.location:
        event.add("location", vText(draft.location))
        event.add("url", draft.location)
    if call.closer_email:
        organizer = vCalAddress(f"mailto:{call.closer_email}")
        if call.closer_name:
            organizer.params["cn"] = vText(call.closer_name)
        event.add("organizer", organizer)
    attendee = vCalAddress(f"mailto:{lead.email}")
    if lead.full_name:
        attendee.params["cn"] = vText(lead.full_name)
    attendee.params["role"] = vText("REQ-PARTICIPANT")
    event.add("attendee", attendee)
    calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data
