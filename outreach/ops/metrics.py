"""``GET /metrics`` in Prometheus's text format, through prometheus-client.

Two kinds of figures:

* counted where they happen, in each web process (inbound texts by outcome, the webhook's latency, database errors
  by kind): under gunicorn every worker writes its counts to ``PROMETHEUS_MULTIPROC_DIR`` (the Procfile's
  ``webhooks/gunicorn_conf.py`` makes one per start) and a scrape adds them up, whichever worker answers it;
* read from the database and the host's spool when scraped (:class:`StateCollector`): spool depth and oldest age,
  outbound texts by state, the send rate achieved per sender, open crisis alerts, the inbox, jobs, the worker's
  last heartbeat.  The worker process itself needs no metrics endpoint: what it does is in the database.

Labels are never patient data: an outcome, a state, an endpoint, an error kind, the sender (a messaging service's
SID, or our own number masked).  Served only with ``METRICS_TOKEN`` (``Authorization: Bearer …``) on the web app's
port, or on ``127.0.0.1:METRICS_PORT`` by the gunicorn master (:func:`serve_on_loopback`); else ``/metrics`` is 404.
"""
from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
import time
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine, event, func, select

from ..clock import utcnow
from ..config import MAKE_A_KEY, METRICS_TOKEN_MIN_LENGTH, Settings
from ..heartbeat import last_beat
from ..messaging.sender import sender_key
from ..messaging.spool import Spool
from ..models import Alert, Job, Message
from ..phones import mask
from ..staff.inbox import inbox_counts
from ..states import Delivery, JobState

log = logging.getLogger(__name__)

INBOUND = Counter("outreach_inbound_texts", "Incoming texts by outcome: applied, repeat (a MessageSid seen before), "
                  "spooled (database unavailable), refused (bad signature or malformed), unavailable (503).",
                  ["outcome"])
WEBHOOK_SECONDS = Histogram("outreach_webhook_seconds", "Time to answer Twilio's webhooks, in seconds.", ["endpoint"],
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15))
DB_ERRORS = Counter("outreach_database_errors", "Database errors met by the web app, by kind: unavailable "
                    "(connection refused, dropped, timed out, read-only), integrity, conflict (deadlock, "
                    "serialization), other.", ["kind"])
OUTCOMES = ("applied", "repeat", "spooled", "refused", "unavailable")
for _outcome in OUTCOMES:  # every outcome shown from the start, at 0, so that rate() sees its first increase
    INBOUND.labels(_outcome)
for _endpoint in ("sms", "status"):
    WEBHOOK_SECONDS.labels(_endpoint)

# Outbound texts by state: Delivery's statuses grouped as an operator reads them.
SENT = (Delivery.ACCEPTED, Delivery.SCHEDULED, Delivery.QUEUED, Delivery.SENDING, Delivery.SENT, Delivery.DELIVERED,
        Delivery.READ, Delivery.PARTIALLY_DELIVERED)
FAILED = (Delivery.FAILED, Delivery.UNDELIVERED)
RATE_WINDOW = dt.timedelta(seconds=60)  # the achieved send rate: texts sent in the last minute / 60


def error_kind(exc: BaseException) -> str:
    from ..db import is_unavailable

    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(exc, "sqlstate", None)
    if is_unavailable(exc):
        return "unavailable"
    if type(getattr(exc, "orig", exc)).__name__ in ("IntegrityError", "UniqueViolation", "ForeignKeyViolation"):
        return "integrity"
    if sqlstate in ("40001", "40P01"):
        return "conflict"
    return "other"


def count_database_errors(engine: Engine) -> None:
    """Count every error the engine's connections raise, by :func:`error_kind`."""
    @event.listens_for(engine, "handle_error")
    def _count(context) -> None:
        DB_ERRORS.labels(error_kind(context.sqlalchemy_exception or context.original_exception)).inc()
        for exc in (context.sqlalchemy_exception, context.original_exception):
            if exc is not None:
                exc._outreach_counted = True  # a scrape that meets it does not count it again


def _counted(exc: BaseException) -> bool:
    return any(getattr(e, "_outreach_counted", False) for e in (exc, exc.__cause__, exc.__context__) if e is not None)


