"""Application factory.  Nothing happens at import time."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask, Response, jsonify, redirect, url_for
from sqlalchemy import text
from twilio.request_validator import RequestValidator
from werkzeug.middleware.proxy_fix import ProxyFix

from outreach.config import WEB_APP_NEEDS, ConfigError, Settings, load_settings
from outreach.db import make_engine, session_factory
from outreach.inbound import Inbox
from outreach.logs import configure_logging


def check_startup(settings: Settings) -> None:
    """Raise :class:`ConfigError` when the web app cannot start: every missing setting at once, with what
    each is for, then a malformed one (an on-call number, the proxy count).  The Procfile's gunicorn runs
    this once in its master process (``webhooks/gunicorn_conf.py``), so a deployment without its secrets
    stops with a few lines instead of a traceback per worker."""
    from outreach.alerts import on_call_numbers

    settings.check_required(WEB_APP_NEEDS, "needed by the web app")
    on_call_numbers(settings)
    _trusted_proxies(settings)


def startup_message(exc: ConfigError) -> str:
    """What the web app prints when it cannot start."""
    return f"error: the web app cannot start: {exc}"


def _trusted_proxies(settings: Settings) -> int:
    try:
        hops = int(settings.get("TRUSTED_PROXIES") or 0)
    except ValueError:
        hops = -1
    if hops < 0:
        raise ConfigError(f"TRUSTED_PROXIES must be a whole number of proxies (0 or more), not "
                          f"{settings.get('TRUSTED_PROXIES')!r}")
    return hops


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the web app.  ``config`` overrides environment settings (tests, the demo)."""
    configure_logging()
    settings = load_settings({k: v for k, v in (config or {}).items() if isinstance(v, str)})
    check_startup(settings)
    validator = RequestValidator(settings.require("TWILIO_AUTH_TOKEN"))
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)

    app = Flask(__name__)
    hops = _trusted_proxies(settings)
    if hops:  # behind a router: the client's address is what the proxies say, not the router's own
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024  # Twilio's forms are a few KB; refuse anything huge (413)
    app.extensions["outreach"] = {
        "settings": settings, "engine": engine, "sessions": sessions, "validator": validator,
        "public_base_url": settings.optional("PUBLIC_BASE_URL"), "inbox": Inbox(sessions, settings),
    }
    from .twilio_views import bp

    app.register_blueprint(bp)
    from console import init_console

    if init_console(app, settings):
        @app.get("/")
        def root():
            return redirect(url_for("console.home"))

    @app.get("/healthz")
    def healthz():
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # the database is down or unreachable
            return jsonify(status="unavailable", reason="database does not answer"), 503
        return jsonify(status="ok")

    @app.errorhandler(403)
    def forbidden(_exc):  # the console's pages have their own (console.security)
        return Response("invalid or missing X-Twilio-Signature", status=403, mimetype="text/plain")

    return app
