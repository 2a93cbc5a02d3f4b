"""``GET``/``HEAD /ics/{token}``: the call's calendar file for the lead, without an API key
(``docs/links.md``, "The calendar file"). The token is signed (``closerdesk.calls.ics_token``);
the file is rendered from the call as it is now."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from closerdesk.calls import calendar_links, repository
from closerdesk.calls.ics_token import call_id_of
from closerdesk.config import Settings
from closerdesk.db import Session
from closerdesk.errors import CalendarFileLinkNotFound, responses
from closerdesk.kit.head import head_of

router = APIRouter(tags=["links"])


@router.get(
    "/ics/{token}",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {}}, "description": "The call as iCalendar"},
        **responses(CalendarFileLinkNotFound),
    },
)
async def get_calendar_file(token: str, request: Request, session: Session) -> Response:
    """The call as an iCalendar file (``text/calendar``), as it is now: the new time after a
    reschedule, ``METHOD:CANCEL`` with ``STATUS:CANCELLED`` once cancelled; stable ``UID``,
    ``SEQUENCE`` bumped on every change. No API key: this is the link handed to the lead.

    404 ``LINK_NOT_FOUND`` for a token that is not signed by this closerdesk, or whose call is
    gone or has no slot. ``HEAD`` answers the same status and headers without the body."""
    settings: Settings = request.app.state.settings
    call_id = call_id_of(settings.secret_key, token)
    found = None if call_id is None else await repository.public_call(session, call_id)
    if found is None:
        raise CalendarFileLinkNotFound()
    call, lead = found
    if call.call_kind == "intent" or call.scheduled_at is None:
        raise CalendarFileLinkNotFound()
    description = await repository.booking_link_description(session, call)
    return Response(
        content=calendar_links.ics(call, lead, booking_link_description=description),
        media_type="text/calendar; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{call.id}.ics"',
            "Cache-Control": "no-cache",
            "X-Robots-Tag": "noindex",
        },
    )


@router.head("/ics/{token}", include_in_schema=False)
async def head_calendar_file(token: str, request: Request, session: Session) -> Response:
    """``GET /ics/{token}`` without the body."""
    return await head_of(request, get_calendar_file(token, request, session))
