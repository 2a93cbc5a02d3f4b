"""Marking who missed a call: ``POST /v1/calls/{id}/absence`` (after Cal.com's "mark a booking
absence"; docs/sales-floor.md, "Absence").

The lead absent makes the call ``no_show``, as the ``no_show`` outcome would; the host (the
closer) absent sets ``host_no_show``, which round robin leaves out of the closer's share. The
change writes its history row (``absence_marked``) and its webhook events in the request's
transaction and only flushes.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk import models
from closerdesk.auth.service import AuthContext
from closerdesk.calls.schemas import AbsenceMark
from closerdesk.calls.steps import (
    actor,
    call_json,
    locked_call,
    record_change,
    require_confirmed_call,
    snapshot,
)
from closerdesk.errors import CallNotScheduled, CallNotStarted
from closerdesk.kit.time import utcnow
from closerdesk.leads.service import get_lead, lead_contact
from closerdesk.webhooks.payloads import AbsenceMarked, CallAbsenceMarkedData, CallNoShowData
from closerdesk.webhooks.service import record_event

ABSENCE_FIELDS = ("status", "host_no_show", "loss_reason")
"""What a mark may change, as the history row shows it (before and after)."""


async def mark_absence(
    session: AsyncSession, auth: AuthContext, call_id: str, body: AbsenceMark
) -> models.Call:
    """Mark the host and/or the lead absent from a call that has started.

    Checks in order: ``CallNotFound`` (404); ``CallCancelled``, ``CallDeclined`` and
    ``CallNotConfirmed`` (409: a cancelled, declined or still pending call never took place,
    as for an outcome); ``CallNotScheduled`` (409, an intent call has no time, so no
    one can have missed it); ``CallNotStarted`` (409, ``scheduled_at`` still in the future).

    ``lead`` sets ``status: no_show`` (and clears ``loss_reason``, as any outcome other than
    ``lost`` does); ``host`` sets ``host_no_show: true``. A ``false`` means "not marked now",
    never "was there": marks add up, and the outcome endpoint corrects the status. A mark that
    changes nothing (already marked) is answered with the call and records nothing. Otherwise:
    history row ``absence_marked`` (``notes`` as its ``reason``; the call's own ``notes`` are
    untouched), ``call.absence_marked``, and ``call.no_show`` when the status became
    ``no_show``.
    """
    call = await locked_call(session, auth, call_id)
    require_confirmed_call(call)
    if call.scheduled_at is None:
        raise CallNotScheduled("An intent call has no time: no one can have missed it.")
    if call.scheduled_at > utcnow():
        raise CallNotStarted()
    before = snapshot(call, ABSENCE_FIELDS)
    if body.lead:
        call.status, call.loss_reason = "no_show", None
    if body.host:
        call.host_no_show = True
    after = snapshot(call, ABSENCE_FIELDS)
    if after == before:
        return call
    await session.flush()
    after_call = call_json(call)
    record_change(
        session, call, auth, "absence_marked", before=before, after=after, reason=body.notes
    )
    lead = await get_lead(session, call.organization_id, call.lead_id)
    contact = lead_contact(lead)
    await record_event(
        session,
        call.organization_id,
        CallAbsenceMarkedData(
            call=after_call,
            lead=contact,
            absence=AbsenceMarked(host=body.host, lead=body.lead, notes=body.notes),
            previous_status=before["status"],
            marked_by=actor(auth),
        ),
    )
    if after["status"] == "no_show" and before["status"] != "no_show":
        await record_event(
            session,
            call.organization_id,
            CallNoShowData(
                call=after_call,
                lead=contact,
                previous_status=before["status"],
                set_by=actor(auth),
            ),
        )
    return call
