"""A discharge file imported from the console, in two jobs: a *check* (the whole import run with the same rules
as ``outreach import-discharges``, then rolled back: the validation report) and the *import* itself, all or
nothing or only the valid rows, with the rejected rows written masked as the CLI writes them.

The uploaded file waits in the check job's folder for the coordinator's decision, moves to the import job's
folder and is deleted when that job ends (an upload nobody imports is deleted with the check's files, after
JOB_RESULT_DAYS).  The jobs of kind ``import`` are the import history: who, when, file name, SHA-256 and the
summary.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from ..config import Settings
from ..db import audit, unit_of_work
from ..models import Job
from ..states import JobState
from ..study.importer import ImportFileError, import_discharges
from .queue import JobContext, JobError, handler, job_folder, jobs_dir, submit

SHOWN = 200  # errors and warnings listed one by one on the report; the rest are counted
CHUNK = 1 << 20


class UploadError(ValueError):
    """The upload cannot be taken (empty, too large, not a CSV): said in words."""


def safe_name(name: str | None) -> str:
    """The file name as the browser gave it, without any folder and with only plain characters."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", base).strip(" .")[:120]
    return base or "discharges.csv"


def upload_dir(folder: Path) -> Path:
    path = folder / "upload"
    path.mkdir(exist_ok=True, mode=0o700)
    return path


def uploaded_file(folder: Path) -> Path | None:
    files = sorted((folder / "upload").glob("*")) if (folder / "upload").is_dir() else []
    return files[0] if files else None


def _keep_rejected(folder: Path, result) -> dict[str, str]:
    """Move the rejected rows the importer wrote beside the upload into the job's ``rejected`` folder (so the
    upload folder holds the upload alone, whatever its name): the job's downloadable file."""
    if not result.rejected_path:
        return {}
    target = folder / "rejected"
    target.mkdir(exist_ok=True, mode=0o700)
    os.replace(result.rejected_path, target / result.rejected_path.name)
    return {"rejected": f"rejected/{result.rejected_path.name}"}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]+")


def _in_words(exc: Exception) -> str:
    """An importer's refusal of the whole file, fit to show: phone numbers masked, unreadable bytes dropped,
    short."""
    from ..logs import mask_text

    text = _CONTROL.sub(" ", mask_text(str(exc)))
    return text if len(text) <= 300 else text[:297] + "…"


def _sniff(head: bytes) -> str | None:
    """Why the start of an upload shows it is not a CSV file (None: it may be one)."""
    if head.startswith(b"PK\x03\x04"):
        return ("this is an Excel workbook (.xlsx) or another zipped file, not a CSV: in the spreadsheet, save it "
                "as 'CSV UTF-8 (comma delimited)' and upload that file")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return ("this is an old Excel workbook (.xls), not a CSV: in the spreadsheet, save it as 'CSV UTF-8 "
                "(comma delimited)' and upload that file")
    if head.startswith(b"%PDF"):
        return "this is a PDF, not a CSV: export the discharge list from its source as a CSV file"
    if b"\x00" in head:
        return "this is not a text file (it holds binary data): upload the discharge list saved as a CSV file"
    return None


def start_check(session: Session, settings: Settings, stream: IO[bytes], file_name: str | None, *, owner: str,
                owner_role: str, address: str | None, strict: bool = False,
                allow_rating_changes: bool = False) -> Job:
    """Store an upload (mode 0600, refused past MAX_UPLOAD_MB) and queue its check; refused, nothing stored, when
    the study is closed."""
    from ..study.retention import refuse_if_closed

    refuse_if_closed(session, UploadError)
    name = safe_name(file_name)
    limit = int(settings.max_upload_mb * 1024 * 1024)
    job = submit(session, "import", owner=owner, owner_role=owner_role, file_name=name,
                 params={"mode": "check", "strict": strict, "allow_rating_changes": allow_rating_changes,
                         "address": address})
    folder = job_folder(settings, job.id)
    target = upload_dir(folder) / name
    digest, size = hashlib.sha256(), 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UploadError(f"the file is larger than {settings.max_upload_mb:g} MB (MAX_UPLOAD_MB); "
                                      "split it, or ask the administrator to raise the limit")
                if size == len(chunk) and (why := _sniff(chunk[:4096])):
                    raise UploadError(why)
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise UploadError("the file is empty; choose the discharge file again")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # nothing of a refused upload is kept
        raise
    job.params = {**job.params, "sha256": digest.hexdigest(), "bytes": size}
    audit(session, "import_uploaded", actor=owner, address=address, job_id=job.id, file=name,
          sha256=digest.hexdigest(), bytes=size)
    return job


def start_import(session: Session, settings: Settings, check: Job, *, only_valid: bool, owner: str,
                 owner_role: str, address: str | None) -> Job:
    """Queue the import of a checked upload; its file moves to the new job's folder."""
    if check.kind != "import" or (check.params or {}).get("mode") != "check":
        raise JobError("this job is not the check of an upload")
    if check.state == JobState.FAILED:
        raise JobError("the check of this file failed (its page says why); fix the file and upload it again")
    if check.state != JobState.DONE:
        raise JobError("the file has not been checked yet; wait for the check to finish")
    if (check.result or {}).get("imported_by_job"):
        raise JobError(f"this file was already sent to import (job {check.result['imported_by_job']})")
    source = uploaded_file(jobs_dir(settings) / str(check.id))
    if source is None:
        raise JobError("the uploaded file is no longer kept; upload it again")
    checked = check.result or {}
    if not only_valid and checked.get("rejected"):
        raise JobError(f"{checked['rejected']} row(s) have problems, so importing all or nothing would import "
                       "nothing; fix the file, or import only the valid rows")
    params = {k: check.params.get(k) for k in ("strict", "allow_rating_changes", "sha256", "bytes")}
    job = submit(session, "import", owner=owner, owner_role=owner_role, file_name=check.file_name,
                 params={**params, "mode": "import", "skip_invalid": only_valid, "check_job": check.id,
                         "address": address})
    target = upload_dir(job_folder(settings, job.id)) / source.name
    os.replace(source, target)
    check.result = {**checked, "imported_by_job": job.id}
    return job


