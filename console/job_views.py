"""A job's page: where it stands (a progress bar that updates without reloading), then its result, its files to
download (each download audited) and, for an import's check, the choice to import.  Thin views over
:mod:`outreach.jobs.queue`; a job is its owner's (and the administrators')."""
from __future__ import annotations

from flask import abort, g, render_template, send_file
from jinja2 import TemplateNotFound

from outreach.jobs.queue import download, job_for, live_progress
from outreach.states import JobState

from .blueprint import address, bp, reading, settings, uow
from .security import requires



def _job(job_id: int):
    with reading() as s:
        job = job_for(s, job_id, g.user.email, g.user.role)
        if job is None:
            abort(404)
        s.expunge(job)
    return job


def _context(job) -> dict:
    kind_template = f"console/_job_{job.kind}.html"
    try:
        bp.jinja_loader.get_source(None, kind_template)  # type: ignore[union-attr]
    except TemplateNotFound:
        kind_template = None
    progress, message = live_progress(settings(), job)
    return {"job": job, "result": job.result or {}, "finished": job.state in JobState.FINISHED,
            "progress": progress, "message": message,
            "done": job.state == JobState.DONE, "kind_template": kind_template, "JobState": JobState}


@bp.get("/jobs/<int:job_id>")
@requires("signed_in")
def job(job_id: int):
    job = _job(job_id)
    return render_template("console/job.html", title=f"Job {job_id}", **_context(job))


@bp.get("/jobs/<int:job_id>/status")
@requires("signed_in")
def job_status(job_id: int):
    """The part of the page that refreshes itself until the job ends."""
    return render_template("console/_job_status.html", **_context(_job(job_id)))


@bp.get("/jobs/<int:job_id>/files/<name>")
@requires("signed_in")
def job_file(job_id: int, name: str):
    with uow() as s:
        found = download(s, settings(), job_id, name, email=g.user.email, role=g.user.role, address=address())
    if found is None:
        abort(404)
    _, path = found
    return send_file(path, as_attachment=True, download_name=path.name, max_age=0)
