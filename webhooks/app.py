"""Application factory.  Nothing happens at import time."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask, Response, g, jsonify, redirect, url_for
from sqlalchemy import event, text
from sqlalchemy.pool import NullPool
from twilio.request_validator import RequestValidator
from werkzeug.middleware.proxy_fix import ProxyFix

from outreach.clock import Clock, restore, set_for_this_context
from outreach.config import WEB_APP_NEEDS, ConfigError, Settings, load_settings
from outreach.db import make_engine, session_factory
from outreach.messaging.inbound import Inbox
from outreach.logs import configure_logging
from outreach.messaging.spool import Spool, spool_dir


def check_startup(settings: Settings) -> None:
    """Raise :class:`ConfigError` when the web app cannot start: every missing setting at once, with what
    each is for (a malformed one stopped ``load_settings`` already).  The Procfile's gunicorn runs this once
    in its master process (``webhooks/gunicorn_conf.py``), so a deployment without its secrets stops with a
    few lines instead of a traceback per worker."""
    settings.check_required(WEB_APP_NEEDS, "needed by the web app")
    if settings.optional("SECRET_KEY"):  # the console is on: someone must be able to sign in
        from console.oidc_views import check_sign_in_settings

        check_sign_in_settings(settings)


def startup_message(exc: ConfigError) -> str:
    """What the web app prints when it cannot start."""
    return f"error: the web app cannot start: {exc}"


STATEMENT_TIMEOUT_FACTOR = 2.5  # a statement may take this many times DB_TIMEOUT_SECONDS


def web_engine_options(settings: Settings) -> dict[str, Any]:
    """The web app's database waits are short (DB_TIMEOUT_SECONDS): connecting, a free pooled connection,
    and (PostgreSQL) unacknowledged data on a connection whose server went away.  A request that cannot get
    through in that time spools its text instead of holding a thread."""
    timeout = settings.db_timeout_seconds
    if settings.database_url.startswith("sqlite"):
        return {"pool_timeout": timeout}  # a local file: SQLite's busy timeout governs waits for its lock
    return {"pool_timeout": timeout,
            "connect_args": {"connect_timeout": max(1, round(timeout)), "tcp_user_timeout": int(timeout * 1000),
                             "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2}}


def _limit_statements(engine, settings: Settings) -> None:
    """PostgreSQL: no statement of the web app runs longer than STATEMENT_TIMEOUT_FACTOR × DB_TIMEOUT_SECONDS
    (5 s by default), so a server that accepts connections but stalls (a pooler paused for a failover, a
    lock queued behind a migration, an I/O stall) still leaves time to spool the text before Twilio's 15 s.
    The console shares the engine; its pages take well under a second (benchmarks/console_bench.py)."""
    if engine.dialect.name != "postgresql":
        return
    limit_ms = int(settings.db_timeout_seconds * STATEMENT_TIMEOUT_FACTOR * 1000)

    @event.listens_for(engine, "connect")
    def _statement_timeout(dbapi_conn, _record):  # pragma: no cover - trivial
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            dbapi_conn.execute(f"SET statement_timeout = {limit_ms}")
        finally:
            dbapi_conn.autocommit = autocommit



def create_app(config: Mapping[str, Any] | None = None, clock: Clock | None = None) -> Flask:
    """Build the web app.  ``config`` overrides environment settings (tests, the demo); ``clock``: the clock its
    requests run on (``make serve`` follows the demo's simulated days), else the one in place for each request."""
    configure_logging()
    settings = load_settings({k: v for k, v in (config or {}).items() if isinstance(v, str)})
    check_startup(settings)
    validator = RequestValidator(settings.require("TWILIO_AUTH_TOKEN"))
    engine = make_engine(settings.database_url, **web_engine_options(settings))
    _limit_statements(engine, settings)
    sessions = session_factory(engine)
    # Pages that only read (the console's access check, a job's progress, the dashboard): on SQLite a plain BEGIN,
    # which in WAL mode reads while a long job's transaction holds the write lock; on PostgreSQL the same engine.
    # (no pool: a connection is closed after each use, so nothing is left open when the app is done)
    read_engine = make_engine(settings.database_url, immediate=False, poolclass=NullPool) \
        if settings.database_url.startswith("sqlite") else engine
    spool = Spool(spool_dir(settings))

    app = Flask(__name__)
    hops = settings.trusted_proxies
    if hops:  # behind a router: the client's address is what the proxies say, not the router's own
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024  # Twilio's forms are a few KB; refuse anything huge (413)
    app.extensions["outreach"] = {
        "settings": settings, "engine": engine, "sessions": sessions, "validator": validator,
        "read_sessions": session_factory(read_engine), "read_engine": read_engine,
        "public_base_url": settings.public_base_url, "inbox": Inbox(sessions, settings, spool),
    }
    if clock is not None:
        @app.before_request
        def _on_this_clock() -> None:
            g.outreach_clock = set_for_this_context(clock)

        @app.teardown_request
        def _off_this_clock(_exc) -> None:
            token = g.pop("outreach_clock", None)
            if token is not None:
                restore(token)

    from outreach.ops.metrics import init_metrics
    from outreach.ops.request_ids import init_request_ids

    init_request_ids(app)  # X-Request-Id, in every log line of the request (LOG_FORMAT=json)

    init_metrics(app, settings, engine, spool)  # GET /metrics (METRICS_TOKEN), the webhook's latency, database errors
    from .twilio_views import bp

    app.register_blueprint(bp)
    from console import init_console

    if init_console(app, settings):
        @app.get("/")
        def root():
            return redirect(url_for("console.home"))

    @app.get("/healthz")
    def healthz():
        """The database's state and the spool's depth: 503 only when neither can take an incoming text."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            database = "ok"
        except Exception:  # the database is down or unreachable
            database = "unavailable"
        waiting, oldest = spool.depth()
        body = {"status": "ok" if database == "ok" else "degraded", "database": database, "spooled": waiting}
        if oldest is not None:
            body["oldest_spooled_at"] = oldest.isoformat(timespec="seconds") + "Z"
        if database != "ok" and not spool.writable():
            body.update(status="unavailable", reason="the database does not answer and the spool cannot be written")
            return jsonify(body), 503
        return jsonify(body)

    @app.errorhandler(403)
    def forbidden(_exc):  # the console's pages have their own (console.security)
        return Response("invalid or missing X-Twilio-Signature", status=403, mimetype="text/plain")

    return app
