"""The inbox: every patient's text a person must read (not an answer, a keyword or a crisis text), oldest
first, with its age against INBOX_RESPONSE_HOURS; each can be marked handled."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for

from outreach.staff.inbox import InboxError, inbox_items, mark_handled

from .blueprint import actor, address, bp, settings, uow
from .security import requires


@bp.get("/inbox")
@requires("patients")
def inbox():
    with uow() as s:
        items = inbox_items(s, settings(), actor=actor(), address=address())
    return render_template("console/inbox.html", title="Inbox", items=items,
                           hours=settings().inbox_response_hours)


@bp.post("/inbox/<int:message_id>/handled")
@requires("patients")
def inbox_handled(message_id: int):
    try:
        with uow() as s:
            mark_handled(s, message_id, actor=actor(), address=address())
        flash(f"Text #{message_id} is marked handled.")
    except InboxError as exc:
        flash(str(exc))
    return redirect(url_for("console.inbox"))
