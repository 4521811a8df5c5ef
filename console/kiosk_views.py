"""The tablet check-in ("kiosk"): a clinician hands the tablet over from a patient's page; the console locks at
once (the clinician is signed out: any other page asks for a sign-in again); the patient sees only the statements,
one per screen, in their language, and submits; the page thanks them and stays locked.

The hand-over's sheet (:class:`outreach.care.kiosk.Sheet`) is signed with the app's key and kept in the session
and in the form: a submit retried after a dropped connection, even once the page has locked, is checked by its
signature and saved once by the check-in's id.

Left idle, the tablet locks: after ``KIOSK_IDLE_SECONDS`` without a touch the page posts to :func:`kiosk_lock`, which
discards the sheet (a submit of it is refused from then on) and shows the locked page, so the next person to pick
the tablet up never sees the previous patient's sheet.  The server holds to the same limit without the script: a
sheet not shown for ``KIOSK_IDLE_SECONDS`` is discarded when the page is asked for again."""
from __future__ import annotations

from flask import abort, current_app, flash, g, make_response, redirect, render_template, request, session, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from outreach.care.checkins import CheckinError
from outreach.care.kiosk import Sheet, hand_over, page_for, submit
from outreach.care.overview import NoSuchPatient, NotYourPatient
from outreach.study.instrument import load_instrument

from .blueprint import address, bp, settings, uow
from . import security
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
    session["kiosk_shown"] = security.now()
    return redirect(url_for("console.kiosk"))


def _discard(sheet: Sheet | None) -> None:
    """Lock the tablet: the sheet is no longer shown, and a submit of it is refused."""
    session.pop("kiosk", None)
    session.pop("kiosk_shown", None)
    if sheet is not None:
        session["kiosk_discarded"] = sheet.key
        session["kiosk_language"] = sheet.language


def _locked(status: int = 200, **extra):
    response = make_response(render_template("console/kiosk_locked.html",
                                             language=session.get("kiosk_language", "en"), **extra), status)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/kiosk")
@requires("public")
def kiosk():
    sheet = _sheet(session.get("kiosk"))
    if sheet is not None and security.now() - session.get("kiosk_shown", 0) > settings().kiosk_idle_seconds:
        _discard(sheet)  # left idle (the page's script did not lock it, or the page was opened again later)
        sheet = None
    if sheet is None:
        return _locked()
    session["kiosk_shown"] = security.now()
    page = page_for(sheet, load_instrument(settings().get("ALLIANCE_INSTRUMENT")))
    response = make_response(render_template("console/kiosk.html", page=page, signed=session["kiosk"], key=sheet.key,
                                             idle=settings().kiosk_idle_seconds))
    response.headers["Cache-Control"] = "no-store"  # Back after the lock must not bring the sheet back
    return response


@bp.post("/kiosk/lock")
@requires("public")
def kiosk_lock():
    """The page left idle: discard its sheet and show the locked page (nothing but a lock: no CSRF token)."""
    _discard(_sheet(request.form.get("sheet")) or _sheet(session.get("kiosk")))
    return redirect(url_for("console.kiosk"), code=303)


@bp.post("/kiosk")
@requires("public")
def kiosk_submit():
    sheet = _sheet(request.form.get("sheet"))
    if sheet is None:
        abort(400)
    if sheet.key == session.get("kiosk_discarded"):  # the tablet locked when left idle: this sheet is done
        return _locked(422, problem="This check-in was not saved: the tablet was left without a touch and locked.")
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