def count_inbound(received) -> None:
    """One incoming text's outcome (a :class:`outreach.messaging.inbound.Received`)."""
    outcome = ("refused" if received.rejected else "unavailable" if received.unavailable else
               "spooled" if received.spooled else "repeat" if received.duplicate else "applied")
    INBOUND.labels(outcome).inc()


def _age(at: dt.datetime | None, now: dt.datetime) -> float:
    return max(0.0, (now - at).total_seconds()) if at is not None else 0.0


class StateCollector:
    """What the database and the host's spool say at the moment of a scrape (a few cheap aggregates)."""

    def __init__(self, engine: Engine, settings: Settings, spool: Spool | None):
        self.engine, self.settings, self.spool = engine, settings, spool
        key = sender_key(settings)
        self.sender = mask(key) if key.startswith("+") else key

    def collect(self):
        if self.spool is not None:
            waiting, oldest = self.spool.depth()
            yield _gauge("outreach_spool_texts", "Requests waiting in this host's spool (SPOOL_DIR).", waiting)
            yield _gauge("outreach_spool_oldest_age_seconds", "Age of the oldest request in this host's spool "
                         "(0 when empty).", _age(oldest, utcnow()))
        try:
            with self.engine.connect() as conn:
                families = list(self._from_database(conn))
        except Exception as exc:  # the database is away: say so, and what the spool holds
            if not _counted(exc):  # an error of the driver is counted by the engine's listener already
                DB_ERRORS.labels(error_kind(exc)).inc()
            yield _gauge("outreach_database_up", "1 when the database answered this scrape.", 0)
            return
        yield _gauge("outreach_database_up", "1 when the database answered this scrape.", 1)
        yield from families

    def _from_database(self, conn):
        now = utcnow()
        out = Message.direction == "out"
        pending = (out & (Message.status == Delivery.PENDING))
        states = {
            "queued": pending & (Message.send_after <= now),
            "held": pending & (Message.send_after > now),
            "claimed": out & (Message.status == Delivery.CLAIMED),
            "sent": out & Message.status.in_(SENT),
            "failed": out & Message.status.in_(FAILED),
            "cancelled": out & (Message.status == Delivery.CANCELLED),
            "answered": out & (Message.status == Delivery.TWIML),
        }
        counts = conn.execute(select(*(func.count().filter(c) for c in states.values())).select_from(Message)
                              .where(out)).one()
        family = GaugeMetricFamily("outreach_outbound_texts", "Outbound texts by state: queued (due), held (waiting "
                                   "for quiet hours to end or a retry), claimed (a worker is sending it), sent (by a "
                                   "worker), failed, cancelled, answered (in the webhook's own answer).",
                                   labels=["state"])
        for name, n in zip(states, counts):
            family.add_metric([name], n or 0)
        yield family
        sent_lately = conn.scalar(select(func.count()).select_from(Message)
                                  .where(out, Message.sent_at >= now - RATE_WINDOW, Message.status.in_(SENT + FAILED)))
        rate = GaugeMetricFamily("outreach_send_rate_per_second", "Texts a second the workers of every host sent "
                                 "over the last minute, per sender.", labels=["sender"])
        rate.add_metric([self.sender], (sent_lately or 0) / RATE_WINDOW.total_seconds())
        yield rate
        limit = GaugeMetricFamily("outreach_send_rate_limit_per_second", "SEND_RATE_PER_SECOND (0 = no limit).",
                                  labels=["sender"])
        limit.add_metric([self.sender], self.settings.send_rate_per_second)
        yield limit
        yield from self._alerts(conn, now)
        yield _gauge("outreach_alert_response_seconds", "ALERT_RESPONSE_HOURS in seconds: an alert not resolved "
                     "for longer is overdue (for alerting rules).", self.settings.alert_response_hours * 3600)
        with _session(conn) as session:
            inbox = inbox_counts(session, self.settings, now)
            beat = last_beat(session)
        yield _gauge("outreach_inbox_waiting", "Patients' texts waiting for a person in the inbox.", inbox.waiting)
        yield _gauge("outreach_inbox_oldest_age_seconds", "Age of the oldest text waiting in the inbox (0: none).",
                     _age(inbox.oldest, now))
        jobs = dict(conn.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        family = GaugeMetricFamily("outreach_jobs", "The console's jobs by state.", labels=["state"])
        for state in (JobState.QUEUED, JobState.RUNNING, JobState.DONE, JobState.FAILED):
            family.add_metric([state], jobs.get(state, 0))
        yield family
        yield _gauge("outreach_worker_last_heartbeat_timestamp_seconds", "When a worker last did its minute duties "
                     "(Unix time; 0: never).", beat.replace(tzinfo=dt.timezone.utc).timestamp() if beat else 0)
        yield _gauge("outreach_worker_heartbeat_age_seconds", "Seconds since a worker last did its minute duties "
                     "(+Inf: never).", _age(beat, now) if beat else float("inf"))

    @staticmethod
    def _alerts(conn, now: dt.datetime):
        rows = conn.execute(select(Alert.taken_by.is_not(None), func.count(), func.min(Alert.opened_at))
                            .where(Alert.resolved_at.is_(None), Alert.preview.is_(False))
                            .group_by(Alert.taken_by.is_not(None))).all()
        by_state = {("taken" if taken else "open"): (n, oldest) for taken, n, oldest in rows}
        count = GaugeMetricFamily("outreach_crisis_alerts", "Crisis alerts not resolved: open (nobody has taken "
                                  "it) or taken.", labels=["state"])
        age = GaugeMetricFamily("outreach_crisis_alert_oldest_age_seconds", "Age of the oldest crisis alert not "
                                "resolved, open or taken (0: none).", labels=["state"])
        for state in ("open", "taken"):
            n, oldest = by_state.get(state, (0, None))
            count.add_metric([state], n)
            age.add_metric([state], _age(oldest, now))
        yield count
        yield age


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _session(conn):
    from sqlalchemy.orm import Session

    return Session(bind=conn)


def registry(collector: StateCollector | None) -> CollectorRegistry:
    """What a scrape reads: every process's counts (multiprocess mode) or this process's, and the state."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
    else:
        reg = CollectorRegistry()
        for metric in (INBOUND, WEBHOOK_SECONDS, DB_ERRORS):
            reg.register(metric)
    if collector is not None:
        reg.register(collector)
    return reg


def authorised(header: str | None, token: str) -> bool:
    given = (header or "").removeprefix("Bearer ").strip() if (header or "").startswith("Bearer ") else ""
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def init_metrics(app, settings: Settings, engine: Engine, spool: Spool | None) -> None:
    """Count the web app's database errors and webhook latency; serve ``/metrics`` when METRICS_TOKEN is set."""
    from flask import Response, abort, g, request

    count_database_errors(engine)
    collector = StateCollector(engine, settings, spool)

    @app.before_request
    def _started() -> None:
        g.outreach_started = time.perf_counter()

    @app.teardown_request
    def _timed(_exc) -> None:
        started = g.pop("outreach_started", None)
        if started is not None and request.blueprint == "twilio" and request.endpoint:
            WEBHOOK_SECONDS.labels(request.endpoint.rpartition(".")[2]).observe(time.perf_counter() - started)

    token = settings.optional("METRICS_TOKEN")
    if token and len(token) < METRICS_TOKEN_MIN_LENGTH:  # guessable; but monitoring never stops the texts' service
        log.error("METRICS_TOKEN is too short (%d characters; at least %d are needed): /metrics stays off until it "
                  "is replaced; make one with: %s", len(token), METRICS_TOKEN_MIN_LENGTH, MAKE_A_KEY)
        token = None

    @app.get("/metrics")
    def metrics():
        if not token:
            abort(404)  # off, or served on 127.0.0.1:METRICS_PORT by the gunicorn master
        if not authorised(request.headers.get("Authorization"), token):
            return Response("a bearer token is needed (METRICS_TOKEN)", status=401, mimetype="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return Response(generate_latest(registry(collector)), mimetype=CONTENT_TYPE_LATEST)


def serve_on_loopback(settings: Settings, port: int) -> Callable[[], None]:
    """``/metrics`` on 127.0.0.1:``port`` in a thread of this process (the gunicorn master): no token, nothing
    but this host can reach it.  Returns a function that stops it."""
    from prometheus_client import start_http_server

    from ..db import make_engine
    from ..messaging.spool import spool_dir

    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0) \
        if not settings.database_url.startswith("sqlite") else make_engine(settings.database_url)
    count_database_errors(engine)
    server, thread = start_http_server(port, addr="127.0.0.1",
                                       registry=registry(StateCollector(engine, settings, Spool(spool_dir(settings)))))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        engine.dispose()

    return stop
