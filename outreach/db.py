"""Engine, sessions, the unit of work and migrations."""
from __future__ import annotations

import getpass
import os
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import Connection, Engine, create_engine, event, insert
from sqlalchemy.orm import Session, sessionmaker

from .models import AuditEvent

if TYPE_CHECKING:
    from alembic.config import Config

from .clock import utcnow


def make_engine(url: str, *, immediate: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``.  On SQLite every transaction takes the write lock at BEGIN
    (``immediate``) so read-then-write units of work queue instead of failing.

    Always with ``hide_parameters=True``: a database error's message (logged, or stored on a row) then
    never carries the values bound to the statement (phone numbers, message bodies)."""
    kwargs["hide_parameters"] = True
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            # Take the write lock up front: two read-then-write transactions on
            # SQLite then queue instead of failing, and savepoints work.  A connection that only reads
            # asks for a plain BEGIN with the execution option sqlite_begin="DEFERRED" (and one that must lock
            # with sqlite_begin="IMMEDIATE").
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE" if immediate else "DEFERRED")
            if mode not in ("IMMEDIATE", "DEFERRED"):
                raise ValueError(f"sqlite_begin must be IMMEDIATE or DEFERRED, not {mode!r}")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # Recycle rather than ping on every checkout: a ping is a round trip per transaction.
    kwargs.setdefault("pool_recycle", 300)
    return create_engine(url, **kwargs)


# SQLSTATEs of a server that is there but cannot take our writes now: read-only after a failover, shutting
# down or starting up, too many connections, a statement cancelled by the web app's statement_timeout (class 08,
# connection exceptions, too).
_UNAVAILABLE_SQLSTATES = {"25006", "57P01", "57P02", "57P03", "53300", "57014"}
_SQLITE_OUTAGE = ("unable to open", "not a database", "disk i/o", "database is locked", "readonly database",
                  "malformed")


def is_unavailable(exc: BaseException) -> bool:
    """Is this the database being unreachable or unable to write (an outage), rather than a fault in what we
    asked of it?  Connection refused or dropped, a timeout connecting, no free pooled connection within the
    pool's wait, a read-only server after a failover, a SQLite file that cannot be opened or read."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):  # QueuePool: no connection free within pool_timeout
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if type(exc.orig).__module__.startswith("sqlite3"):  # its OperationalError also means "no such table"
        message = str(exc.orig).lower()
        return any(words in message for words in _SQLITE_OUTAGE)
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:  # no answer from a server at all: refused, dropped, timed out connecting
        return isinstance(exc, sa_exc.OperationalError)
    # a server that answered: only these mean it cannot take our writes now (a deadlock or a serialization
    # failure is a fault of this transaction, handled as any other)
    return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES


def open_database(url: str, *, create: bool = False) -> Engine:
    """The engine a command works with, checked before anything is read or written: a SQLite file that
    is not there is an error naming its full path (only ``create``, for ``outreach db upgrade``, may make
    one), a server that does not answer is an error naming its host and port (credentials masked), and
    a database without our tables is an error saying to run ``outreach db upgrade``.  One round trip."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    from .errors import missing_database, no_schema, sqlite_file, unreachable

    path = sqlite_file(url)
    if path is not None and (not path.parent.is_dir() or (not create and not path.exists())):
        raise missing_database(url, path)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ready = inspect(conn).has_table("patients")
    except DBAPIError as exc:
        engine.dispose()
        raise unreachable(url, exc) from None
    if not ready and not create:
        engine.dispose()
        raise no_schema(url)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block succeeds, rolled back otherwise."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(engine: Engine) -> "Config":
    from alembic.config import Config  # imported here: alembic (with mako and pygments) is a fifth of every
    # command's start-up, and only ``db upgrade`` and the checks of the schema need it

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("outreach") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_actor() -> str:
    """``cli:<operating-system user>`` for audit rows written from the command line.

    The name comes from the process's user id, not from an environment variable (``USER``,
    ``LOGNAME`` and the like can be set by anyone), so an audit row names who really ran it."""
    return f"cli:{_os_user()}"


def _os_user() -> str:
    try:
        import pwd
    except ImportError:  # pragma: no cover - Windows has no user database; fall back to the login name
        return getpass.getuser()
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a user id without a passwd entry (some containers)
        return f"uid-{uid}"


def audit(bind: Session | Connection, action: str, *, actor: str | None = None,
          patient_id: int | None = None, address: str | None = None, **details: Any) -> AuditEvent | None:
    """Record who did what, from which address (the client's IP address, for console actions), in the
    caller's transaction (an ORM session or a Core connection).  In a session it returns the new row
    (its ``id`` is set at the next flush)."""
    row = dict(actor=actor or current_actor(), action=action, patient_id=patient_id,
               address=address[:64] if address else None, details=details)
    if isinstance(bind, Session):
        event = AuditEvent(**row)
        bind.add(event)
        return event
    bind.execute(insert(AuditEvent), row)
    return None


def audit_each_patient(bind: Session | Connection, action: str, shown: dict[int | None, dict[str, Any]], *,
                       actor: str, address: str | None = None) -> None:
    """One audit row per patient shown on a page (so the log filtered by a patient finds every look),
    written in one statement whatever their number."""
    now = utcnow()
    rows = [dict(at=now, actor=actor, action=action, patient_id=pk, address=address[:64] if address else None,
                 details=details) for pk, details in shown.items()]
    for i in range(0, len(rows), 1000):  # one multi-row INSERT per thousand (an executemany was a round trip each)
        bind.execute(insert(AuditEvent).values(rows[i:i + 1000]))
