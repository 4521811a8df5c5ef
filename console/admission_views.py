"""A coordinator records one admission in the browser (issue 26): a thin view over
:func:`outreach.care.admissions.record_admission`, which checks it as ``outreach import-admissions`` checks a row
(the same messages) and writes it in one transaction, audited."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from outreach.care.admissions import OPTIONAL, REQUIRED, record_admission
from outreach.study.importer import ImportFileError
from outreach.care.teams import teams_by_name

from .blueprint import actor, address, bp, settings, uow
from .security import requires


def _page(values: dict[str, str], errors: list, warnings: list, status: int = 200):
    with uow() as s:
        teams = sorted(teams_by_name(s))
    return render_template("console/admission.html", title="Record an admission", values=values, errors=errors,
                           warnings=warnings, teams=teams), status


@bp.get("/admissions/new")
@requires("imports")
def admission_new():
    return _page({}, [], [])


@bp.post("/admissions/new")
@requires("imports")
def admission_record():
    values = {c: request.form.get(c, "") for c in REQUIRED + OPTIONAL}
    try:
        with uow() as s:
            result = record_admission(s, settings(), values, actor=actor(), address=address())
    except ImportFileError as exc:  # the study is closed
        flash(f"{exc}; nothing was recorded.")
        return _page(values, [], [], 409)
    if result.errors:
        return _page(values, result.errors, [], 400)
    flash(f"Admission of {values['patient_id'].strip()} recorded"
          + ("" if result.new_episodes else " (the stay in treatment was already there; its details updated)"
             if result.updated else " (nothing changed)") + "."
          + "".join(f" Note: {w.column}: {w.problem}." for w in result.warnings))
    return redirect(url_for("console.admission_new"))
