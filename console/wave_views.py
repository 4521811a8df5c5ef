"""Waves for coordinators: the list with a plan for a time point, and a wave's page (its state, funnel and
texts) with pausing, resuming or cancelling it.

Thin views over :mod:`outreach.study.waves` (``wave_page``, ``pause_wave``, ``resume_wave``, ``cancel_wave``),
which the CLI's ``outreach waves pause|resume|cancel`` call too."""
from __future__ import annotations

import datetime as dt
import re

from flask import abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from outreach.jobs.launches import start_launch
from outreach.models import Wave
from outreach.study.waves import (REASONS, WaveError, cancel_wave, funnels, pause_wave, plan_from_form, resume_wave,
                                  wave_page)

from .blueprint import actor, address, bp, settings, uow, zone
from .security import requires


@bp.get("/waves")
@requires("waves")
def waves():
    """The waves so far, and a plan for a time point (as `outreach waves plan`: counts only, nothing written)."""
    timepoint, as_of = request.args.get("timepoint", ""), request.args.get("as_of", "")
    limit_text = request.args.get("limit", "").strip()
    plan, error, limit = None, None, None
    with uow() as s:
        if timepoint:
            try:
                limit = _limit(limit_text)
                plan = plan_from_form(s, settings(), timepoint, as_of, dt.datetime.now(zone()).date())
            except WaveError as exc:
                error = _sentence(exc)
        listed, by_wave = s.scalars(select(Wave).order_by(Wave.id.desc())).all(), funnels(s)
    to_invite = None if plan is None else min(len(plan.eligible), limit) if limit else len(plan.eligible)
    return render_template("console/waves.html", title="Waves", plan=plan, error=error, reasons=REASONS,
                           timepoints=settings().followup_days, to_invite=to_invite, limit=limit,
                           form={"timepoint": timepoint, "as_of": as_of, "limit": limit_text},
                           waves=listed, funnels=by_wave, sees_waves=True), 400 if error else 200


def _sentence(exc: Exception) -> str:
    return f"{str(exc)[:1].upper()}{str(exc)[1:]}."


def _limit(text: str) -> int | None:
    if not text:
        return None
    if not re.fullmatch(r"[0-9]+", text.replace(",", "")) or int(text.replace(",", "")) < 1:
        raise WaveError(f"the limit must be a whole number of patients, at least 1 (not {text[:20]!r})")
    return int(text.replace(",", ""))


@bp.post("/waves/launch")
@requires("waves")
def wave_launch():
    """Launch the planned wave as a job, once the coordinator typed the number it invites."""
    form = request.form
    back = url_for("console.waves", timepoint=form.get("timepoint", ""), as_of=form.get("as_of", ""),
                   limit=form.get("limit", ""))
    try:
        as_of = dt.date.fromisoformat(form.get("as_of", ""))
        with uow() as s:
            job = start_launch(s, settings(), timepoint=int(form.get("timepoint", "0")), as_of=as_of,
                               limit=_limit(form.get("limit", "").strip()), typed=form.get("confirm", ""),
                               shown=int(form.get("shown", "0")), owner=g.user.email, owner_role=g.user.role,
                               address=address())
            job_id = job.id
    except (WaveError, ValueError) as exc:
        flash(f"The wave was not launched: {_sentence(exc) if isinstance(exc, WaveError) else 'plan it again.'}")
        return redirect(back)
    return redirect(url_for("console.job", job_id=job_id))


@bp.get("/waves/<int:wave_id>")
@requires("waves")
def wave(wave_id: int):
    with uow() as s:
        page = wave_page(s, wave_id)
    if page is None:
        abort(404)
    return render_template("console/wave.html", title=f"Wave {wave_id}", page=page,
                           refresh=settings().console_refresh_seconds)


@bp.get("/waves/<int:wave_id>/live")
@requires("waves")
def wave_live(wave_id: int):
    """The wave's texts and funnel, refreshed by its page while the worker sends."""
    with uow() as s:
        page = wave_page(s, wave_id)
    if page is None:
        abort(404)
    return render_template("console/_wave_live.html", page=page)


def _control(wave_id: int, action, done) -> object:
    try:
        with uow() as s:
            result = action(s)
        flash(done(result))
    except WaveError as exc:
        flash(f"Wave {wave_id} was not changed: {exc}.")
    return redirect(url_for("console.wave", wave_id=wave_id))


@bp.post("/waves/<int:wave_id>/pause")
@requires("waves")
def wave_pause(wave_id: int):
    return _control(wave_id, lambda s: pause_wave(s, wave_id, actor=actor(), address=address()),
                    lambda held: f"Wave {wave_id} is paused: {held} open follow-up(s) get no automatic text until "
                                 "it is resumed.")


@bp.post("/waves/<int:wave_id>/resume")
@requires("waves")
def wave_resume(wave_id: int):
    return _control(wave_id, lambda s: resume_wave(s, wave_id, actor=actor(), address=address()),
                    lambda released: f"Wave {wave_id} is resumed: {released} follow-up(s) go on, each with the days "
                                     "it had left.")


@bp.post("/waves/<int:wave_id>/cancel")
@requires("waves")
def wave_cancel(wave_id: int):
    if request.form.get("confirm", "").strip() != str(wave_id):
        flash(f"Wave {wave_id} was not cancelled: type its number, {wave_id}, to confirm.")
        return redirect(url_for("console.wave", wave_id=wave_id))
    return _control(wave_id, lambda s: cancel_wave(s, wave_id, actor=actor(), address=address()),
                    lambda c: f"Wave {wave_id} is cancelled: {c.texts} unsent text(s) cancelled and {c.never_invited} "
                              "follow-up(s) never invited closed; conversations under way go on.")
