"""Withdrawing a participant from the study (the consequences in words, then the confirmation) and the list of
withdrawals.  The service (:mod:`outreach.study.withdrawal`) does and audits everything."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from outreach.config import ConfigError
from outreach.study.withdrawal import (WithdrawalError, check_choice, consequences, withdraw as withdraw_participant,
                                       withdrawn)

from .blueprint import actor, address, bp, settings, uow
from .patient_views import _render_patient
from .security import requires


def _key() -> bytes | None:
    """The export's pseudonym key, when it is set (the withdrawal's audit record names the pseudonym)."""
    try:
        return settings().export_key if settings().optional("EXPORT_KEY") else None
    except ConfigError:
        return None


@bp.post("/patients/<int:pk>/withdraw")
@requires("patients")
def withdraw(pk: int):
    data, reason = request.form.get("data"), request.form.get("reason", "")[:500]
    try:
        if request.form.get("confirm") != "yes":  # first the consequences, in words; nothing changes
            check_choice(data, reason)
            with uow() as s:
                said = consequences(s, pk, data)
            return render_template("console/withdraw.html", title="Withdraw from the study", pk=pk, said=said,
                                   reason=reason.strip())
        with uow() as s:
            done = withdraw_participant(s, pk=pk, data=data, reason=reason, actor=actor(), address=address(),
                                        key=_key())
    except WithdrawalError as exc:
        if str(exc) == "There is no such patient.":
            abort(404)
        return _render_patient(pk, error=str(exc), status=400, withdraw_form={"data": data, "reason": reason})
    flash(f"{done.study_id} is withdrawn from the study: {done.texts_cancelled} queued text(s) cancelled, "
          f"{done.followups_closed} open follow-up(s) ended"
          + (f"; {done.answers_deleted} answer(s) and {done.texts_deleted} text(s) deleted and the phone number "
             "erased." if done.data == "remove" else "; their answers stay, flagged as withdrawn."))
    return redirect(url_for("console.patient", pk=pk))


@bp.get("/withdrawals")
@requires("patients")
def withdrawals():
    with uow() as s:
        rows = withdrawn(s, _key(), actor=actor(), address=address())
    return render_template("console/withdrawals.html", title="Withdrawals", rows=rows)
