"""Exports of the linked dataset: the console's export job, the data API's export, and the identified export's
audit-before-write rule that ``outreach export --identified`` keeps too.

Every path goes through the same service functions as the CLI (``analysis.dataset.linked_dataset``,
``analysis.export.write`` with its codebook, ``sha256_of``), so a file made in the console, by the API or on the
command line is the same file.

* The console's export is a job (kind ``export``): the data file and its codebook in one zip, in the job's own
  folder (0600), downloaded through the job's page (audited there).  Beside them in the zip, as ``outreach export``
  writes it, the companion of alliance check-ins during treatment (``*.alliance_checkins.*`` and its codebook,
  :mod:`analysis.checkins`, the same pseudonyms); an identified export has no companion (nor on the command line).  The jobs of kind ``export`` are the export
  history: who, when, format, rows and the zip's SHA-256.
* An identified export (``patient_id`` and ``discharge_date`` added) is for administrators only, with a reason;
  :func:`write_identified` commits ``identified_export`` before a byte is written, then
  ``identified_export_written`` with the checksums in the transaction that moves the file into place (or
  ``identified_export_failed``), as the CLI always did.
* The data API (:func:`api_export`) answers with the de-identified data file itself (CSV or Parquet, what
  ``pandas.read_csv`` or R's ``read.csv`` take from a URL), audited as a download.

Row counts shown to people are suppressed like any count (:func:`shown_count`): from 1 to ``SUPPRESS_BELOW - 1``
they read ``<5``.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ..clock import utcnow
from ..config import ConfigError, Settings
from ..db import audit, unit_of_work
from ..logs import error_summary
from ..models import Job
from ..states import JobState
from .queue import JobContext, JobError, handler, jobs_dir, recent, submit

FORMATS = {"csv": "CSV", "parquet": "Parquet", "dta": "Stata (.dta)", "sav": "SPSS (.sav)"}
API_FORMATS = ("csv", "parquet")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
REASON_MAX = 500


class ExportRequestError(ValueError):
    """An export cannot be asked for like this (an unknown format or time point, no reason...): said in words."""


class IdentifiedExportFailed(RuntimeError):
    """An identified export could not be written; ``export_id`` is the audit row that records the attempt (its
    failure is recorded too)."""

    def __init__(self, export_id: int, summary: str):
        super().__init__(summary)
        self.export_id, self.summary = export_id, summary


def shown_count(n: int | None, below: int) -> str:
    """A count as people may see it: 0 and ``below`` or more as they are, 1 to ``below - 1`` as ``<below``."""
    if n is None:
        return "–"
    return f"<{below}" if 0 < n < below else f"{n:,}"


# -- asking for an export ---------------------------------------------------------------------------------------

def check_request(settings: Settings, *, fmt: str, timepoint: str | int | None, identified: bool = False,
                  reason: str | None = None, role: str) -> tuple[str, int | None, str | None]:
    """The export asked for, checked: (format, time point or None, reason or None).  Raises
    ExportRequestError in words, PermissionError when the role may not have it."""
    from ..study.waves import optional_timepoint

    if fmt not in FORMATS:
        raise ExportRequestError(f"choose a format: {', '.join(FORMATS.values())}")
    try:
        point = optional_timepoint(settings, timepoint)
    except ValueError as exc:
        raise ExportRequestError(str(exc)) from None
    if identified:
        if role != "admin":
            raise PermissionError("identified exports are for administrators only")
        reason = (reason or "").strip()
        if not reason:
            raise ExportRequestError("say why identifiers are needed: an identified export needs a reason, "
                                     "which is kept in the audit log")
        if len(reason) > REASON_MAX:
            raise ExportRequestError(f"the reason is longer than {REASON_MAX} characters; say it more briefly")
    else:
        reason = None
    try:
        settings.export_key
    except ConfigError as exc:
        raise ExportRequestError(f"{exc}; the administrator sets it (the pseudonyms are made with it)") from None
    return fmt, point, reason


def start_export(session: Session, settings: Settings, *, fmt: str, timepoint: str | int | None,
                 identified: bool = False, reason: str | None = None, owner: str, owner_role: str,
                 address: str | None) -> Job:
    """Queue an export of the linked dataset (checked first: :func:`check_request`)."""
    fmt, point, reason = check_request(settings, fmt=fmt, timepoint=timepoint, identified=identified, reason=reason,
                                       role=owner_role)
    return submit(session, "export", owner=owner, owner_role=owner_role,
                  params={"format": fmt, "timepoint": point, "identified": bool(identified), "reason": reason,
                          "address": address})


# -- writing ----------------------------------------------------------------------------------------------------

def export_name(fmt: str, timepoint: int | None, identified: bool, at: dt.datetime) -> str:
    """``outreach-export-20261101-0930[-30d][-identified]``: what it is, from the name alone."""
    return (f"outreach-export-{at:%Y%m%d-%H%M}" + (f"-{timepoint}d" if timepoint else "")
            + ("-identified" if identified else ""))


def _private_folder(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Path(tempfile.mkdtemp(prefix=".outreach-export-", dir=parent))  # mkdtemp makes it 0700


def _write_files(df, folder: Path, stem: str, fmt: str, suppress_below: int) -> tuple[Path, Path]:
    """The data file and its codebook in ``folder`` (0600), through ``analysis.export.write`` as the CLI writes."""
    from analysis import export as files

    data = files.write(df, folder / f"{stem}.{fmt}", fmt, private=True, suppress_below=suppress_below)
    return data, files.codebook_path(data)


def _zip(target: Path, members: list[Path]) -> Path:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for member in members:
            bundle.write(member, arcname=member.name)
    return target


def _digests(zip_path: Path, data: Path, codebook: Path) -> dict[str, str]:
    from analysis.export import sha256_of

    return {"sha256": sha256_of(zip_path), "data_sha256": sha256_of(data), "codebook_sha256": sha256_of(codebook)}


def _write_companion(checkins, data: Path, fmt: str, suppress_below: int) -> tuple[Path, Path]:
    """The check-ins' companion of ``data`` and its codebook beside it (0600), as ``outreach export`` writes them."""
    from analysis import export as files
    from analysis.checkins import UNIT, companion_path

    out = files.write(checkins, companion_path(data), fmt, private=True, suppress_below=suppress_below, unit=UNIT)
    return out, files.codebook_path(out)


