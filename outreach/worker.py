"""``outreach worker``: the long-running sender (Procfile ``worker``)."""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings, check_sending
from .db import is_unavailable, unit_of_work
from .care.alerts import check_missed
from .care.digest import send_team_digests
from .care.sms import care_duties
from .heartbeat import beat, worker_name
from .jobs.queue import JobRunner, run_pending
from .messaging.gateway import make_gateway
from .messaging.inbound import Inbox
from .messaging.on_call import escalate_alerts
from .staff.inbox import send_digest
from .study import retention
from .study.scheduler import TickStats, tick
from .messaging.sender import Sender
from .messaging.spool import Spool, spool_dir

log = logging.getLogger(__name__)
TICK_EVERY = 60.0
IDLE_SLEEP = 1.0
OUTAGE_BACKOFF_MAX = 5.0  # while the database is away, look again at least this often
# The daily retention pass takes at most this long of a minute's duties; what is left goes on the next minute.
RETENTION_BUDGET = 10.0


@dataclass(frozen=True)
class MinuteDuties:
    ticked: TickStats
    recovered: list[tuple[int, str]]  # inbound texts applied late: (message id, status)
    erased: retention.RetentionRun | None = None  # the daily retention pass, when it ran this minute

    @property
    def busy(self) -> bool:
        return bool(self.ticked.reminders or self.ticked.stalled or self.ticked.expired or self.recovered
                     or (self.erased and any(self.erased.counts.values())))

    def __str__(self) -> str:
        erased = f"; {self.erased.describe()}" if self.erased is not None else ""
        return f"{self.ticked}; applied {len(self.recovered)} inbound message(s) left unprocessed{erased}"


def every_minute(sessions: sessionmaker[Session], settings: Settings) -> MinuteDuties:
    """The worker's periodic duties: reminders and expiry, then inbound texts whose request died
    before applying them (a crisis text must not wait for the patient's next message), then, once a day, the
    retention rules (in short batches, at most RETENTION_BUDGET seconds a minute)."""
    with unit_of_work(sessions) as session:
        ticked = tick(session, settings)
        escalate_alerts(session, settings)  # an alert nobody took, or whose on-call text failed
        send_digest(session, settings)  # once a day: the inbox's counts to the coordinators on call
        care_duties(session, settings)  # alliance check-ins by SMS: start those due, record those answered
        check_missed(session, settings.alliance_checkin_days)  # two check-ins in a row missed: an alliance alert
        send_team_digests(session, settings)  # weekly, when CARE_DIGEST_TO is set: each team's counts by text
        beat(session)  # the console warns when no worker has done this for five minutes
        erase = retention.due_today(session, settings)
    recovered = Inbox(sessions, settings).recover_stuck()
    erased = retention.run(sessions, settings, budget_seconds=RETENTION_BUDGET) if erase else None
    return MinuteDuties(ticked, recovered, erased)


def run_worker(sessions: sessionmaker[Session], settings: Settings, *, echo: Callable[[str], None] = print,
               once: bool = False) -> None:
    """Send, and every minute do the minute duties, until SIGTERM/SIGINT.  ``once``: one round, then say what
    it did (the minute duties, the sending pass and what waits for later) and stop."""
    check_sending(settings)  # every missing Twilio setting at once, before anything starts
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the host's /metrics adds this process's database errors
        from .ops.metrics import count_database_errors

        count_database_errors(sessions.kw["bind"])
    sender = Sender(sessions, settings, make_gateway(settings, echo=echo))
    # Texts the web app spooled on this host while the database was away: applied as soon as it is back,
    # without waiting for the next inbound request.
    inbox = Inbox(sessions, settings, Spool(spool_dir(settings)), report_outages=False)
    zone = settings.coordinator_zone
    stopping = {"now": False}

    def stop(signum, _frame):
        stopping["now"] = True
        echo(f"worker: signal {signum}, finishing the current text, giving the rest of its batch back, stopping")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last_tick = 0.0
    # The console's jobs (imports, launches, exports, the report) run in a thread of their own, so that a long
    # import does not hold texts back; --once runs those queued, in this thread.
    jobs = None if once else JobRunner(sessions, settings, worker_name()).start()
    echo("worker: started")
    failures, outage_since = 0, None
    while not stopping["now"]:
        try:
            duties = None
            if outage_since is not None:  # say it is back as soon as it answers, not after a batch of sends
                with sessions() as probe:
                    probe.execute(text("SELECT 1"))
                log.warning("worker: database available again after %.0f s", time.monotonic() - outage_since)
                outage_since = None
            if inbox.spool.has_any():
                drained = inbox.drain_spool(wait=0.0)
                if drained.stopped_by is not None:
                    raise drained.stopped_by
                if drained.applied:
                    echo(f"worker: {drained} from {inbox.spool.dir}")
            if time.monotonic() - last_tick >= TICK_EVERY:
                duties = every_minute(sessions, settings)
                last_tick = time.monotonic()
                if duties.busy and not once:
                    echo(f"worker: {duties}")
            result = sender.send_due(max_batches=1, stop=lambda: stopping["now"])
            if once:
                sender.waiting(result)
                ran = run_pending(sessions, settings, worker_name())
                if ran:
                    echo(f"worker: ran {ran} job(s) from the console")
            failures = 0
        except Exception as exc:  # the database went away, a deploy is under way...: wait and go on
            if once:
                raise  # one round asked for: say it failed (the command line's error boundary)
            failures += 1
            if is_unavailable(exc):  # one line when it goes away, one when it is back; no trace per round
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning("worker: database unavailable (%s); retrying until it is back", type(exc).__name__)
                time.sleep(min(OUTAGE_BACKOFF_MAX, 0.25 * 2.0 ** failures))
                continue
            log.exception("worker round failed (%d in a row); retrying", failures)
            time.sleep(min(60.0, 2.0 ** failures))
            continue
        if once:
            if duties is not None:
                echo(f"worker: minute duties: {duties}")
            echo(f"worker: sending: {result.describe(zone)}")
            break
        if result.sent or result.failed or result.reconciled or result.held:
            echo(f"worker: {result.describe(zone)}")
        if not (result.sent or result.held or result.retried or result.cancelled or result.reconciled):
            time.sleep(IDLE_SLEEP)
    if jobs is not None:
        echo("worker: waiting for the job under way (if any) to finish")
        jobs.stop(timeout=60)
    echo("worker: stopped")
