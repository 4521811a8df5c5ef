"""The inbox: inbound texts that need a person (unusable answers, free text after the survey, media,
unknown numbers, "wrong number" replies), each of which can be marked handled."""
from __future__ import annotations

from flask import flash, redirect, render_template, url_for

from outreach.staff.patients import PatientError, inbox_items, mark_handled

from .blueprint import actor, address, bp, uow
from .security import requires


@bp.get("/inbox")
@requires("patients")
def inbox():
    with uow() as s:
        items = inbox_items(s, actor=actor(), address=address())
    return render_template("console/inbox.html", title="Inbox", items=items)


@bp.post("/inbox/<int:message_id>/handled")
@requires("patients")
def inbox_handled(message_id: int):
    try:
        with uow() as s:
            mark_handled(s, message_id, actor=actor(), address=address())
        flash(f"Text #{message_id} is marked handled.")
    except PatientError as exc:
        flash(str(exc))
    return redirect(url_for("console.inbox"))
