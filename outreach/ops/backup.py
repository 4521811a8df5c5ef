"""``outreach backup --out FILE`` and ``outreach restore FILE``: a consistent copy taken while the service runs, and
its restoration into an empty database, with the databases' own tools.

* SQLite: the online backup API (``sqlite3.Connection.backup``): a copy of one moment, taken while the web app and
  the worker go on writing (WAL mode lets them).
* PostgreSQL: the server's own ``pg_dump --format=custom`` (one snapshot of the whole database) and ``pg_restore``
  (in one transaction, stopping at the first error).  pg_dump must be of the server's major version or newer; the
  password goes through the environment (``PGPASSWORD``), never the command line.

Each is audited (``database_backup`` in the source, ``database_restore`` in the copy): the command line knows no
other person than the operating-system account that ran it (``cli:<user>``), and the file by its SHA-256, so that a
copy of every patient's data can be traced to who made it and which file it is.  A backup whose row cannot be
written is deleted: no copy is left unrecorded.

A restore refuses a database that holds any table: it never mixes a backup with data already there.  The file holds
every patient's data: it is written readable by its owner only (0600), through a temporary name in the same folder
and renamed into place when complete.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from ..config import hide_password
from ..errors import sqlite_file
from ..logs import scrub

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_CUSTOM_MAGIC = b"PGDMP"


class BackupError(RuntimeError):
    """A backup or a restore that cannot be done, in words."""


@dataclass(frozen=True)
class Done:
    path: Path
    seconds: float
    size: int

    def describe(self, verb: str, url: str) -> str:
        return f"{verb} {hide_password(url)} {'to' if verb == 'backed up' else 'from'} {self.path} " \
               f"({self.size / 1e6:.1f} MB) in {self.seconds:.1f} s"


def backup(url: str, out: Path) -> Done:
    """Copy the database at ``url`` to ``out`` (SQLite file or pg_dump custom format), consistently."""
    out = Path(out)
    if out.is_dir():
        raise BackupError(f"{out} is a folder; name the backup file to write")
    if not out.parent.is_dir():
        raise BackupError(f"the folder {out.parent} does not exist")
    partial = out.with_name(f".{out.name}.partial")
    started = time.perf_counter()
    try:
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        if _is_sqlite(url):
            _sqlite_backup(_sqlite_path(url), partial)
        else:
            _pg_dump(url, partial)
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    done = Done(out, time.perf_counter() - started, out.stat().st_size)
    try:
        _audit(url, "database_backup", out)
    except BackupError as exc:
        out.unlink(missing_ok=True)
        raise BackupError(f"{exc}; the backup {out} was deleted (a copy of every patient's data is never left "
                          "unrecorded)") from None
    return done


def restore(file: Path, url: str) -> Done:
    """Restore ``file`` (made by :func:`backup`) into the empty database at ``url``."""
    file = Path(file)
    if not file.is_file():
        raise BackupError(f"no backup file at {file}")
    with open(file, "rb") as fh:
        head = fh.read(16)
    started = time.perf_counter()
    if head.startswith(SQLITE_MAGIC):
        if not _is_sqlite(url):
            raise BackupError(f"{file} is a SQLite backup: restore it into a sqlite:/// DATABASE_URL")
        target = _sqlite_path(url)
        _refuse_non_empty(url)
        if not target.exists():  # every patient's data: the owner only, as the backup was
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(target, 0o600)  # an empty file made beforehand too, before any data goes into it
        _sqlite_backup(file, target)
    elif head.startswith(PG_CUSTOM_MAGIC):
        if _is_sqlite(url):
            raise BackupError(f"{file} is a PostgreSQL backup (pg_dump's custom format): restore it into a "
                              "postgresql:// DATABASE_URL")
        _refuse_non_empty(url)
        _pg_restore(file, url)
    else:
        raise BackupError(f"{file} is not a backup made by `outreach backup` (neither a SQLite file nor pg_dump's "
                          "custom format)")
    done = Done(file, time.perf_counter() - started, file.stat().st_size)
    _audit(url, "database_restore", file)
    return done


def _audit(url: str, action: str, file: Path) -> None:
    """The audit row of a copy, in the database at ``url``: who (``cli:<operating-system user>``), on which host,
    which file (its absolute path, size and SHA-256)."""
    from ..db import audit, make_engine

    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    engine = make_engine(url, immediate=False)
    try:
        with engine.begin() as conn:
            audit(conn, action, file=str(Path(file).resolve()), host=socket.gethostname(),
                  sha256=digest.hexdigest(), bytes=Path(file).stat().st_size)
    except Exception as exc:
        raise BackupError(f"the audit row ({action}) could not be written to {hide_password(url)}: "
                          f"{type(exc).__name__}") from None
    finally:
        engine.dispose()


# -- SQLite ---------------------------------------------------------------------------------------------------------

def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_path(url: str) -> Path:
    path = sqlite_file(url)
    if path is None:
        raise BackupError("only a SQLite database in a file can be backed up or restored (not :memory:)")
    return path


def _sqlite_backup(source: Path, target: Path) -> None:
    """SQLite's online backup API: readers and writers of ``source`` go on meanwhile; the copy is of one moment."""
    if not Path(source).is_file():
        raise BackupError(f"no SQLite database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target, timeout=30)
    try:
        with dst:
            src.backup(dst)  # all pages in one step: one read transaction, so one moment
    finally:
        dst.close()
        src.close()


def _refuse_non_empty(url: str) -> None:
    from ..db import make_engine

    if _is_sqlite(url):
        path = _sqlite_path(url)
        if not path.parent.is_dir():
            raise BackupError(f"the folder {path.parent} does not exist")
        if not path.exists():
            return
    engine = make_engine(url, immediate=False)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
    except Exception as exc:
        raise BackupError(f"cannot reach {hide_password(url)}: {type(exc).__name__}") from None
    finally:
        engine.dispose()
    if tables:
        some = ", ".join(sorted(tables)[:3])
        raise BackupError(f"{hide_password(url)} is not empty ({len(tables)} tables, {some}…): "
                          "a backup is restored only into an empty database (create a new one, point "
                          "DATABASE_URL at it, then restore)")


# -- PostgreSQL -----------------------------------------------------------------------------------------------------

def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump/pg_restore's connection options and environment; the password only in the environment."""
    u = make_url(url)
    args = ["--dbname", u.database or ""]
    if u.host:
        args += ["--host", u.host]
    if u.port:
        args += ["--port", str(u.port)]
    if u.username:
        args += ["--username", u.username]
    env = {**os.environ}
    if u.password:
        env["PGPASSWORD"] = u.password
    sslmode = u.query.get("sslmode")
    if sslmode:
        env["PGSSLMODE"] = sslmode if isinstance(sslmode, str) else sslmode[0]
    return args, env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not installed: install PostgreSQL's client tools of the server's major "
                          "version or newer (Debian: apt-get install postgresql-client)")
    return path


