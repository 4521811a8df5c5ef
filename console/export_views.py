"""Exports for researchers (issue 22): the linked dataset in CSV, Parquet, Stata or SPSS with its codebook, as one
zip, for every time point or one; identified exports for administrators only, with a reason.  The export runs as
a job (its page shows the progress and the download, each download audited); the export history lists who,
when, format, rows (suppressed) and the zip's SHA-256.

Thin views over :mod:`outreach.jobs.exports` (``start_export``, ``export_history``), which the data API and the
CLI's identified export share."""
from __future__ import annotations

from flask import abort, g, redirect, render_template, request, url_for

from outreach.jobs.exports import FORMATS, ExportRequestError, export_history, start_export
from outreach.states import JobState

from .blueprint import address, bp, settings, uow
from .security import requires


def _page(form: dict | None = None, error: str | None = None, status: int = 200):
    with uow() as s:
        history = export_history(s, settings(), g.user.role)
    return render_template("console/exports.html", title="Exports", formats=FORMATS, history=history,
                           timepoints=settings().followup_days, form=form or {"format": "csv"}, error=error,
                           is_admin=g.user.role == "admin", below=settings().suppress_below,
                           JobState=JobState), status


@bp.get("/exports")
@requires("research")
def exports():
    return _page()


@bp.post("/exports")
@requires("research")
def export_start():
    form = {k: request.form.get(k, "") for k in ("format", "timepoint", "reason")}
    identified = request.form.get("identified") == "1"
    form["identified"] = identified
    if identified and g.user.role != "admin":
        abort(403)
    try:
        with uow() as s:
            job = start_export(s, settings(), fmt=form["format"], timepoint=form["timepoint"], identified=identified,
                               reason=form["reason"], owner=g.user.email, owner_role=g.user.role, address=address())
            job_id = job.id
    except ExportRequestError as exc:
        return _page(form, f"{str(exc)[:1].upper()}{str(exc)[1:]}.", 400)
    except PermissionError:
        abort(403)
    return redirect(url_for("console.job", job_id=job_id))
