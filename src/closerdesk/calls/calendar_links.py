"""Add-to-calendar links and the ``.ics`` of a call (SPEC §5, after seed 001's "Get 'Add to
Calendar' links"). Pure: call values in, URLs and bytes out."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from icalendar import Calendar, Event, vCalAddress, vText

from closerdesk import models
from closerdesk.kit import required
from closerdesk.kit.time import as_utc, utcnow

PRODID = "-//closerdesk//Partner API//EN"


def _stamp(value: datetime) -> str:
    return as_utc(value).strftime("%Y%m%dT%H%M%SZ")


def _iso(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_uid(call: models.Call) -> str:
    """Stable across every change of the call, so calendars update the same event."""
    return f"{call.id}@closerdesk"


def _title(call: models.Call, lead: models.Lead) -> str:
    who = lead.full_name or lead.email
    return f"Call with {who}" + (f" ({call.closer_name})" if call.closer_name else "")


def _details(call: models.Call) -> str:
    lines = []
    if call.conferencing_link:
        lines.append(f"Join: {call.conferencing_link}")
    if call.notes:
        lines.append(call.notes)
    return "\n\n".join(lines)


def calendar_links(call: models.Call, lead: models.Lead, ics_url: str) -> dict[str, str]:
    """``{"google", "outlook", "office365", "yahoo", "ics"}`` for a scheduled call."""
    start = required(call.scheduled_at, "scheduled_at")
    end = required(call.ends_at, "ends_at")
    title, details, location = _title(call, lead), _details(call), call.conferencing_link or ""
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


def ics(call: models.Call, lead: models.Lead) -> bytes:
    """The call as an iCalendar ``VEVENT`` (RFC 5545): UID stable, ``SEQUENCE`` = the call's
    change counter (bumped by reschedule, reassign, cancel), ``STATUS:CANCELLED`` once
    cancelled."""
    start = required(call.scheduled_at, "scheduled_at")
    end = call.ends_at or start + timedelta(minutes=call.duration_minutes or 0)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", "CANCEL" if call.status == "cancelled" else "PUBLISH")
    event = Event()
    event.add("uid", event_uid(call))
    event.add("dtstamp", utcnow())
    event.add("dtstart", as_utc(start))
    event.add("dtend", as_utc(end))
    event.add("summary", _title(call, lead))
    event.add("sequence", call.sequence)
    event.add("status", "CANCELLED" if call.status == "cancelled" else "CONFIRMED")
    if call.updated_at is not None:
        event.add("last-modified", as_utc(call.updated_at))
    details = _details(call)
    if details:
        event.add("description", details)
    if call.conferencing_link:
        event.add("location", vText(call.conferencing_link))
        event.add("url", call.conferencing_link)
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
