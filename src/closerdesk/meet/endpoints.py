"""``GET``/``HEAD /meet/{token}``: the revocable conferencing links of the built-in provider
(``docs/links.md``, "The meeting link")."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from closerdesk.conferencing.builtin import resolve_meeting
from closerdesk.db import Session
from closerdesk.errors import ApiError, LinkRevoked, MeetingLinkNotFound, responses
from closerdesk.kit.head import head_of

router = APIRouter(tags=["meet"])

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto;">
<h1 style="font-size: 1.4rem;">{title}</h1><p>{text}</p></body></html>
"""
GONE_TEXT = "This link has been replaced; check your latest invitation."


def wants_html(accept: str) -> bool:
    """Whether ``Accept`` prefers ``text/html`` to ``application/json`` (a browser does; an
    API client, curl's ``*/*`` and a missing header do not). Quality values are honoured."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best[kind.lower()] = max(q, best.get(kind.lower(), 0.0))
    html = best.get("text/html", 0.0)
    json = best.get("application/json", best.get("application/*", best.get("*/*", 0.0)))
    return html > 0 and html > json


def _page(error: ApiError) -> HTMLResponse:
    title = "Link replaced" if isinstance(error, LinkRevoked) else "Link not found"
    return HTMLResponse(
        PAGE.format(title=escape(title), text=escape(GONE_TEXT)),
        status_code=error.status,
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/meet/{token}",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        302: {"description": "Redirect to the meeting room"},
        **{
            status: {**declared, "content": {"text/html": {"schema": {"type": "string"}}}}
            for status, declared in responses(MeetingLinkNotFound, LinkRevoked).items()
        },
    },
)
async def join_meeting(token: str, request: Request, session: Session) -> Response:
    """Redirect (302) to the call's room while the link is valid; 410 ``LINK_REVOKED`` once the
    call was reassigned or cancelled, 404 ``LINK_NOT_FOUND`` for an unknown token. No API key:
    this is the link the lead and closer click. A browser (``Accept`` preferring ``text/html``)
    gets the 404/410 as a short HTML page ("this link has been replaced; check your latest
    invitation"), any other client the JSON envelope. ``HEAD`` answers the same status and
    headers without the body."""
    try:
        room = await resolve_meeting(session, token)
    except (MeetingLinkNotFound, LinkRevoked) as exc:
        if wants_html(request.headers.get("accept", "")):
            return _page(exc)
        raise
    return RedirectResponse(room, status_code=302)


@router.head("/meet/{token}", include_in_schema=False)
async def head_meeting(token: str, request: Request, session: Session) -> Response:
    """``GET /meet/{token}`` without the body."""
    return await head_of(request, join_meeting(token, request, session))
