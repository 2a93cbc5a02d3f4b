"""``GET /meet/{token}``: the revocable conferencing links of the built-in provider (docs/api.md)"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from closerdesk.conferencing.builtin import resolve_meeting
from closerdesk.db import Session
from closerdesk.errors import LinkRevoked, MeetingLinkNotFound, responses

router = APIRouter(tags=["meet"])


@router.get(
    "/meet/{token}",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        302: {"description": "Redirect to the meeting room"},
        **responses(MeetingLinkNotFound, LinkRevoked),
    },
)
async def join_meeting(token: str, session: Session) -> RedirectResponse:
    """Redirect (302) to the call's room while the link is valid; 410 ``LINK_REVOKED`` once the
    call was reassigned or cancelled. No API key: this is the link the lead and closer click."""
    return RedirectResponse(await resolve_meeting(session, token), status_code=302)
