"""Imports of discharge files from the browser: upload, the check's report (problems line by line, warnings),
then import all or nothing or only the valid rows; and the history of imports.  Thin views over
:mod:`outreach.jobs.imports`, which runs the same import as ``outreach import-discharges``."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from outreach.jobs.imports import UploadError, start_check, start_import
from outreach.jobs.queue import JobError, job_for, recent
from outreach.states import JobState

from .blueprint import address, bp, settings, uow
from .security import requires


@bp.get("/imports")
@requires("imports")
def imports():
    with uow() as s:
        history = recent(s, "import", limit=100)
        s.expunge_all()
    return render_template("console/imports.html", title="Imports", history=history, JobState=JobState,
                           max_mb=settings().max_upload_mb)


@bp.post("/imports")
@requires("imports")
def import_upload():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose the discharge file (CSV) to upload.")
        return redirect(url_for("console.imports"))
    try:
        with uow() as s:
            job = start_check(s, settings(), upload.stream, upload.filename, owner=g.user.email,
                              owner_role=g.user.role, address=address(), strict=bool(request.form.get("strict")),
                              allow_rating_changes=bool(request.form.get("allow_rating_changes")))
            job_id = job.id
    except UploadError as exc:
        flash(f"The file was not taken: {exc}.")
        return redirect(url_for("console.imports"))
    return redirect(url_for("console.job", job_id=job_id))


@bp.post("/imports/<int:check_id>/import")
@requires("imports")
def import_start(check_id: int):
    try:
        with uow() as s:
            check = job_for(s, check_id, g.user.email, g.user.role)
            if check is None:
                raise JobError("there is no such checked upload")
            job = start_import(s, settings(), check, only_valid=request.form.get("rows") == "valid",
                               owner=g.user.email, owner_role=g.user.role, address=address())
            job_id = job.id
    except JobError as exc:
        flash(f"Nothing was imported: {exc}.")
        return redirect(url_for("console.job", job_id=check_id))
    return redirect(url_for("console.job", job_id=job_id))
