"""The tablet check-in ("kiosk"): a clinician hands the tablet over from a patient's page; the console locks at
once (the clinician is signed out: any other page asks for a sign-in again); the patient sees only the statements,
one per screen, in their language, and submits; the page thanks them and stays locked.

The hand-over's sheet (:class:`outreach.care.kiosk.Sheet`) is signed with the app's key and kept in the session
and in the form: a submit retried after a dropped connection, even once the page has locked, is checked by its
signature and saved once by the check-in's id."""
from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, render_template, request, session, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from outreach.care.checkins import CheckinError
from outreach.care.kiosk import Sheet, hand_over, page_for, submit
from outreach.care.overview import NoSuchPatient, NotYourPatient
from outreach.study.instrument import load_instrument

from .blueprint import address, bp, settings, uow
from .security import requires

SHEET_HOURS = 2  # a sheet older than this is refused: a tablet left on a ward is not a way in


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="outreach-kiosk")


def _sheet(signed: str | None) -> Sheet | None:
    if not signed:
        return None
    try:
        return Sheet(**_signer().loads(signed, max_age=SHEET_HOURS * 3600))
    except (BadSignature, TypeError):
        return None


@bp.post("/care/patients/<int:patient_pk>/tablet")
@requires("care")
def kiosk_start(patient_pk: int):
    try:
        with uow() as s:
            sheet = hand_over(s, g.user, patient_pk, address=address())
    except NotYourPatient:
        abort(403)
    except NoSuchPatient:
        abort(404)
    except CheckinError as exc:
        flash(str(exc))
        return redirect(url_for("console.care_patient", patient_pk=patient_pk))
    session.clear()  # locked: a staff member signs in again after the patient
    session["kiosk"] = _signer().dumps(sheet.as_dict())
    return redirect(url_for("console.kiosk"))


@bp.get("/kiosk")
@requires("public")
def kiosk():
    sheet = _sheet(session.get("kiosk"))
    if sheet is None:
        return render_template("console/kiosk_locked.html", language=session.get("kiosk_language", "en")), 200
    page = page_for(sheet, load_instrument(settings().get("ALLIANCE_INSTRUMENT")))
    return render_template("console/kiosk.html", page=page, signed=session["kiosk"], key=sheet.key,
                           idle=settings().kiosk_idle_seconds)


@bp.post("/kiosk")
@requires("public")
def kiosk_submit():
    sheet = _sheet(request.form.get("sheet"))
    if sheet is None:
        abort(400)
    try:
        with uow() as s:
            recorded = submit(s, sheet, request.form, load_instrument(settings().get("ALLIANCE_INSTRUMENT")))
    except CheckinError as exc:
        return render_template("console/kiosk_locked.html", language=sheet.language, problem=str(exc)), 422
    session.pop("kiosk", None)  # this sheet is done: the page stays locked, in the patient's language
    session["kiosk_language"] = sheet.language
    if request.headers.get("X-Kiosk-Submit"):  # the page's own retrying submit
        return {"saved": True, "checkin": recorded.checkin.id, "again": not recorded.created}
    return render_template("console/kiosk_locked.html", language=sheet.language, thanks=True)
