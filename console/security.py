"""Who may open what, checked in one place: roles, sign-in, idle timeout, CSRF and security headers.

Every console view is registered with :func:`requires` naming an *area*;
``AREAS`` says which roles may open each area.  A forbidden page answers 403
with the same small page whatever it is; a page for signed-in users sends
anyone else to the sign-in page.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Callable

from flask import Response, abort, current_app, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError

from outreach.staff.accounts import admin_needs_totp, get_user
from outreach.staff.alerts import new_texts_on_open_alerts, open_alert_count
from outreach.staff.inbox import inbox_counts
from outreach.db import audit
from outreach.heartbeat import worker_stopped

from . import csrf
from .blueprint import address, bp, reading, settings, uow

ROLES = ("admin", "coordinator", "researcher", "clinician")
AREAS: dict[str, frozenset[str]] = {
    "public": frozenset(),  # sign-in, set-password: no account needed
    "signed_in": frozenset(ROLES),  # home, own account
    "study": frozenset({"admin", "coordinator", "researcher"}),  # the study's progress (the dashboard)
    # the care team's queue of alliance alerts and its patients' check-ins and trends: a clinician their own teams'
    "care": frozenset({"admin", "clinician"}),
    "alerts": frozenset({"admin", "coordinator"}),  # the crisis-alert queue, take and resolve
    "patients": frozenset({"admin", "coordinator"}),  # search, transcripts, answers, texting, phone
    "waves": frozenset({"admin", "coordinator"}),  # plan, launch, a wave's page: pause, resume, cancel
    # upload a discharge file, its validation, the history; an admission recorded on a form (issue 26)
    "imports": frozenset({"admin", "coordinator"}),
    "research": frozenset({"admin", "researcher"}),  # exports, the report, personal access tokens for the API
    "admin": frozenset({"admin"}),  # users and the audit log
}
NAVIGATION = [  # (area, endpoint, label)
    ("signed_in", "console.home", "Home"),
    ("alerts", "console.alerts", "Crisis alerts"),
    ("patients", "console.patients", "Patients"),
    ("patients", "console.inbox", "Inbox"),
    ("care", "console.care", "Care team"),
    ("study", "console.dashboard", "Dashboard"),  # supersedes "Study progress" (/console/progress shows it)
    ("imports", "console.imports", "Imports"),
    ("imports", "console.admission_new", "Admissions"),
    ("waves", "console.waves", "Waves"),
    ("research", "console.exports", "Exports"),
    ("research", "console.report", "Report"),
    ("research", "console.tokens", "API tokens"),
    ("admin", "console.users", "Users"),
    ("admin", "console.audit_log", "Audit log"),
    ("admin", "console.settings_view", "Settings"),
]
PASSIVE = {"console.alert_list", "console.job_status", "console.wave_live"}  # refreshed by the page itself: does not count as activity
# The tablet's submit carries its own signed sheet (console.kiosk_views), made when a clinician handed the tablet
# over: it is the form's token, and a submit retried after the console locked (no session) must still be answered.
# Its idle lock only locks (it carries the sheet to discard; forged, it locks a tablet, nothing more).
SIGNED_FORMS = {"console.kiosk_submit", "console.kiosk_lock"}
UPLOADS = {"console.import_upload"}  # forms that carry a file: MAX_UPLOAD_MB, not the app's limit for forms
VIEW_AREAS: dict[str, str] = {}  # endpoint -> area, filled by @requires (the route table test reads it)


def now() -> float:
    """Seconds since the epoch (a seam for the idle-timeout test)."""
    return time.time()


def may_open(role: str | None, area: str) -> bool:
    return area == "public" or (role is not None and role in AREAS[area])


def requires(area: str) -> Callable:
    """Mark a view with the area it belongs to; checked before the view runs (see ``_check_access``)."""
    if area not in AREAS:
        raise ValueError(f"unknown area {area!r}")

    def mark(view: Callable) -> Callable:
        VIEW_AREAS[f"console.{view.__name__}"] = area
        return view

    return mark


@bp.before_request
def _check_access():
    g.user = None
    area = VIEW_AREAS.get(request.endpoint or "")
    if request.endpoint == "console.static":
        return None
    if area is None:
        abort(404)
    uid, seen = session.get("uid"), session.get("seen", 0)
    idle = 60 * settings().session_idle_minutes
    if uid and now() - seen > idle:
        with uow() as s:
            user = get_user(s, uid)
            if user is not None:
                audit(s, "signed_out", actor=user.email, address=address(), reason="no activity")
        session.clear()
        session["notice"] = "You were signed out after a period without activity. Please sign in again."
        uid = None
    if uid:
        with reading() as s:  # reads only: on SQLite it does not wait behind a long job's transaction
            user = get_user(s, uid)
            if user is None or user.disabled_at is not None or session.get("stamp") != stamp(user):
                session.clear()
            else:
                g.user = user
                g.open_alerts = open_alert_count(s) if may_open(user.role, "alerts") else None
                g.alert_texts = new_texts_on_open_alerts(s) if g.open_alerts else 0
                g.inbox = inbox_counts(s, settings()) if may_open(user.role, "patients") else None
                g.worker_stopped = worker_stopped(s)
    if area != "public":
        if g.user is None:
            return _to_sign_in()
        if not may_open(g.user.role, area):
            abort(403)
        if request.endpoint not in PASSIVE:  # a page refreshing itself is not someone at the screen
            session["seen"] = now()
        session.permanent = True
    if request.method == "POST":
        if request.endpoint in UPLOADS:  # a file upload may be larger than the app's limit for forms
            request.max_content_length = int(settings().max_upload_mb * 1024 * 1024) + 64 * 1024
        if request.endpoint not in SIGNED_FORMS:
            csrf.protect()
    if g.user is not None and request.endpoint not in ("console.two_factor", "console.sign_out") and \
            admin_needs_totp(settings(), g.user):
        return redirect(url_for("console.two_factor"))
    return None


def _to_sign_in():
    """Send a signed-out visitor to sign in; a part of a page refreshing itself (htmx) makes the whole
    page go there, rather than showing the sign-in form inside the list."""
    if request.headers.get("HX-Request"):
        return Response(status=204, headers={"HX-Redirect": url_for("console.sign_in")})
    return redirect(url_for("console.sign_in"))


def stamp(user) -> str:
    """Changes when the user's password, role or authenticator changes, or when they sign out, which
    ends their other sessions (a copied cookie too).  A keyed hash: the cookie is signed but readable, so it carries nothing of the password hash."""
    material = (f"{user.id}:{user.role}:{user.password_hash or ''}:{user.totp_secret or ''}:"
                f"{user.sessions_revoked_at or ''}").encode()
    return hmac.new(current_app.secret_key.encode(), material, hashlib.sha256).hexdigest()[:32]


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_context_processor
def _navigation():
    user = g.get("user")
    role = user.role if user is not None else None
    return {"navigation": [(endpoint, label) for area, endpoint, label in NAVIGATION
                           if may_open(role, area) and endpoint in VIEW_AREAS]
            if user is not None else [],
            "open_alerts": g.get("open_alerts"), "alert_texts": g.get("alert_texts"), "inbox": g.get("inbox"),
            "worker_stopped": g.get("worker_stopped")}


@bp.errorhandler(403)
def _forbidden(_exc):
    return render_template("console/error.html", title="Not allowed",
                           message="Your role does not give access to this page."), 403


@bp.errorhandler(404)
def _not_found(_exc):
    return render_template("console/error.html", title="Not found", message="There is no such page."), 404


@bp.errorhandler(413)
def _too_large(_exc):
    return render_template("console/error.html", title="File too large",
                           message=f"The file is larger than {settings().max_upload_mb:g} MB (MAX_UPLOAD_MB). Split "
                                   "it into smaller files, or ask the administrator to raise the limit."), 413


@bp.errorhandler(CSRFError)
def _csrf_error(_exc):
    return render_template("console/error.html", title="Form not accepted",
                           message="This form was not sent from a page of this console, or the page was open "
                                   "too long. Go back, reload the page and try again."), 400