def _major(text: str) -> int:
    match = re.search(r"(\d+)(?:\.\d+)?", text)
    return int(match.group(1)) if match else 0


def _check_version(url: str, tool: str) -> None:
    from ..db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            server = conn.exec_driver_sql("SHOW server_version").scalar()
    except Exception as exc:
        raise BackupError(f"cannot reach {hide_password(url)}: {type(exc).__name__}") from None
    finally:
        engine.dispose()
    client = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    version = re.search(r"\)\s*(\d+)", client)  # pg_dump (PostgreSQL) 15.18 (Debian …)
    if version is None or int(version.group(1)) < _major(server):
        raise BackupError(f"{Path(tool).name} {client.strip()} is older than the server (PostgreSQL {server}): "
                          "install the client tools of the server's major version or newer")


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        detail = scrub(done.stderr.strip()).splitlines()
        raise BackupError(f"{what} failed (exit {done.returncode}): {detail[-1] if detail else 'no message'}")


def _pg_dump(url: str, out: Path) -> None:
    tool = _tool("pg_dump")
    _check_version(url, tool)
    args, env = _libpq(url)
    _run([tool, "--format=custom", "--no-owner", "--no-privileges", "--file", str(out), *args], env, "pg_dump")


def _pg_restore(file: Path, url: str) -> None:
    tool = _tool("pg_restore")
    args, env = _libpq(url)
    _run([tool, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", *args, str(file)],
         env, "pg_restore")
