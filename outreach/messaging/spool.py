"""The inbound spool: texts and status callbacks received while the database cannot be reached.

``POST /twilio/sms`` must never lose a patient's text because PostgreSQL is restarting or failing over
(Twilio does not retry a webhook that answered with an error).  When storing fails because the database
is unavailable, the signed request's fields and the time of receipt are written here, one file per
request, and the webhook answers 200 (with the safety reply or the HELP text when the text calls for one:
:func:`conversations.engine.answer_unread`).  As soon as the database answers again the spool is drained:
every file is stored and applied in the order received (the file names sort in arrival order), then
removed.

Durability: a file is written under ``tmp/``, flushed and fsynced, then renamed into the spool and the
folder fsynced, before the webhook answers; a crash leaves either a whole file or none.  Several gunicorn
workers and threads write at once without coordination (names are unique: nanosecond time, process,
thread, a per-process counter).  One drainer at a time per spool folder (an ``flock``), across processes.

Crash safety of draining: a file is removed only after its request was stored and applied.  A process
killed in between leaves the file; the next drain stores it again, which the MessageSid makes a repeat
(applied once), and a status callback only ever moves a status forward.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

log = logging.getLogger(__name__)

SUFFIX = ".json"
_counter = itertools.count()
_PROJECT = Path(__file__).resolve().parents[2]


def default_dir() -> Path:
    """The project's ``instance/spool`` folder (Flask's instance folder convention)."""
    return _PROJECT / "instance" / "spool"


def spool_dir(settings) -> Path:
    configured = settings.optional("SPOOL_DIR")
    return Path(configured).expanduser().absolute() if configured else default_dir()


@dataclass(frozen=True)
class Spooled:
    path: Path
    kind: str  # "sms" | "status"
    form: dict[str, str]
    received_at: dt.datetime  # UTC, naive (as the database stores times)
    answered: list[str]  # what the webhook answered at once (safety reply, HELP text)
    after_store: bool = False  # the text was stored before the database went away (it may have been applied)


class SpoolError(OSError):
    """The spool cannot be written (no folder, a full or read-only disk)."""


class Spool:
    def __init__(self, directory: Path | str):
        self.dir = Path(directory)
        self._tmp = self.dir / "tmp"

    # -- writing (the webhook, during an outage) ----------------------------------------------------------
    def put(self, kind: str, form: Mapping[str, str], received_at: dt.datetime,
            answered: list[str] | None = None, after_store: bool = False) -> Path:
        """Write one request durably; its path.  Raises :class:`SpoolError` when it cannot."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{threading.get_ident() % 1_000_000:06d}-{next(_counter):09d}"
        record = {"kind": kind, "form": dict(form), "received_at": received_at.isoformat(),
                  "answered": list(answered or []), "after_store": after_store}
        data = json.dumps(record, ensure_ascii=False).encode("utf-8")
        try:
            self._make_dirs()
            tmp = self._tmp / (name + SUFFIX)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            final = self.dir / (name + SUFFIX)
            os.rename(tmp, final)
            self._fsync_dir()
        except OSError as exc:
            raise SpoolError(exc.errno, f"the spool folder {self.dir} cannot be written: {exc.strerror}") from None
        return final

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _make_dirs(self) -> None:
        """The spool folder and its tmp/, readable by their owner only (they hold numbers and texts)."""
        if not self._tmp.is_dir():
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            self.dir.mkdir(exist_ok=True, mode=0o700)
            self._tmp.mkdir(exist_ok=True, mode=0o700)

    def writable(self) -> bool:
        """Could a request be spooled now?  (Creates the folder if needed.)"""
        try:
            self._make_dirs()
            return os.access(self._tmp, os.W_OK) and os.access(self.dir, os.W_OK)
        except OSError:
            return False

    # -- reading ------------------------------------------------------------------------------------------
    def paths(self) -> list[Path]:
        """The spooled requests, oldest first."""
        try:
            with os.scandir(self.dir) as entries:
                names = [e.name for e in entries if e.name.endswith(SUFFIX) and e.is_file()]
        except OSError:  # no folder yet (nothing spooled), or not a folder
            return []
        return [self.dir / n for n in sorted(names)]

    def has_any(self) -> bool:
        """Cheap: is anything spooled?  (The webhook asks on every request.)"""
        try:
            with os.scandir(self.dir) as entries:
                return any(e.name.endswith(SUFFIX) for e in entries)
        except OSError:
            return False

    def depth(self) -> tuple[int, dt.datetime | None]:
        """How many requests wait, and when the oldest was received (UTC)."""
        paths = self.paths()
        oldest = None
        for path in paths[:1]:
            with contextlib.suppress(OSError, ValueError, KeyError):
                oldest = self.read(path).received_at
        return len(paths), oldest

    def set_aside(self) -> list[Path]:
        """Requests that could not be read or applied (``.bad``): kept for a person to look at."""
        try:
            return sorted(p for p in self.dir.iterdir() if p.suffix == ".bad")
        except OSError:  # no folder yet (nothing spooled), or not a folder
            return []

    @staticmethod
    def read(path: Path) -> Spooled:
        record = json.loads(path.read_text("utf-8"))
        return Spooled(path, record["kind"], record["form"], dt.datetime.fromisoformat(record["received_at"]),
                       record.get("answered") or [], bool(record.get("after_store")))

    # -- draining -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def draining(self, wait: float = 0.0) -> Iterator[bool]:
        """Hold the drain lock (one drainer per folder, across processes).  Yields False when another
        process holds it and did not let go within ``wait`` seconds."""
        try:
            self._make_dirs()
            fd = os.open(self.dir / ".drain.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield False
            return
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.01)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def drain(self, apply: Callable[[Spooled], None], is_outage: Callable[[BaseException], bool], *,
              wait: float = 0.0, budget: float | None = None) -> "DrainResult":
        """Apply every spooled request in arrival order, removing each once applied, until none is left
        (requests spooled meanwhile included).  When ``apply`` raises an outage (``is_outage``) draining
        stops there and the rest stays spooled; any other error sets that one file aside as ``.bad`` (kept,
        counted by :meth:`set_aside`) and draining goes on.  After ``budget`` seconds it stops with
        ``result.more`` set if requests are left."""
        result = DrainResult()
        deadline = None if budget is None else time.monotonic() + budget
        with self.draining(wait) as mine:
            if not mine:
                result.busy = True
                return result
            while self._drain_listed(apply, is_outage, result, deadline):
                pass
        return result

    def _drain_listed(self, apply, is_outage, result: "DrainResult", deadline: float | None) -> bool:
        """One pass over the requests spooled now; True when another pass is due (more were spooled)."""
        paths = self.paths()
        if not paths:
            return False
        progress = result.applied + result.unreadable
        for path in paths:
            if deadline is not None and time.monotonic() >= deadline:
                result.more = True
                return False
            try:
                item = self.read(path)
            except (OSError, ValueError, KeyError) as exc:  # a file we cannot read: set aside, keep going
                if isinstance(exc, FileNotFoundError):
                    continue
                log.error("spooled request %s cannot be read (%s); moved aside to %s.bad", path.name,
                          type(exc).__name__, path.stem)
                with contextlib.suppress(OSError):
                    os.rename(path, path.with_suffix(".bad"))
                result.unreadable += 1
                continue
            try:
                apply(item)
            except Exception as exc:
                if is_outage(exc):
                    result.stopped_by = exc
                    return False
                log.error("spooled request %s could not be applied (%s); moved aside to %s.bad",
                          path.name, type(exc).__name__, path.stem)
                with contextlib.suppress(OSError):
                    os.rename(path, path.with_suffix(".bad"))
                result.unreadable += 1
                continue
            path.unlink(missing_ok=True)
            result.applied += 1
        # requests may have been spooled meanwhile: look again (unless this pass could move nothing)
        return result.applied + result.unreadable > progress


@dataclass
class DrainResult:
    applied: int = 0
    unreadable: int = 0  # set aside as .bad
    busy: bool = False  # another process is draining this folder
    more: bool = False  # the time budget ran out with requests left
    stopped_by: Exception | None = None

    def __str__(self) -> str:
        return f"applied {self.applied} spooled request(s)" + (
            f", {self.unreadable} set aside (see outreach inbox spool)" if self.unreadable else "")
