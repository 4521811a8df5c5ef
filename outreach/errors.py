"""Known failures, said in a sentence: the error boundary of the command line and of the web app's start-up.

A coordinator who makes an ordinary mistake (no schema yet, the wrong folder, a database that does not
answer, a setting not exported, a server that is not running, a file that is not there) gets one or two
lines saying what to do, and a non-zero exit; never a traceback.  Anything else is *unexpected*: one line
with a reference, the traceback going to the log only with ``--debug``.

:func:`explain` turns an exception into those lines (None: unexpected).  Nothing here prints.
"""
from __future__ import annotations

import re
from pathlib import Path

from .config import ConfigError, hide_password


class OutreachError(Exception):
    """A known failure; its message is what the user reads (one or two lines)."""

    exit_code = 1


class DatabaseMissing(OutreachError):
    """A SQLite database file that is not there (a command never creates one, except ``db upgrade``)."""


class SchemaMissing(OutreachError):
    """The database answers but has no tables (or an older schema): ``outreach db upgrade`` is needed."""


class DatabaseUnreachable(OutreachError):
    """The database server does not answer, or refuses the connection."""


class ServerNotAnswering(OutreachError):
    """A running server this command talks to (``outreach chat --url``) does not answer."""


class InputFileMissing(OutreachError):
    """A file named on the command line is not there."""


UPGRADE_HINT = "run `outreach db upgrade` first (it creates or migrates the schema; safe to repeat)"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, made absolute against the current folder (None: not a SQLite file URL)."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).absolute()


def missing_database(url: str, path: Path) -> DatabaseMissing:
    relative = not Path(_sqlite_database(url)).is_absolute()
    where = (f"DATABASE_URL={url} is relative to the current folder {Path.cwd()}" if relative
             else f"DATABASE_URL={url}")
    if not path.parent.is_dir():
        return DatabaseMissing(f"no database at {path}: the folder {path.parent} does not exist ({where})\n"
                               "set DATABASE_URL to the database's full path")
    return DatabaseMissing(f"no database at {path} ({where})\n"
                           "run the command from the folder that holds the database, set DATABASE_URL to its "
                           "full path, or create a new one with `outreach db upgrade`")


def _sqlite_database(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""


def where_is(url: str) -> str:
    """Host and port of a database URL, for an error message (the URL itself is shown masked)."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:
        return hide_password(url)
    path = sqlite_file(url)
    if path is not None:
        return str(path)
    host = parsed.host or "localhost (local socket)"
    port = parsed.port or (5432 if parsed.get_backend_name() == "postgresql" else None)
    return f"host {host}, port {port}" if port else f"host {host}"


def _driver_reason(exc: BaseException) -> str:
    """The driver's reason for a failed connection, in a few words: ``connection refused``,
    ``password authentication failed for user "outreach"``, ``database "x" does not exist``."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(orig).__name__)
    reason = first.rsplit("failed: ", 1)[-1]
    reason = re.sub(r"^(?:FATAL|ERROR):\s*", "", reason).strip()
    return reason[:1].lower() + reason[1:] if reason else type(orig).__name__


def unreachable(url: str, exc: BaseException) -> DatabaseUnreachable:
    return DatabaseUnreachable(
        f"cannot connect to the database at {where_is(url)} ({hide_password(url)}): {_driver_reason(exc)}\n"
        "check DATABASE_URL, and that the database server is running and accepts connections from here")


def no_schema(url: str) -> SchemaMissing:
    return SchemaMissing(f"the database at {where_is(url)} has no tables yet: {UPGRADE_HINT}")


def _is_connection_failure(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    text = str(getattr(exc, "orig", exc)).lower()
    return any(words in text for words in ("connection failed", "connection to server", "could not connect",
                                           "unable to open database file", "server closed the connection",
                                           "connection refused", "could not translate host name"))


_MISSING_TABLE = re.compile(r'no such table: (\w+)|relation "(\w+)" does not exist', re.I)
_MISSING_COLUMN = re.compile(r'no such column: ([\w.]+)|column "?([\w.]+)"? does not exist|has no column named (\w+)',
                             re.I)


def explain(exc: BaseException, database_url: str | None = None) -> tuple[str, int] | None:
    """The lines to print for a known failure and the exit code; None for an unexpected one."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, ConfigError):
        return str(exc), 2
    if isinstance(exc, OutreachError):
        return str(exc), exc.exit_code
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"no file at {Path(exc.filename).absolute()}", 1
    if isinstance(exc, DBAPIError):
        url = database_url or "the database"
        text = str(getattr(exc, "orig", exc))
        if _is_connection_failure(exc):
            return str(unreachable(url, exc)), 1
        table = _MISSING_TABLE.search(text)
        if table:
            name = table.group(1) or table.group(2)
            return f"the database at {where_is(url)} has no table {name!r}: {UPGRADE_HINT}", 1
        column = _MISSING_COLUMN.search(text)
        if column:
            name = next(g for g in column.groups() if g)
            return (f"the database at {where_is(url)} has an older schema than this version of outreach "
                    f"(no column {name!r}): {UPGRADE_HINT}"), 1
    return None
