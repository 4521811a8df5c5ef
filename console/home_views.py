"""Home and study progress: counts only, no identifiers (every role may open them)."""
from __future__ import annotations

from flask import g, render_template
from sqlalchemy import select

from outreach.models import Wave
from outreach.study.waves import funnels

from .blueprint import bp, uow
from .security import may_open, requires


def _progress():
    with uow() as s:
        waves = s.scalars(select(Wave).order_by(Wave.id.desc())).all()
        return waves, funnels(s)


@bp.get("/")
@requires("signed_in")
def home():
    waves, by_wave = _progress()
    return render_template("console/home.html", title="Home", waves=waves[:5], funnels=by_wave,
                           sees_alerts=may_open(g.user.role, "alerts"), sees_waves=may_open(g.user.role, "waves"))


@bp.get("/progress")
@requires("signed_in")
def progress():
    waves, by_wave = _progress()
    return render_template("console/progress.html", title="Study progress", waves=waves, funnels=by_wave,
                           sees_waves=may_open(g.user.role, "waves"))
