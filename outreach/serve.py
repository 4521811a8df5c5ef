"""``make serve``: the console and the worker on the demo's data, on this machine, in one process.

Runs the demo first when ``./demo/outreach.db`` is missing, adds three demo accounts (one per role)
with a known password, starts the sender and the minute duties in a background thread (simulator
backend: nothing leaves the machine) and serves the web app on http://127.0.0.1:PORT.
"""
from __future__ import annotations

import datetime as dt
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from .staff.accounts import add_user, find_user, set_password
from .config import load_settings
from .db import make_engine, session_factory, unit_of_work, upgrade
from .messaging.gateway import SimulatorGateway
from .models import Message
import contextvars

from .clock import Clock, utcnow, using
from .logs import error_summary
from .messaging.sender import Sender
from .heartbeat import worker_name
from .jobs.queue import run_pending
from .worker import every_minute

DEMO_PASSWORD = "try the console today"
DEMO_ACCOUNTS = [("admin@demo.example.org", "admin"), ("coordinator@demo.example.org", "coordinator"),
                 ("researcher@demo.example.org", "researcher")]


def demo_env(directory: Path, port: int) -> dict[str, str]:
    """The demo server's settings: its database, jobs and export key are kept in ``directory``."""
    directory = Path(directory).resolve()
    return {"DATABASE_URL": f"sqlite:///{directory / 'outreach.db'}", "SMS_BACKEND": "simulator",
            "SEND_RATE_PER_SECOND": "0", "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
            "HELP_CONTACT": "1-800-555-0199", "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "ORG_NAME": "Recovery Study", "DEFAULT_TIMEZONE": "America/Toronto",
            "SECRET_KEY": secrets.token_hex(32), "CONSOLE_INSECURE_COOKIES": "1",
            "JOBS_DIR": str(directory / "jobs"), "EXPORT_KEY": _demo_export_key(directory)}


def _demo_export_key(directory: Path) -> str:
    """The demo's pseudonym key, made once and kept with its data (mode 0600), so that the console's exports
    give a participant the same pseudonym from one `make serve` to the next."""
    path = directory / "export.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def ensure_demo_accounts(sessions: sessionmaker[Session]) -> None:
    """The three demo accounts, each with ``DEMO_PASSWORD`` (set through the one-time link, as a person would)."""
    for email, role in DEMO_ACCOUNTS:
        with unit_of_work(sessions) as s:
            if find_user(s, email) is not None:
                continue
            _, token = add_user(s, email, role, actor="make serve")
            set_password(s, token, DEMO_PASSWORD)


def demos_clock(sessions: sessionmaker[Session], echo: Callable[[str], None]) -> Clock:
    """The demo simulates nine days from the next weekday morning, so its texts are dated ahead of
    today; this server's clock (its requests and its worker thread) runs from just after the last of them,
    so ages and times make sense."""
    clock = Clock()
    with unit_of_work(sessions) as s:
        latest = s.scalar(select(func.max(Message.created_at)))
    if latest is not None and latest > utcnow():
        clock.follow(latest + dt.timedelta(minutes=30))
        echo(f"(the demo's texts are dated up to {latest:%Y-%m-%d}; this server's clock follows them)")
    return clock


def _work(sessions: sessionmaker[Session], settings: Any, stop: threading.Event, echo: Callable[[str], None]) -> None:
    sender = Sender(sessions, settings, SimulatorGateway(echo=lambda line: None))
    last_tick = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() - last_tick >= 60:
                every_minute(sessions, settings)
                last_tick = time.monotonic()
            sender.send_due(max_batches=1)
            run_pending(sessions, settings, worker_name(), limit=1)  # the console's imports, launches, exports
        except Exception as exc:  # keep serving; say what went wrong in one line
            echo(f"worker: {error_summary(exc)}")
        stop.wait(2)


def serve(directory: Path, *, port: int, app_factory: Callable[[dict], Any],
          prepare_demo: Callable[[Path], None], echo: Callable[[str], None] = print) -> None:
    directory = Path(directory)
    if not (directory / "outreach.db").exists():
        echo(f"no demo data under {directory}/ yet: running the demo first")
        prepare_demo(directory)
    env = demo_env(directory, port)
    settings = load_settings(env)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    ensure_demo_accounts(sessions)
    clock = demos_clock(sessions, echo)
    stop = threading.Event()
    with using(clock):  # the worker thread starts with this context, so with the demo's clock
        worker = threading.Thread(target=contextvars.copy_context().run, args=(_work, sessions, settings, stop, echo),
                                  daemon=True, name="worker")
    worker.start()
    app = app_factory(env, clock=clock)
    echo(f"\nThe console is at http://127.0.0.1:{port}/console/ (demo data from {directory}/outreach.db)")
    echo(f"Sign in as {', '.join(email for email, _ in DEMO_ACCOUNTS)}")
    echo(f"with the password: {DEMO_PASSWORD}")
    echo("The worker runs in the background with the simulator (nothing is really sent). Ctrl-C stops both.\n")
    try:
        app.run(host="127.0.0.1", port=port, threaded=True, use_reloader=False)
    finally:
        stop.set()
        worker.join(timeout=5)
        engine.dispose()