def write_bundle(df, target: Path, fmt: str, *, suppress_below: int, checkins=None) -> dict[str, str]:
    """The de-identified data file and its codebook zipped into ``target`` (0600), with ``checkins``' companion and
    its codebook beside them when given; returns the SHA-256 of the zip and of each file in it."""
    from analysis.export import sha256_of

    target = Path(target)
    staging = _private_folder(target.parent)
    try:
        data, codebook = _write_files(df, staging, target.stem, fmt, suppress_below)
        extra = [] if checkins is None else list(_write_companion(checkins, data, fmt, suppress_below))
        staged = _zip(staging / target.name, [data, codebook, *extra])
        digests = _digests(staged, data, codebook)
        if extra:
            digests.update(companion_sha256=sha256_of(extra[0]), companion_codebook_sha256=sha256_of(extra[1]))
        os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return digests


def write_identified(sessions: sessionmaker[Session], df, target: Path, fmt: str, *, reason: str,
                     timepoint: int | None, actor: str, suppress_below: int, address: str | None = None,
                     bundle: bool = False, **details: Any) -> dict[str, Any]:
    """An identified export, audited before anything is written (the CLI's and the console's rule).

    1. ``identified_export`` (who, why, the file's path, the row count) is committed first.
    2. The data file and its codebook are written, mode 0600, into a private staging folder beside ``target``
       (``bundle``: and zipped, ``target`` being the zip).
    3. In one transaction, ``identified_export_written`` (the same path and row count and the SHA-256 of each
       file, ``export_id`` pointing at the first row) is inserted and the files are moved into place before it
       commits.  The audit table only ever grows, so the outcome is a second row rather than a change to the
       first.
    4. If anything fails, ``identified_export_failed`` (the error's type and a cleaned summary) is committed
       instead, nothing is left at ``target``, and IdentifiedExportFailed is raised.

    Returns ``export_id`` and the checksums."""
    from analysis import export as files

    target = Path(target).absolute()
    paths = {"file": str(target)} if bundle else {"file": str(target), "codebook": str(files.codebook_path(target))}
    with unit_of_work(sessions) as session:
        event = audit(session, "identified_export", actor=actor, address=address, reason=reason, rows=len(df),
                      timepoint=timepoint, format=fmt, **paths, **details)
        session.flush()
        export_id = event.id
    staging: Path | None = None
    placed: list[Path] = []
    try:
        from ..csvsafe import private_files

        with private_files():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".outreach-export-", dir=target.parent))
        if bundle:
            data, codebook = _write_files(df, staging, target.stem, fmt, suppress_below)
            staged = _zip(staging / target.name, [data, codebook])
            digests = _digests(staged, data, codebook)
            moves = [(staged, target)]
        else:
            staged = files.write(df, staging / target.name, fmt, private=True, suppress_below=suppress_below)
            digests = {"sha256": files.sha256_of(staged),
                       "codebook_sha256": files.sha256_of(files.codebook_path(staged))}
            moves = [(files.codebook_path(staged), files.codebook_path(target)), (staged, target)]
        with unit_of_work(sessions) as session:
            audit(session, "identified_export_written", actor=actor, address=address, export_id=export_id,
                  rows=len(df), **paths, **digests)
            session.flush()  # the row is in the transaction before the files are in place
            for source, dest in moves:
                os.replace(source, dest)
                placed.append(dest)
    except Exception as exc:
        for path in placed:  # the transaction that recorded them did not commit
            path.unlink(missing_ok=True)
        with unit_of_work(sessions) as session:
            audit(session, "identified_export_failed", actor=actor, address=address, export_id=export_id,
                  error=error_summary(exc), **paths)
        raise IdentifiedExportFailed(export_id, error_summary(exc)) from exc
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return {"export_id": export_id, **digests}


