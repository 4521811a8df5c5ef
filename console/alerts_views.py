"""The crisis-alert queue: open alerts with their context; take one, resolve it with a note."""
from __future__ import annotations

import datetime as dt

from flask import flash, redirect, render_template, request, session, url_for

from outreach.staff.alerts import AlertError, alert_queue, flag_as_crisis, resolve_alert, take_alert
from outreach.db import audit_each_patient
from outreach.clock import utcnow

from .blueprint import actor, address, bp, settings, uow
from .security import requires


def _queue(full_page: bool):
    overdue = dt.timedelta(hours=settings().alert_response_hours)
    with uow() as s:
        alerts = alert_queue(s, now=utcnow(), overdue_after=overdue)
        shown = sorted(a.id for a in alerts)
        # Each look at the queue (which shows patients' words) is audited; a refresh showing the same
        # alerts again is not a new look.
        if full_page or shown != session.get("alerts_seen"):
            # One row per patient shown, so the audit log filtered by a patient finds who saw their words.
            by_patient: dict[int | None, dict] = {}
            for a in alerts:
                by_patient.setdefault(a.patient_pk, {"alert_ids": []})["alert_ids"].append(a.id)
            audit_each_patient(s, "viewed_alert_queue", by_patient or {None: {"alert_ids": []}}, actor=actor(),
                               address=address())
            session["alerts_seen"] = shown
    return alerts


@bp.get("/alerts")
@requires("alerts")
def alerts():
    return render_template("console/alerts.html", title="Crisis alerts", alerts=_queue(True),
                           refresh=settings().console_refresh_seconds,
                           hours=settings().get("ALERT_RESPONSE_HOURS"))


@bp.get("/alerts/list")
@requires("alerts")
def alert_list():
    return render_template("console/_alert_list.html", alerts=_queue(False), oob=True)


@bp.post("/alerts/<int:alert_id>/take")
@requires("alerts")
def take(alert_id: int):
    try:
        with uow() as s:
            take_alert(s, alert_id, actor(), address())
        flash(f"You are handling alert #{alert_id}.")
    except AlertError as exc:
        flash(str(exc))
    return redirect(url_for("console.alerts") + f"#alert-{alert_id}")


@bp.post("/alerts/<int:alert_id>/resolve")
@requires("alerts")
def resolve(alert_id: int):
    try:
        with uow() as s:
            resolve_alert(s, alert_id, request.form.get("note", ""), actor(), address())
        flash(f"Alert #{alert_id} is resolved. The survey waits for the patient to write again.")
    except AlertError as exc:
        flash(f"Alert #{alert_id} was not resolved: {exc}.")
    return redirect(url_for("console.alerts"))


@bp.post("/messages/<int:message_id>/flag")
@requires("alerts")
def flag(message_id: int):
    try:
        with uow() as s:
            alert = flag_as_crisis(s, message_id, actor(), address())
            patient = alert.patient_id
        flash(f"Alert #{alert.id} is open for this text, and the survey is paused.")
    except AlertError as exc:
        flash(str(exc))
        patient = None
    if patient:
        return redirect(url_for("console.patient", pk=patient))
    return redirect(url_for("console.alerts"))
