"""The study console: server-rendered pages for the study team, in the same Flask app as the webhooks.

Views stay thin: each reads the request, calls one service function in
``outreach/`` (which has its own tests) and renders a template.  Access is
checked in one place (:mod:`console.security`); every page that shows an
identifiable patient is audited by the service that reads it.
"""
from __future__ import annotations

import datetime as dt
import logging

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from outreach.config import Settings

log = logging.getLogger("outreach.console")
csrf = CSRFProtect()


def init_console(app: Flask, settings: Settings) -> bool:
    """Register the console on ``app``; without ``SECRET_KEY`` it stays off (the webhooks still run)."""
    secret = settings.optional("SECRET_KEY")
    if not secret:
        log.warning("console disabled: SECRET_KEY is not set")
        return False
    insecure = settings.console_insecure_cookies
    app.secret_key = secret
    app.config.update(
        SESSION_COOKIE_NAME="outreach_session", SESSION_COOKIE_SECURE=not insecure, SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(minutes=settings.session_idle_minutes),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session, which has its own idle limit
        WTF_CSRF_SSL_STRICT=not insecure,
        WTF_CSRF_CHECK_DEFAULT=False)  # checked for every console form (console.security); webhooks are signed
    app.extensions["console"] = {"settings": settings}
    from . import (admin_views, alerts_views, auth_views, dashboard_views, export_views, home_views,  # noqa: F401
                   import_views, inbox_views, job_views, oidc_views, patient_views, report_views, token_views,
                   wave_views, withdrawal_views)
    from . import admission_views, care_views, kiosk_views  # noqa: F401  (the care team's pages, the tablet, an
    # admission recorded by hand: issue 26)
    from .api import api
    from .blueprint import bp

    oidc_views.init_sso(app, settings)  # refuses to start when nobody could sign in (PASSWORD_LOGIN=0 without SSO)
    csrf.init_app(app)
    app.register_blueprint(bp)
    app.register_blueprint(api)
    return True
