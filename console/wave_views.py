"""Waves for coordinators: the list with a plan for a time point, and a wave's page (its state, funnel and
texts) with pausing, resuming or cancelling it.

Thin views over :mod:`outreach.study.waves` (``wave_page``, ``pause_wave``, ``resume_wave``, ``cancel_wave``),
which the CLI's ``outreach waves pause|resume|cancel`` call too."""
from __future__ import annotations

import datetime as dt

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

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
    plan, error = None, None
    with uow() as s:
        if timepoint:
            try:
                plan = plan_from_form(s, settings(), timepoint, as_of, dt.datetime.now(zone()).date())
            except WaveError as exc:
                error = f"{str(exc)[:1].upper()}{str(exc)[1:]}."
        listed, by_wave = s.scalars(select(Wave).order_by(Wave.id.desc())).all(), funnels(s)
    return render_template("console/waves.html", title="Waves", plan=plan, error=error, reasons=REASONS,
                           timepoints=settings().followup_days, form={"timepoint": timepoint, "as_of": as_of},
                           waves=listed, funnels=by_wave, sees_waves=True), 400 if error else 200


@bp.get("/waves/<int:wave_id>")
@requires("waves")
def wave(wave_id: int):
    with uow() as s:
        page = wave_page(s, wave_id)
    if page is None:
        abort(404)
    return render_template("console/wave.html", title=f"Wave {wave_id}", page=page)


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
