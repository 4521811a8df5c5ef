"""The jobs table as a queue: the console submits, the worker claims, runs and finishes.

A job is claimed as a text is (``outreach.messaging.sender``): ``SELECT … FOR UPDATE SKIP LOCKED`` on
PostgreSQL (SQLite's one writer at a time gives the same), so two workers never run the same job.  While it
runs its worker writes a heartbeat every few seconds (and with every progress report); a running job whose
heartbeat is older than ``STALE_AFTER`` lost its worker: each kind of job runs in one database transaction,
so nothing of it was written, and it is taken up again once (``MAX_ATTEMPTS``), then marked failed with that
reason in words.  A job that writes (an import, a launch) marks itself done in that same transaction
(:meth:`JobContext.done_with`): a worker that dies after its commit leaves the job done, never to be run twice
(a second launch would invite more patients than the coordinator typed).

Progress is written in its own short transaction (the work's own transaction is not committed until the
end), at most every ``PROGRESS_EVERY`` seconds (a report that comes sooner is written when that time is up, unless
a newer one replaces it), so the job's page can show it while the work goes on.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from ..clock import utcnow
from ..config import Settings
from ..db import audit, is_unavailable, unit_of_work
from ..logs import error_summary
from ..models import Job
from ..states import JobState

log = logging.getLogger(__name__)

STALE_AFTER = dt.timedelta(seconds=60)  # a running job without a heartbeat this long lost its worker
BEAT_EVERY = 5.0  # seconds between heartbeats of a running job
PROGRESS_EVERY = 0.5  # seconds: progress reports closer together than this are not written
MAX_ATTEMPTS = 2  # a job whose worker died is taken up again once, then failed
_PROJECT = Path(__file__).resolve().parents[2]


class JobError(Exception):
    """A job cannot do what was asked, for a reason its owner can act on: the message is shown as it is, so it
    must be words without patient data."""


@dataclass
class JobContext:
    """What a job's handler gets: its parameters, its own folder for files, and a progress reporter."""

    job_id: int
    kind: str
    owner: str
    owner_role: str
    params: dict[str, Any]
    file_name: str | None
    folder: Path
    settings: Settings
    sessions: sessionmaker[Session]
    report: Callable[[float, str | None], None] = field(repr=False)
    worker: str = ""
    finishing: Callable[[], None] = field(default=lambda: None, repr=False)  # stops the heartbeat's row writes

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Say how far the job is (0 to 1) and, optionally, what it is doing, in words."""
        self.report(fraction, message)

    def done_with(self, session: Session, result: dict[str, Any]) -> dict[str, Any]:
        """Mark the job done with ``result`` in the work's own transaction (``session``), so that the work and
        its being done are committed together.  Call it last, as the transaction ends: the job's row stays
        locked until then (progress reports after it are dropped).  Returns ``result``.

        Raises JobError, and the work is rolled back with the transaction, when this worker no longer holds the
        job (it was taken for dead and another worker has it): the work is done once, by whoever marks it."""
        self.finishing()  # the heartbeat writes no more: it would wait for this transaction's lock on the row
        marked = session.execute(update(Job).where(Job.id == self.job_id, Job.claimed_by == self.worker,
                                                   Job.state == JobState.RUNNING)
                                 .values(state=JobState.DONE, result=result, progress=1.0,
                                         message=result.get("summary"), finished_at=utcnow(), heartbeat_at=utcnow())
                                 .execution_options(synchronize_session=False)).rowcount
        if not marked:
            raise JobError("this try was stopped: the job was taken for abandoned and given to another worker "
                           "(nothing of this try was kept)")
        return result

    @property
    def engine(self):
        return self.sessions.kw["bind"]


Handler = Callable[[JobContext], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}  # kind -> handler, filled by outreach.jobs.kinds


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


# -- files ------------------------------------------------------------------------------------------------------

def jobs_dir(settings: Settings) -> Path:
    configured = settings.optional("JOBS_DIR")
    return Path(configured).expanduser().absolute() if configured else _PROJECT / "instance" / "jobs"


def job_folder(settings: Settings, job_id: int) -> Path:
    """The job's own folder (mode 0700; its files are made 0600 as they are written)."""
    root = jobs_dir(settings)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = root / str(job_id)
    folder.mkdir(exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def make_private(folder: Path) -> None:
    """Every file under ``folder`` readable by its owner only (a library may have written one with the
    process's umask; the worker's umask is not changed, as it runs other threads).

    The job's heartbeat thread is still writing its progress file (a temporary file renamed into place) while
    this runs, so a path listed a moment ago may be gone: that is skipped, not a failed job."""
    for path in folder.rglob("*"):
        try:
            os.chmod(path, 0o700 if path.is_dir() else 0o600)
        except FileNotFoundError:
            continue


def result_file(settings: Settings, job: Job, name: str) -> Path | None:
    """A file the job made, by its name in ``job.result["files"]``, if it is still there."""
    files = (job.result or {}).get("files", {})
    if name not in files or job.files_deleted_at is not None:
        return None
    path = jobs_dir(settings) / str(job.id) / files[name]
    return path if path.is_file() else None


# -- the console's side ---------------------------------------------------------------------------------------

def submit(session: Session, kind: str, *, owner: str, owner_role: str, params: dict[str, Any] | None = None,
           file_name: str | None = None) -> Job:
    """Queue a job; the worker picks it up within a second or two.  The caller's transaction commits it."""
    if kind not in HANDLERS:
        raise ValueError(f"unknown kind of job {kind!r}")
    job = Job(kind=kind, state=JobState.QUEUED, owner=owner, owner_role=owner_role, params=params or {},
              file_name=file_name, progress=0.0, message="waiting for the worker", attempts=0, created_at=utcnow())
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


# Which roles may see a kind of job at all (checked at every look, so a role taken away takes the files too), and
# the kinds that are the study team's shared work (any member whose role may do them sees them; an export is its
# owner's).
KIND_ROLES = {"import": frozenset({"admin", "coordinator"}), "launch": frozenset({"admin", "coordinator"}),
              "export": frozenset({"admin", "researcher"}), "report": frozenset({"admin", "researcher"})}
SHARED_KINDS = frozenset({"import", "launch", "report"})


def visible_to(job: Job, user_email: str, role: str) -> bool:
    """Whether this user may open the job's page and files now: an administrator sees every job; anyone else only
    while their role may do that kind of work (a coordinator who became a researcher no longer sees the imports'
    rejected rows), never an identified export, and an export only their own."""
    if role == "admin":
        return True
    roles = KIND_ROLES.get(job.kind)
    if roles is not None and role not in roles:
        return False
    if (job.params or {}).get("identified"):
        return False
    return job.kind in SHARED_KINDS or job.owner == user_email


def recent(session: Session, kind: str, limit: int = 50) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id.desc()).limit(limit)))


