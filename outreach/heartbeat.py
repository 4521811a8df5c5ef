"""Whether a worker is running: each worker process records a heartbeat with its minute duties, and the newest
one tells the console (and the settings page) when sending stopped.

Infrastructure rather than messaging: the worker (an entry point) writes it and the console reads it."""
from __future__ import annotations

import datetime as dt
import os
import socket

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .clock import utcnow
from .models import Heartbeat
from .repository import insert_ignore

STALE_AFTER = dt.timedelta(minutes=5)  # no heartbeat for this long: nothing is being sent
FORGET_AFTER = dt.timedelta(days=7)  # the rows of workers gone for this long are deleted


def worker_name() -> str:
    return f"{socket.gethostname()[:100]}:{os.getpid()}"


def beat(session: Session, worker: str | None = None) -> None:
    """Record that this worker has just done its minute duties (one row per worker process)."""
    now = utcnow()
    stmt = insert_ignore(session, Heartbeat).values(worker=worker or worker_name(), at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["worker"], set_={"at": now}))
    session.execute(delete(Heartbeat).where(Heartbeat.at < now - FORGET_AFTER))


def last_beat(session: Session) -> dt.datetime | None:
    """When any worker last did its minute duties (None: never)."""
    return session.scalar(select(func.max(Heartbeat.at)))


def worker_stopped(session: Session, now: dt.datetime | None = None) -> dt.datetime | bool | None:
    """The newest heartbeat when it is older than STALE_AFTER, True when there has never been one, else None."""
    last = last_beat(session)
    if last is None:
        return True
    return last if (now or utcnow()) - last > STALE_AFTER else None