# -- the console's job ------------------------------------------------------------------------------------------

@handler("export")
def run_export(ctx: JobContext) -> dict[str, Any]:
    from analysis.checkins import checkins_dataset
    from analysis.dataset import linked_dataset

    p = ctx.params
    fmt, timepoint, identified, reason = p["format"], p.get("timepoint"), bool(p.get("identified")), p.get("reason")
    below = ctx.settings.suppress_below
    if identified and ctx.owner_role != "admin":  # checked when asked; again here, in case the role was changed
        raise JobError("identified exports are for administrators only; nothing was written")
    try:
        key = ctx.settings.export_key
    except ConfigError as exc:
        raise JobError(f"{exc}; the administrator sets it; nothing was written") from None
    from .reports import Ticker

    with Ticker(ctx, 0.05, "reading the linked dataset"):  # progress words at least every 2 s
        df = linked_dataset(ctx.engine, key, timepoint=timepoint, identified=identified)
        checkins = None if identified else checkins_dataset(ctx.engine, key)  # every stay's, as the CLI writes
    rows = len(df)
    ctx.progress(0.6, f"writing the {FORMATS[fmt]} file and its codebook ({shown_count(rows, below)} rows)")
    target = ctx.folder / f"{export_name(fmt, timepoint, identified, utcnow())}.zip"
    if identified:
        try:
            digests = write_identified(ctx.sessions, df, target, fmt, reason=reason, timepoint=timepoint,
                                       actor=ctx.owner, suppress_below=below, address=p.get("address"), bundle=True,
                                       job_id=ctx.job_id)
        except IdentifiedExportFailed as exc:
            raise JobError(f"the identified export could not be written ({exc.summary}); audit row "
                           f"{exc.export_id} records the attempt and its failure") from None
    else:
        digests = write_bundle(df, target, fmt, suppress_below=below, checkins=checkins)
        with unit_of_work(ctx.sessions) as session:
            audit(session, "export_written", actor=ctx.owner, address=p.get("address"), job_id=ctx.job_id,
                  format=fmt, timepoint=timepoint, rows=rows, checkin_rows=len(checkins), file=target.name,
                  **digests)
    ctx.progress(1.0, "done")
    where = f"the {timepoint}-day time point" if timepoint else "every time point"
    companion = "" if checkins is None else (f", and {shown_count(len(checkins), below)} check-in rows during "
                                             "treatment with theirs beside them")
    return {"summary": f"{'identified' if identified else 'de-identified'} {FORMATS[fmt]} export of {where}: "
                       f"{shown_count(rows, below)} rows with the codebook{companion}, in one zip",
            "files": {"zip": target.name}, "format": fmt, "timepoint": timepoint, "identified": identified,
            "rows": rows, **({} if checkins is None else {"checkin_rows": len(checkins)}), "rows_shown": shown_count(rows, below), "sha256": digests["sha256"],
            "file_name": target.name}


