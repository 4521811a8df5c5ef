"""Patients: search, the patient page (transcript, answers, opt-out history), show the phone number,
send a text by hand, pause or resume a follow-up, correct a phone number.

Only internal numbers appear in URLs and titles; every look and change is audited by the service.
"""
from __future__ import annotations

import datetime as dt

from flask import abort, flash, redirect, render_template, request, url_for

from outreach.staff.patients import (PatientError, correct_phone as correct_phone_service, hold_followup, patient_view,
                               release_followup, reveal_phone, search_patients)
from outreach.staff.texting import MAX_LENGTH, TextingError, queue_manual_text

from .blueprint import actor, address, bp, settings, uow, zone
from .security import requires


def _clock():
    """``at(moment, fmt)``: a stored time in the console's zone (the zone looked up once per page, not
    once per message as the ``|local`` filter does)."""
    console_zone = zone()

    def at(moment: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if moment is None:
            return ""
        return moment.replace(tzinfo=dt.UTC).astimezone(console_zone).strftime(fmt + " %Z")

    return at


def _render_patient(pk: int, *, phone: str | None = None, error: str | None = None, draft: str = "",
                    new_phone: str = "", status: int = 200, withdraw_form: dict | None = None):
    with uow() as s:
        view = patient_view(s, pk, actor=actor(), address=address())
    if view is None:
        abort(404)
    return render_template("console/patient.html", title=f"Patient {pk}", p=view, full_phone=phone, error=error,
                           draft=draft, new_phone=new_phone, max_length=MAX_LENGTH, at=_clock(),
                           withdraw_form=withdraw_form), status


@bp.route("/patients", methods=["GET", "POST"])
@requires("patients")
def patients():
    # Posted, not in the query string: a study id or phone digits must not end up in a URL or a log.
    query = request.form.get("q", "").strip()[:64] if request.method == "POST" else ""
    hits = []
    if query:
        with uow() as s:
            hits = search_patients(s, query, actor=actor(), address=address())
    return render_template("console/patients.html", title="Patients", query=query, hits=hits)


@bp.get("/patients/<int:pk>")
@requires("patients")
def patient(pk: int):
    return _render_patient(pk)


@bp.post("/patients/<int:pk>/show-phone")
@requires("patients")
def show_phone(pk: int):
    try:
        with uow() as s:
            phone = reveal_phone(s, pk, actor=actor(), address=address())
    except PatientError:
        abort(404)
    return _render_patient(pk, phone=phone)


@bp.post("/patients/<int:pk>/text")
@requires("patients")
def send_text(pk: int):
    body = request.form.get("body", "")
    try:
        with uow() as s:
            queue_manual_text(s, settings(), pk, body, author=actor(), address=address())
    except TextingError as exc:
        return _render_patient(pk, error=str(exc), draft=body[:2 * MAX_LENGTH], status=400)
    flash("Your text is queued; the worker sends it within a minute, even in quiet hours.")
    return redirect(url_for("console.patient", pk=pk) + "#transcript")


@bp.post("/patients/<int:pk>/followups/<int:followup_id>/hold")
@requires("patients")
def hold(pk: int, followup_id: int):
    try:
        with uow() as s:
            f = hold_followup(s, followup_id, actor=actor(), address=address())
            days, pk = f.timepoint_days, f.patient_id
        flash(f"The {days}-day follow-up is paused: no invitation, reminder or repeated question goes out, "
              "and it does not expire, until you resume it.")
    except PatientError as exc:
        flash(str(exc))
    return redirect(url_for("console.patient", pk=pk) + "#followups")


@bp.post("/patients/<int:pk>/followups/<int:followup_id>/release")
@requires("patients")
def release(pk: int, followup_id: int):
    try:
        with uow() as s:
            f = release_followup(s, followup_id, actor=actor(), address=address())
            days, pk = f.timepoint_days, f.patient_id
        flash(f"The {days}-day follow-up is resumed; automatic texts go out again.")
    except PatientError as exc:
        flash(str(exc))
    return redirect(url_for("console.patient", pk=pk) + "#followups")


@bp.post("/patients/<int:pk>/phone")
@requires("patients")
def correct_phone(pk: int):
    raw = request.form.get("phone", "")
    try:
        with uow() as s:
            change = correct_phone_service(s, settings(), pk, raw, actor=actor(), address=address())
    except PatientError as exc:
        return _render_patient(pk, error=str(exc), new_phone=raw[:32], status=400)
    flash(f"The phone number is now {change.new_masked}."
          + (" The wrong-number opt-out is lifted: the patient can be texted again." if change.reopened else "")
          + (f" {change.queue_words}" if change.queue_words else ""))
    return redirect(url_for("console.patient", pk=pk))
