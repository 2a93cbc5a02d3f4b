"""``calendars.drafts``: the lead-facing text of a call, built from in-memory rows (pure)."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

from closerdesk import models
from closerdesk.calendars.drafts import event_description, event_draft, event_title

START = datetime(2031, 5, 6, 15, 0, tzinfo=UTC)
JOIN = "http://closerdesk.test/meet/tok123"


def _call(**overrides: object) -> models.Call:
    values: dict[str, object] = {
        "id": "call_1",
        "organization_id": "org_1",
        "call_kind": "booking",
        "status": "scheduled",
        "lead_id": "lead_1",
        "closer_name": "Casey Closer",
        "scheduled_at": START,
        "ends_at": START + timedelta(minutes=45),
        "duration_minutes": 45,
        "conferencing_link": JOIN,
        "notes": "INTERNAL notes",
        "ai_summary": "INTERNAL summary",
        "expected_deal_value": 987_654,
        "transcript_data": {"segments": [{"text": "INTERNAL transcript"}]},
        "form_data": [{"field_id": "f", "label": "INTERNAL label", "value": "INTERNAL answer"}],
        "action_items": [{"title": "INTERNAL action"}],
        "sequence": 3,
    }
    values.update(overrides)
    return models.Call(**values)


def _lead(full_name: str | None = "Lee Lead") -> models.Lead:
    return models.Lead(
        id="lead_1", organization_id="org_1", email="lee@example.com", full_name=full_name
    )


def test_the_draft_of_a_call() -> None:
    draft = event_draft(
        _call(), _lead(), closer_name="Casey Closer", booking_link_description="Bring numbers."
    )
    assert draft.call_id == "call_1"
    assert draft.title == "Lee Lead and Casey Closer"
    assert (draft.starts_at, draft.ends_at) == (START, START + timedelta(minutes=45))
    assert draft.description == f"Join: {JOIN}\n\nBring numbers."
    assert draft.location == JOIN
    assert draft.attendees == ("lee@example.com",)
    assert draft.sequence == 3
    text = " ".join(str(getattr(draft, f.name)) for f in fields(draft))
    assert "INTERNAL" not in text
    assert "987654" not in text


def test_a_reschedule_or_reassign_passes_the_new_time_closer_and_link() -> None:
    new_start = START + timedelta(days=1)
    draft = event_draft(
        _call(),
        _lead(),
        closer_name="Robin Other",
        booking_link_description=None,
        starts_at=new_start,
        minutes=60,
        link="http://closerdesk.test/meet/new",
    )
    assert draft.title == "Lee Lead and Robin Other"
    assert (draft.starts_at, draft.ends_at) == (new_start, new_start + timedelta(minutes=60))
    assert draft.location == "http://closerdesk.test/meet/new"
    assert draft.description == "Join: http://closerdesk.test/meet/new"
    # A new start alone keeps the call's length.
    moved = event_draft(
        _call(), _lead(), closer_name=None, booking_link_description=None, starts_at=new_start
    )
    assert moved.ends_at == new_start + timedelta(minutes=45)


def test_titles_and_descriptions_without_the_optional_parts() -> None:
    assert event_title(_lead(None), "Casey Closer") == "lee@example.com and Casey Closer"
    assert event_title(_lead(), None) == "Lee Lead"
    assert event_description(None, None) == ""
    assert event_description(None, "  Agenda  ") == "Agenda"
    assert event_description(JOIN, "   ") == f"Join: {JOIN}"