# -- the history --------------------------------------------------------------------------------------------------

@dataclass
class ExportRow:
    job_id: int
    owner: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    state: str
    format: str
    timepoint: int | None
    identified: bool
    rows: str
    sha256: str | None
    error: str | None
    files_deleted: bool


def export_history(session: Session, settings: Settings, role: str, limit: int = 100) -> list[ExportRow]:
    """The exports so far, newest first: who, when, format, rows (suppressed) and the zip's SHA-256.  Identified
    exports are listed for administrators only (their reasons are in the audit log)."""
    out = []
    for job in recent(session, "export", limit=limit):
        params, result = job.params or {}, job.result or {}
        if params.get("identified") and role != "admin":
            continue
        out.append(ExportRow(
            job_id=job.id, owner=job.owner, created_at=job.created_at, finished_at=job.finished_at, state=job.state,
            format=FORMATS.get(params.get("format"), params.get("format") or ""), timepoint=params.get("timepoint"),
            identified=bool(params.get("identified")),
            rows=shown_count(result["rows"], settings.suppress_below) if job.state == JobState.DONE else "–",
            sha256=result.get("sha256"), error=job.error, files_deleted=job.files_deleted_at is not None))
    return out


# -- the data API -----------------------------------------------------------------------------------------------

@dataclass
class ApiExport:
    content: bytes
    media_type: str
    file_name: str
    rows: int
    sha256: str


def api_export(engine, sessions: sessionmaker[Session], settings: Settings, *, fmt: str, timepoint: str | None,
               actor: str, role: str, token_id: int, address: str | None) -> ApiExport:
    """The de-identified data file the console's export zips (never identified: a token cannot ask for it),
    audited as a download (``api_export_downloaded``: who, which token, format, time point, rows, SHA-256)."""
    from analysis.dataset import linked_dataset
    from analysis.export import sha256_of

    if fmt not in API_FORMATS:
        raise ExportRequestError("format must be csv or parquet")
    fmt, point, _ = check_request(settings, fmt=fmt, timepoint=timepoint, role=role)
    df = linked_dataset(engine, settings.export_key, timepoint=point, identified=False)
    name = export_name(fmt, point, False, utcnow())
    staging = _private_folder(jobs_dir(settings))  # the service's own folder for files, not the shared /tmp
    try:
        data, _codebook = _write_files(df, staging, name, fmt, settings.suppress_below)
        content, digest = data.read_bytes(), sha256_of(data)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with unit_of_work(sessions) as session:
        audit(session, "api_export_downloaded", actor=actor, address=address, token_id=token_id, format=fmt,
              timepoint=point, rows=len(df), sha256=digest, bytes=len(content))
    return ApiExport(content, MEDIA_TYPES[fmt], f"{name}.{fmt}", len(df), digest)


def api_codebook(settings: Settings) -> bytes:
    """The codebook of the de-identified export (no data: the variables, their labels and codes, the rules)."""
    from analysis.dataset import empty
    from analysis.export import codebook
    from analysis.queries import COVARIATES

    from ..csvsafe import safe_frame

    frame = codebook(empty(covariates=COVARIATES), settings.suppress_below)  # every column the export can have
    return safe_frame(frame).to_csv(index=False).encode("utf-8")
