"""The one place that writes the text a lead sees about a call.

Calendar events (every provider), the ``.ics`` file and the add-to-calendar links all take
their title and description from here (``docs/calendars.md``, "What is written to a
calendar"): the title ``"{lead} and {closer}"``, the time, the join link and the booking link's
public description. Nothing else of the call is read: never ``notes``, ``ai_summary``, the deal
value, the transcript, action items or form answers, which are the team's internal record.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from closerdesk import models
from closerdesk.calendars.provider import EventDraft
from closerdesk.kit import required


def event_title(lead: models.Lead, closer_name: str | None) -> str:
    """``"{lead full_name} and {closer name}"``; the lead's email when it has no name, and the
    lead alone when the call has no closer."""
    who = lead.full_name or lead.email
    return f"{who} and {closer_name}" if closer_name else who


def event_description(link: str | None, booking_link_description: str | None) -> str:
    """The join link, then the booking link's public description (either may be missing)."""
    parts = []
    if link:
        parts.append(f"Join: {link}")
    if booking_link_description and booking_link_description.strip():
        parts.append(booking_link_description.strip())
    return "\n\n".join(parts)


def event_draft(
    call: models.Call,
    lead: models.Lead,
    *,
    closer_name: str | None,
    booking_link_description: str | None,
    starts_at: datetime | None = None,
    minutes: int | None = None,
    link: str | None = None,
    sequence: int | None = None,
) -> EventDraft:
    """The calendar event of ``call`` for ``lead``: times in aware UTC, the join link as
    location and in the description, the lead as the one attendee, ``sequence`` the call's.

    ``starts_at``/``minutes`` default to the call's ``scheduled_at``/``duration_minutes`` (a
    reschedule passes the new ones); ``link`` defaults to the call's ``conferencing_link`` (a
    reassign passes the new closer's); ``sequence`` to the call's (a change passes the next
    one). ``closer_name`` is the closer the event is for.
    Raises ``RuntimeError`` (a bug) when neither the call nor the arguments give a time.
    """
    start = starts_at if starts_at is not None else required(call.scheduled_at, "scheduled_at")
    if minutes is not None:
        end = start + timedelta(minutes=minutes)
    elif starts_at is None and call.ends_at is not None:
        end = call.ends_at
    else:
        end = start + timedelta(minutes=required(call.duration_minutes, "duration_minutes"))
    join = link or call.conferencing_link or ""
    return EventDraft(
        call_id=call.id,
        title=event_title(lead, closer_name),
        starts_at=start,
        ends_at=end,
        description=event_description(join, booking_link_description),
        location=join,
        attendees=(lead.email,),
        sequence=call.sequence if sequence is None else sequence,
    )
