"""The study dashboard (issue 22), for every role: per time point the contact funnel with the research outcomes,
the response rate with its 95% CI and the time to first reply, with charts; the waves for the roles that run them;
the latest report's headline results for the research roles.

A thin view over :func:`analysis.dashboard.study_dashboard`.  Coordinators and admins see exact counts (they run
the study and may open every patient's page); researchers see the suppressed model (``SUPPRESS_BELOW``).  The
headline results go to researchers and admins, as the report does; they are the report's own suppressed numbers.
"""
from __future__ import annotations

import datetime as dt

from flask import g, render_template
from markupsafe import Markup

from analysis.dashboard import LABELS, duration, pct, study_dashboard
from outreach.clock import utcnow
from outreach.jobs.queue import jobs_dir
from outreach.staff.inbox import time_to_read

from .blueprint import bp, reading, settings
from .security import may_open, requires


COUNTED_SECONDS = 60  # counts at most this old (counting 100,000 patients × 4 time points takes seconds)


def _page(title: str):
    role = g.user.role
    exact = may_open(role, "waves")  # coordinators and admins: the study's operators
    with reading() as s:
        board = study_dashboard(s, below=settings().suppress_below, exact=exact, results=may_open(role, "research"),
                                timepoints=list(settings().followup_days), jobs_dir=jobs_dir(settings()),
                                max_age=COUNTED_SECONDS)
        # how fast patients' personal texts are read (the inbox's safety net): for the roles that read them
        read_times = time_to_read(s, since=utcnow() - dt.timedelta(weeks=8)) if may_open(role, "patients") else None
    return render_template("console/dashboard.html", title=title, board=board, labels=LABELS, duration=duration,
                           pct=pct, charts=[(c, Markup(c.svg)) for c in board.charts], sees_waves=exact,
                           waves=board.waves, funnels=board.wave_funnels, reading=read_times,
                           inbox_hours=settings().inbox_response_hours)


@bp.get("/dashboard")
@requires("study")
def dashboard():
    return _page("Study dashboard")


@bp.get("/progress")
@requires("study")
def progress():
    """The study progress page's old address (bookmarks, links in e-mails): the dashboard superseded it."""
    return _page("Study dashboard")