# -- the worker's side ----------------------------------------------------------------------------------------

def claim(sessions: sessionmaker[Session], worker: str) -> int | None:
    """Take the oldest queued job for this worker, or None."""
    now = utcnow()
    with unit_of_work(sessions) as s:
        job = s.scalars(select(Job).where(Job.state == JobState.QUEUED).order_by(Job.id).limit(1)
                        .with_for_update(skip_locked=True)).first()
        if job is None:
            return None
        job.state, job.claimed_by, job.heartbeat_at = JobState.RUNNING, worker, now
        job.started_at, job.attempts = now, (job.attempts or 0) + 1
        job.message = "started"
        return job.id


PROGRESS_FILE = ".progress.json"  # the running job's heartbeat and progress, also kept beside its files


def _file_beat(settings: Settings | None, job_id: int) -> dict[str, Any] | None:
    """What the running job's worker last wrote in its folder (None: nothing, or unreadable)."""
    if settings is None:
        return None
    try:
        return json.loads((jobs_dir(settings) / str(job_id) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def live_progress(settings: Settings, job: Job) -> tuple[float, str | None]:
    """A running job's progress and message: the row's, or the newer ones its worker wrote in its folder while
    the job's own transaction held the database (SQLite has one writer at a time)."""
    beat = _file_beat(settings, job.id) if job.state == JobState.RUNNING else None
    if beat and beat.get("progress", 0) >= (job.progress or 0):
        return beat["progress"], beat.get("message") or job.message
    return job.progress or 0.0, job.message


def recover(sessions: sessionmaker[Session], now: dt.datetime | None = None,
            settings: Settings | None = None) -> list[int]:
    """Running jobs whose worker stopped (no heartbeat for STALE_AFTER, in the row or in the job's folder):
    queued again, or failed after MAX_ATTEMPTS.  Returns their ids."""
    now = now or utcnow()
    with unit_of_work(sessions) as s:
        stale = s.scalars(select(Job).where(Job.state == JobState.RUNNING, Job.heartbeat_at < now - STALE_AFTER)
                          .with_for_update(skip_locked=True)).all()
        alive = {j.id for j in stale if (beat := _file_beat(settings, j.id)) is not None
                 and now - dt.datetime.fromisoformat(beat["at"]) <= STALE_AFTER}
        stale = [j for j in stale if j.id not in alive]
        for job in stale:
            if (job.attempts or 0) < MAX_ATTEMPTS:
                job.state, job.claimed_by, job.progress = JobState.QUEUED, None, 0.0
                job.message = "its worker stopped; it starts again (nothing of the first try was kept)"
            else:
                job.state, job.finished_at = JobState.FAILED, now
                job.error = (f"the worker running it stopped {job.attempts} times (nothing of it was kept); "
                             "start it again, and tell the administrator if it happens again")
                job.message = None
        return [j.id for j in stale]


class _Beat:
    """Writes the running job's heartbeat every BEAT_EVERY seconds, and its progress when it is reported (at most
    every PROGRESS_EVERY seconds: the newest report of a shorter interval is written at its end, by the beat's
    thread, so a job that reports and then works on for long does not show an older step meanwhile): in the
    job's row, and in its folder (PROGRESS_FILE), which the page and another worker read while the job's own
    transaction holds the database (SQLite lets one writer in at a time)."""

    def __init__(self, sessions: sessionmaker[Session], job_id: int, worker: str, folder: Path):
        self.sessions, self.job_id, self.worker, self.folder = sessions, job_id, worker, folder
        # On SQLite the job's own transaction holds the one write lock until it ends: a write here would wait for
        # it (and hold the job back), so the folder alone carries the heartbeat and the progress meanwhile.
        self.in_database = sessions.kw["bind"].dialect.name != "sqlite"
        self.stop = threading.Event()
        self.last_written = 0.0
        self.pending: dict[str, Any] | None = None  # a report not written yet, held back by PROGRESS_EVERY
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {"progress": 0.0, "message": None}
        self.said_locked = False
        self.finished = threading.Event()  # the job marked itself done in its own transaction: no more row writes
        self.thread = threading.Thread(target=self._run, name=f"job-{job_id}-beat", daemon=True)

    def _write_file(self) -> None:
        try:
            tmp = self.folder / f"{PROGRESS_FILE}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({**self.state, "at": utcnow().isoformat()}, fh)
            os.replace(tmp, self.folder / PROGRESS_FILE)
        except OSError:
            log.warning("job %s: could not write its progress file", self.job_id)

    def _write(self, **values: Any) -> None:
        with self.lock:
            self.state.update(values)
            self._write_file()
            if not self.in_database or self.finished.is_set():
                return
            try:
                with unit_of_work(self.sessions) as s:
                    # never wait long for the row: the job's own transaction may hold it (JobContext.done_with)
                    s.execute(text("SET LOCAL lock_timeout = '2s'"))
                    s.execute(update(Job).where(Job.id == self.job_id, Job.claimed_by == self.worker,
                                                Job.state == JobState.RUNNING)
                              .values(heartbeat_at=utcnow(), **values))
            except Exception as exc:  # a missed heartbeat or progress report must not end the job
                if not self.said_locked:  # SQLite: the job's own transaction holds the database; the file has it
                    self.said_locked = True
                    log.info("job %s: its progress is kept in its folder while the database is busy (%s)",
                             self.job_id, type(exc).__name__)

    def _run(self) -> None:
        beat = time.monotonic()
        while not self.stop.wait(PROGRESS_EVERY / 2):
            now = time.monotonic()
            with self.lock:
                values, due = self.pending, self.pending is not None and now - self.last_written >= PROGRESS_EVERY
                if due:
                    self.pending, self.last_written = None, now
            if due or now - beat >= BEAT_EVERY:
                beat = now
                self._write(**(values if due else {}))

    def report(self, fraction: float, message: str | None = None) -> None:
        if self.finished.is_set():  # after done_with: the job's row is the job's own transaction's until it ends
            return
        values: dict[str, Any] = {"progress": max(0.0, min(1.0, float(fraction)))}
        if message is not None:
            values["message"] = message[:500]
        now = time.monotonic()
        with self.lock:
            if now - self.last_written < PROGRESS_EVERY and fraction < 1.0:
                self.pending = {**(self.pending or {}), **values}  # the beat's thread writes it when it is time
                return
            self.last_written, self.pending = now, None
        self._write(**values)


def run_claimed(sessions: sessionmaker[Session], settings: Settings, job_id: int, worker: str) -> str:
    """Run one claimed job to its end; returns its final state.  A handler's JobError is the owner's to read
    (shown as it is); any other failure is shown as its type and a cleaned first line, and logged."""
    with unit_of_work(sessions) as s:
        job = s.get(Job, job_id)
        ctx_values = dict(job_id=job.id, kind=job.kind, owner=job.owner, owner_role=job.owner_role,
                          params=dict(job.params or {}), file_name=job.file_name)
    folder = job_folder(settings, job_id)
    beat = _Beat(sessions, job_id, worker, folder)
    ctx = JobContext(**ctx_values, folder=folder, settings=settings, sessions=sessions, report=beat.report,
                     worker=worker, finishing=beat.finished.set)
    beat.thread.start()
    started = time.monotonic()
    try:
        result = HANDLERS[ctx.kind](ctx)
        make_private(ctx.folder)
        state, values = JobState.DONE, {"result": result, "progress": 1.0, "message": result.get("summary")}
    except JobError as exc:
        state, values = JobState.FAILED, {"error": str(exc)[:2000], "message": None}
    except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
        log.exception("job %s (%s) failed", job_id, ctx.kind)
        state, values = JobState.FAILED, {"error": f"it stopped on an unexpected error ({error_summary(exc)}); "
                                                   "the administrator can find it in the worker's log",
                                          "message": None}
    finally:
        beat.stop.set()
        beat.thread.join(timeout=BEAT_EVERY + 1)
    with beat.lock, unit_of_work(sessions) as s:  # a job its handler marked done (done_with) stays done
        s.execute(update(Job).where(Job.id == job_id, Job.claimed_by == worker, Job.state == JobState.RUNNING)
                  .values(state=state, finished_at=utcnow(), heartbeat_at=utcnow(), **values))
    (folder / PROGRESS_FILE).unlink(missing_ok=True)
    log.info("job %s (%s) %s in %.1f s", job_id, ctx.kind, state, time.monotonic() - started)
    return state


def run_pending(sessions: sessionmaker[Session], settings: Settings, worker: str, *, limit: int | None = None) -> int:
    """Run queued jobs one after another until none is left (or ``limit``); returns how many ran.  The worker's
    job thread calls it; tests and ``outreach worker --once`` call it directly."""
    from . import kinds  # noqa: F401 - registers the handlers

    recover(sessions, settings=settings)
    ran = 0
    while limit is None or ran < limit:
        job_id = claim(sessions, worker)
        if job_id is None:
            break
        run_claimed(sessions, settings, job_id, worker)
        ran += 1
    return ran


def delete_old_files(sessions: sessionmaker[Session], settings: Settings, now: dt.datetime | None = None) -> int:
    """Delete the folders of jobs finished more than JOB_RESULT_DAYS ago (exports, reports, rejected rows, an
    upload nobody imported); the job's row stays, for the history.  Returns how many folders were deleted."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=settings.job_result_days)
    root = jobs_dir(settings)
    with unit_of_work(sessions) as s:
        old = s.scalars(select(Job).where(Job.state.in_(JobState.FINISHED), Job.finished_at < cutoff,
                                          Job.files_deleted_at.is_(None))).all()
        for job in old:
            shutil.rmtree(root / str(job.id), ignore_errors=True)
            job.files_deleted_at = now
        return len(old)


class JobRunner:
    """The worker's job thread: runs queued jobs beside the sending loop (a long import does not hold texts
    back), and once an hour deletes result files past JOB_RESULT_DAYS."""

    IDLE = 1.0

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, worker: str):
        self.sessions, self.settings, self.worker = sessions, settings, worker
        self.stopping = threading.Event()
        # started in the context it is made in: a demo's or a test's clock (outreach.clock) holds in the thread too
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,), name="jobs",
                                       daemon=True)
        self.last_cleanup = 0.0

    def start(self) -> "JobRunner":
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                if time.monotonic() - self.last_cleanup > 3600:
                    delete_old_files(self.sessions, self.settings)
                    self.last_cleanup = time.monotonic()
                ran = run_pending(self.sessions, self.settings, self.worker, limit=1)
            except Exception as exc:  # the database went away...: the sending loop says so; try again shortly
                if not is_unavailable(exc):
                    log.warning("jobs: could not look for work (%s); trying again", error_summary(exc))
                ran = 0
            if not ran:
                self.stopping.wait(self.IDLE)

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the job under way (its transaction ends it), waiting up to ``timeout`` seconds."""
        self.stopping.set()
        self.thread.join(timeout)


# -- what the console shows ---------------------------------------------------------------------------------------

def job_for(session: Session, job_id: int, email: str, role: str) -> Job | None:
    """The job, if this user may see it (its owner, or an administrator); None otherwise."""
    job = session.get(Job, job_id)
    return job if job is not None and visible_to(job, email, role) else None


def download(session: Session, settings: Settings, job_id: int, name: str, *, email: str, role: str,
             address: str | None) -> tuple[Job, Path] | None:
    """A result file of a job this user may see, audited as a download (who, which job, which file, its
    SHA-256); None when there is no such file (never made, or deleted after JOB_RESULT_DAYS)."""
    job = job_for(session, job_id, email, role)
    path = result_file(settings, job, name) if job is not None else None
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    audit(session, "job_file_downloaded", actor=email, address=address, job_id=job.id, kind=job.kind, file=name,
          file_name=path.name, sha256=digest.hexdigest(), bytes=path.stat().st_size)
    return job, path
