"""The care team's pages: the queue of open alliance alerts (acknowledged with a note, audited) beside the team's
patients in treatment, and a patient's check-ins as a trend.  A clinician sees only their own teams' patients
(403 otherwise) and only check-ins, trends and alliance alerts.  Each view calls one service of
:mod:`outreach.care`."""
from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for

from outreach.care.alerts import AllianceAlertError, acknowledge
from outreach.care.overview import NoSuchPatient, NotYourPatient, audit_queue, patient_trend, team_queue
from outreach.care.teams import team_ids_of
from outreach.db import audit_each_patient
from outreach.study.instrument import load_instrument

from .blueprint import actor, address, bp, settings, uow
from .security import requires


def _instrument():
    return load_instrument(settings().get("ALLIANCE_INSTRUMENT"))


@bp.get("/care")
@requires("care")
def care():
    team_id = request.args.get("team", type=int)
    with uow() as s:
        queue = team_queue(s, g.user, team_id=team_id, page=request.args.get("page", 1, type=int))
        audit_queue(s, queue, actor=actor(), address=address())
    labels = {sub.name: sub.label for sub in _instrument().subscales}
    return render_template("console/care.html", title="Care team", queue=queue, labels=labels)


@bp.post("/care/alerts/<int:alert_id>/acknowledge")
@requires("care")
def care_acknowledge(alert_id: int):
    try:
        with uow() as s:
            acknowledge(s, alert_id, request.form.get("note", ""), actor=actor(), team_ids=team_ids_of(s, g.user),
                        address=address())
        flash(f"Alliance alert #{alert_id} acknowledged.")
    except AllianceAlertError as exc:
        flash(str(exc))
    return redirect(url_for("console.care") + f"#alliance-alert-{alert_id}")


@bp.get("/care/patients/<int:patient_pk>")
@requires("care")
def care_patient(patient_pk: int):
    instrument = _instrument()
    try:
        with uow() as s:
            trend = patient_trend(s, g.user, patient_pk, instrument, settings().alliance_checkin_days)
            audit_each_patient(s, "viewed_checkins", {patient_pk: {}}, actor=actor(), address=address())
    except NotYourPatient:
        abort(403)
    except NoSuchPatient:
        abort(404)
    return render_template("console/care_patient.html", title=f"Check-ins of {trend.patient_id}", trend=trend,
                           instrument=instrument)