def _errors(result) -> dict[str, Any]:
    return {"errors": [[e.line, e.column, e.problem] for e in result.errors[:SHOWN]],
            "error_count": len(result.errors), "grouped": result.grouped_errors() if len(result.errors) > 20 else [],
            "warnings": [[w.line, w.column, w.problem] for w in result.warnings[:SHOWN]],
            "warning_count": len(result.warnings),
            "rejected": result.rejected,
            "unread_lines": [list(span) for span in result.unread_lines]}


@handler("import")
def run_import(ctx: JobContext) -> dict[str, Any]:
    check = ctx.params.get("mode") == "check"
    path = uploaded_file(ctx.folder)
    if path is None:
        raise JobError("the uploaded file is no longer kept; upload it again")
    base = {"file_name": ctx.file_name, "sha256": ctx.params.get("sha256"), "mode": ctx.params.get("mode")}
    options = dict(strict=bool(ctx.params.get("strict")),
                   allow_rating_changes=bool(ctx.params.get("allow_rating_changes")))

    def progress(done: int, total: int) -> None:  # three passes over the rows: read and check, match, write
        step = ("reading and checking the rows", "matching them to the stored patients",
                "writing" if not check else "trying the import")[min(2, 3 * done // max(total, 1))]
        ctx.progress(0.05 + 0.9 * done / max(total, 1), f"{'checking' if check else 'importing'}: {step}")

    ctx.progress(0.02, "reading the file")
    failed = False
    try:
        if check:  # the import of the valid rows with every rule, then rolled back: what it would do
            with ctx.sessions() as session:
                try:
                    result = _import(session, path, ctx, options, skip_invalid=True, progress=progress)
                finally:
                    ctx.progress(0.96, "checking: undoing the trial import (nothing of it is kept)")
                    session.rollback()
            rows = result.new_episodes + result.updated + result.unchanged + result.rejected
            files = _keep_rejected(ctx.folder, result)
            out = {**base, **_errors(result), "rows": rows, "would_import": result.summary, "files": files}
            out["summary"] = (f"checked {rows:,} row(s): {len(result.errors):,} problem(s) in {result.rejected:,} "
                              f"row(s), {len(result.warnings):,} warning(s)")
            return out
        try:
            with unit_of_work(ctx.sessions) as session:
                result = _import(session, path, ctx, options, skip_invalid=bool(ctx.params.get("skip_invalid")),
                                 progress=progress)
                if not result.written:
                    raise JobError(f"{len(result.errors)} problem(s) in {result.rejected} row(s); nothing was "
                                   "imported (the file changed since it was checked?)")
                ctx.progress(0.96, "importing: saving")  # the transaction's commit, as the block ends
                files = _keep_rejected(ctx.folder, result)
                # Done with the import itself: a worker dying after the commit leaves it done, not run again.
                return ctx.done_with(session, {
                    **base, **_errors(result), "summary": result.summary, "files": files,
                    "new_patients": result.new_patients, "new_episodes": result.new_episodes,
                    "updated": result.updated, "unchanged": result.unchanged,
                    "consent_withdrawn": len(result.consent_withdrawn), "consent_given": len(result.consent_given),
                    "phones_changed": result.phones_changed, "texts_cancelled": result.texts_cancelled,
                    "rating_changes": result.rating_changes})
        except ImportFileError as exc:
            raise JobError(f"{_in_words(exc)}; nothing was imported") from None
    except ImportFileError as exc:
        failed = True
        raise JobError(f"{_in_words(exc)}; nothing was imported") from None
    finally:
        if not check or failed:  # the upload is deleted when the import ends, or when its check fails
            path.unlink(missing_ok=True)


def _import(session: Session, path: Path, ctx: JobContext, options: dict[str, bool], *, skip_invalid: bool,
            progress):
    return import_discharges(session, path, ctx.settings, skip_invalid=skip_invalid, actor=ctx.owner,
                             progress=progress, **options)


def record_import(session: Session, path: Path, result, *, actor: str, role: str = "cli") -> Job:
    """Put an import made outside the console (``outreach import-discharges``, the demo) in the import history,
    as a finished job with the file's name, SHA-256 and summary (its files stay where the command wrote them)."""
    from ..clock import utcnow

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    now = utcnow()
    job = Job(kind="import", state=JobState.DONE, owner=actor, owner_role=role, file_name=Path(path).name,
              params={"mode": "import", "skip_invalid": bool(result.rejected), "sha256": digest.hexdigest(),
                      "via": "command line"},
              progress=1.0, message=result.summary, attempts=1, created_at=now, started_at=now, finished_at=now,
              result={"file_name": Path(path).name, "sha256": digest.hexdigest(), "mode": "import",
                      **_errors(result), "summary": result.summary, "files": {},
                      "new_patients": result.new_patients, "new_episodes": result.new_episodes,
                      "updated": result.updated, "unchanged": result.unchanged})
    session.add(job)
    return job
