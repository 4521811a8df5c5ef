"""Home: the open crisis alerts and, for the roles that run waves, the latest waves with their exact funnels.  A
researcher's home holds no count: the study's progress is on the dashboard, suppressed
(:mod:`console.dashboard_views`, which also answers the old study progress address)."""
from __future__ import annotations

from flask import g, render_template
from sqlalchemy import select

from outreach.models import Wave
from outreach.study.waves import funnels

from .blueprint import bp, uow
from .security import may_open, requires


@bp.get("/")
@requires("signed_in")
def home():
    sees_waves = may_open(g.user.role, "waves")
    waves, by_wave = [], {}
    if sees_waves:  # exact counts only for the roles that run the study
        with uow() as s:
            waves = s.scalars(select(Wave).order_by(Wave.id.desc()).limit(5)).all()
            by_wave = funnels(s, [w.id for w in waves]) if waves else {}
    return render_template("console/home.html", title="Home", waves=waves, funnels=by_wave,
                           sees_alerts=may_open(g.user.role, "alerts"), sees_waves=sees_waves,
                           sees_study=may_open(g.user.role, "study"), sees_care=may_open(g.user.role, "care"))
