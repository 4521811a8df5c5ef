"""The statistical report in the console (issue 22): generate it (a job), read report.html inside the console
with its figures, download the report folder as a zip (audited); it says when it was generated and from how many
participants (the report's own suppressed count).  Every researcher and administrator reads every report: it is
de-identified and suppressed.

Thin views over :mod:`outreach.jobs.reports`, which calls the functions ``outreach report`` calls."""
from __future__ import annotations

from flask import abort, g, redirect, render_template, request, send_file, url_for
from markupsafe import Markup

from outreach.jobs.reports import ReportRequestError, report_jobs, report_view, report_zip, start_report

from .blueprint import address, bp, settings, uow
from .security import requires


def _page(job_id: int | None = None, error: str | None = None, status: int = 200, form: dict | None = None):
    with uow() as s:
        view = report_view(s, settings(), job_id)
        if job_id is not None and view is None:
            abort(404)
        history = report_jobs(s)
        s.expunge_all()
    body = Markup(view.body) if view is not None and view.body is not None else None  # noqa: S704 - our own file
    return render_template("console/report.html", title="Report", view=view, body=body, history=history,
                           timepoints=settings().followup_days, error=error, form=form or {}), status


@bp.get("/report")
@requires("research")
def report():
    """The latest report, the form to generate one, and the reports so far."""
    return _page()


@bp.get("/report/<int:job_id>")
@requires("research")
def report_job(job_id: int):
    return _page(job_id)


@bp.post("/report")
@requires("research")
def report_generate():
    timepoint = request.form.get("timepoint", "")
    try:
        with uow() as s:
            job = start_report(s, settings(), timepoint=timepoint, owner=g.user.email, owner_role=g.user.role,
                               address=address())
            job_id = job.id
    except ReportRequestError as exc:
        return _page(error=f"{str(exc)[:1].upper()}{str(exc)[1:]}.", status=400, form={"timepoint": timepoint})
    return redirect(url_for("console.job", job_id=job_id))


@bp.get("/report/<int:job_id>/report.zip")
@requires("research")
def report_download(job_id: int):
    with uow() as s:
        path = report_zip(s, settings(), job_id, actor=g.user.email, address=address())
    if path is None:
        abort(404)
    return send_file(path, as_attachment=True, download_name=f"outreach-report-{job_id}.zip", max_age=0)
