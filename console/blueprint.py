"""The console's blueprint and the few helpers every view uses."""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Iterator
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, g, request
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.db import unit_of_work

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static")


def settings() -> Settings:
    return current_app.extensions["outreach"]["settings"]


@contextmanager
def uow() -> Iterator[Session]:
    """One transaction for one request's unit of work."""
    with unit_of_work(current_app.extensions["outreach"]["sessions"]) as session:
        yield session


@contextmanager
def reading() -> Iterator[Session]:
    """A transaction that only reads: on SQLite it does not wait for a long job's write lock (WAL readers do not
    block, nor are they blocked).  Never write in it."""
    with unit_of_work(current_app.extensions["outreach"]["read_sessions"]) as session:
        yield session


def actor() -> str:
    """Who is acting, for the audit: the signed-in user's email."""
    return g.user.email


def address() -> str:
    return (request.remote_addr or "unknown")[:64]


def zone() -> ZoneInfo:
    s = settings()
    return ZoneInfo(s.optional("CONSOLE_TIMEZONE") or s.default_timezone)


def local(moment: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored (naive UTC) time in the console's time zone."""
    if moment is None:
        return ""
    return moment.replace(tzinfo=dt.UTC).astimezone(zone()).strftime(fmt + " %Z")


@bp.app_template_filter("local")
def _local_filter(moment: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return local(moment, fmt)
