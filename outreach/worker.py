"""``outreach worker``: the long-running sender (Procfile ``worker``)."""
from __future__ import annotations

import logging
import signal
import time
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .db import unit_of_work
from .gateway import make_gateway
from .scheduler import tick
from .sender import Sender

log = logging.getLogger(__name__)
TICK_EVERY = 60.0
IDLE_SLEEP = 1.0


def run_worker(sessions: sessionmaker[Session], settings: Settings, *, echo: Callable[[str], None] = print,
               once: bool = False) -> None:
    sender = Sender(sessions, settings, make_gateway(settings, echo=echo))
    stopping = {"now": False}

    def stop(signum, _frame):
        stopping["now"] = True
        echo(f"worker: signal {signum}, finishing the current message and stopping")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last_tick = 0.0
    echo("worker: started")
    failures = 0
    while not stopping["now"]:
        try:
            if time.monotonic() - last_tick >= TICK_EVERY:
                with unit_of_work(sessions) as session:
                    stats = tick(session, settings)
                last_tick = time.monotonic()
                if stats.reminders or stats.stalled or stats.expired:
                    echo(f"worker: {stats}")
            result = sender.send_due(max_batches=1)
            failures = 0
        except Exception:  # the database went away, a deploy is under way...: wait and go on
            failures += 1
            log.exception("worker round failed (%d in a row); retrying", failures)
            time.sleep(min(60.0, 2.0 ** failures))
            continue
        if result.sent or result.failed or result.reconciled:
            echo(f"worker: {result}")
        if once:
            break
        if not (result.sent or result.held or result.retried or result.cancelled or result.reconciled):
            time.sleep(IDLE_SLEEP)
    echo("worker: stopped")
