"""The statistical report generated from the console, as a job (kind ``report``): the same functions as
``outreach report`` (``analysis.report.report_dataset`` and ``write_report``), the report folder written in the
job's own folder and zipped for download.

The report page reads ``report.html`` from there (:func:`report_body`): its figures are embedded as data URIs, so
the page needs nothing else.  How many participants it is from is the report's own suppressed count
(``participants.targeted`` in stats.json: a number, ``<5`` or ``x``), never the raw one.

A report is de-identified and suppressed, so every researcher and administrator may read any report; the jobs of
kind ``report`` are the history of reports.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..config import Settings
from ..db import audit
from ..models import Job
from ..states import JobState
from .queue import JobContext, handler, jobs_dir, recent, submit

FOLDER = "report"
ZIP = "report.zip"
TICK = 1.5  # seconds between the words "still computing" while the statistics run (progress at least every 2 s)


class ReportRequestError(ValueError):
    """A report cannot be asked for like this (an unknown time point): said in words."""


def start_report(session: Session, settings: Settings, *, timepoint: str | int | None, owner: str, owner_role: str,
                 address: str | None) -> Job:
    """Queue the report, for every time point or one."""
    from ..study.waves import optional_timepoint

    try:
        point = optional_timepoint(settings, timepoint)
    except ValueError as exc:
        raise ReportRequestError(str(exc)) from None
    return submit(session, "report", owner=owner, owner_role=owner_role,
                  params={"timepoint": point, "address": address})


def participants_text(value: Any) -> str:
    """'from 120 participants', 'from <5 participants', or that their number is hidden (suppressed)."""
    if value == "x":
        return "from a number of participants that is hidden (with the report's other counts it would give a " \
               "small count away)"
    if value in (None, 0):
        return "from no participants yet"
    if isinstance(value, int):
        return f"from {value:,} participant{'s' if value != 1 else ''}"
    return f"from {value} participants"  # "<5": already suppressed


class Ticker:
    """Says every TICK seconds how long the statistics have been running (the analysis has no progress hook)."""

    def __init__(self, ctx: JobContext, fraction: float, words: str):
        self.ctx, self.fraction, self.words = ctx, fraction, words
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, name=f"job-{ctx.job_id}-ticker", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(TICK):
            self.ctx.progress(self.fraction, f"{self.words} ({time.monotonic() - self.started:.0f} s so far)")

    def __enter__(self) -> "Ticker":
        self.ctx.progress(self.fraction, self.words)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=TICK + 1)


def _zip_folder(folder: Path, target: Path) -> Path:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, arcname=f"{FOLDER}/{path.relative_to(folder)}")
    return target


@handler("report")
def run_report(ctx: JobContext) -> dict[str, Any]:
    from analysis.export import sha256_of
    from analysis.report import report_data, write_report

    timepoint = ctx.params.get("timepoint")
    ctx.progress(0.05, "reading the linked dataset")
    df, checkins = report_data(ctx.engine, timepoint=timepoint)  # no EXPORT_KEY: the report shows no pseudonyms
    out = ctx.folder / FOLDER
    out.mkdir(exist_ok=True, mode=0o700)
    with Ticker(ctx, 0.3, "computing the statistics and drawing the figures"):
        payload = write_report(df, out, suppress_below=ctx.settings.suppress_below, timepoint=timepoint,
                               primary_timepoint=ctx.settings.primary_timepoint, checkins=checkins)
    ctx.progress(0.9, "packing the report folder")
    target = _zip_folder(out, ctx.folder / ZIP)
    participants = (payload.get("participants") or {}).get("targeted", 0) if len(df) else 0
    where = f"the {timepoint}-day time point" if timepoint else "every time point"
    return {"summary": f"report on {where} generated {participants_text(participants)}, with "
                       f"{len(payload.get('figures', []))} figure(s)",
            "files": {ZIP: ZIP}, "timepoint": timepoint, "participants": participants,
            "figures": list(payload.get("figures", [])), "generated_at": utcnow().isoformat(timespec="seconds"),
            "sha256": sha256_of(target)}


# -- reading a report -----------------------------------------------------------------------------------------------

@dataclass
class ReportView:
    job: Job
    participants: str
    timepoint: int | None
    generated_at: dt.datetime | None
    figures: list[str]
    body: str | None  # report.html's body, headings one level down; None when its files were deleted


def report_jobs(session: Session, limit: int = 50) -> list[Job]:
    return recent(session, "report", limit=limit)


def latest_report(session: Session) -> Job | None:
    return session.scalars(select(Job).where(Job.kind == "report", Job.state == JobState.DONE)
                           .order_by(Job.finished_at.desc(), Job.id.desc()).limit(1)).first()


def report_body(html_text: str) -> str:
    """What is inside ``<body>`` of report.html (written by ``analysis.report``, every text escaped there), its
    headings one level down so that it sits under the page's own heading."""
    match = re.search(r"<body[^>]*>(.*)</body>", html_text, re.S)
    body = match.group(1) if match else ""
    return re.sub(r"<(/?)h([1-5])>", lambda m: f"<{m.group(1)}h{int(m.group(2)) + 1}>", body)


def report_view(session: Session, settings: Settings, job_id: int | None = None) -> ReportView | None:
    """A finished report (the latest when ``job_id`` is None) ready to be shown, or None."""
    job = latest_report(session) if job_id is None else session.get(Job, job_id)
    if job is None or job.kind != "report" or job.state != JobState.DONE:
        return None
    result = job.result or {}
    path = jobs_dir(settings) / str(job.id) / FOLDER / "report.html"
    body = report_body(path.read_text(encoding="utf-8")) \
        if job.files_deleted_at is None and path.is_file() else None
    generated = result.get("generated_at")
    return ReportView(job=job, participants=participants_text(result.get("participants")),
                      timepoint=result.get("timepoint"),
                      generated_at=dt.datetime.fromisoformat(generated) if generated else job.finished_at,
                      figures=list(result.get("figures", [])), body=body)


def report_zip(session: Session, settings: Settings, job_id: int, *, actor: str, address: str | None) -> Path | None:
    """The report folder's zip of a finished report, audited as a download (``report_downloaded``); None when
    there is none (or its files were deleted after JOB_RESULT_DAYS)."""
    from analysis.export import sha256_of

    job = session.get(Job, job_id)
    if job is None or job.kind != "report" or job.state != JobState.DONE or job.files_deleted_at is not None:
        return None
    path = jobs_dir(settings) / str(job.id) / ZIP
    if not path.is_file():
        return None
    audit(session, "report_downloaded", actor=actor, address=address, job_id=job.id, file=ZIP,
          sha256=sha256_of(path), bytes=path.stat().st_size)
    return path

