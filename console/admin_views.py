"""Administration: the users page and the audit log (admins only).

Thin views over :mod:`outreach.staff.accounts` and :mod:`outreach.staff.audit_log`.  A one-time set-password
link is shown once, in the answer to the POST that made it (never kept in the session cookie).
No study id goes into a URL: a patient filter typed as a study id is turned into the internal id.
"""
from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for

from outreach.staff.accounts import (ROLES, AccountError, add_user, disable_user, enable_user, get_user, list_users,
                               new_password_link_token, set_role, unlock_user)
from outreach.staff.audit_log import (AuditFilterError, actions, parse_filters, patient_pk, patient_study_id,
                                read_audit_log)
from outreach.staff.audit_log import audit_csv as make_csv
from outreach.clock import utcnow

from .oidc_views import sso_settings
from .blueprint import actor, address, bp, settings, uow, zone
from .security import requires

PAGE_SIZE = 500
FILTER_KEYS = ("actor", "patient_pk", "action", "since", "until")


# --- users -----------------------------------------------------------------------------------------

def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] if message else message


def _users_page(*, error: str | None = None, link: dict | None = None, form: dict | None = None, status: int = 200):
    with uow() as s:
        users = list_users(s)
    return render_template("console/users.html", title="Users", users=users, roles=ROLES, error=error, link=link,
                           form=form or {"email": "", "role": "coordinator"}, now=utcnow()), status


def _link(email: str, token: str) -> dict:
    # The public address when it is known: behind a proxy, the request's host may be an internal one.
    base = (settings().optional("PUBLIC_BASE_URL") or request.host_url).rstrip("/")
    return {"email": email, "url": f"{base}/console/set-password/{token}"}


@bp.get("/users")
@requires("admin")
def users():
    return _users_page()


@bp.post("/users/add")
@requires("admin")
def user_add():
    email, role = request.form.get("email", ""), request.form.get("role", "")
    try:
        with uow() as s:
            user, token = add_user(s, email, role, actor=actor(), address=address())
            made = user.email
    except AccountError as exc:
        return _users_page(error=_sentence(str(exc)), form={"email": email, "role": role}, status=400)
    return _users_page(link=_link(made, token))


def _target(s, user_id: int):
    user = get_user(s, user_id)
    if user is None:
        raise AccountError("there is no such account; reload the page")
    return user


@bp.post("/users/<int:user_id>/role")
@requires("admin")
def user_role(user_id: int):
    role = request.form.get("role", "")
    try:
        with uow() as s:
            user = set_role(s, _target(s, user_id).email, role, actor=actor(), address=address())
            email, new_role = user.email, user.role
    except AccountError as exc:
        return _users_page(error=_sentence(str(exc)), status=400)
    flash(f"{email} is now {'an' if new_role == 'admin' else 'a'} {new_role}.")
    return redirect(url_for("console.users"), 303)


@bp.post("/users/<int:user_id>/disable")
@requires("admin")
def user_disable(user_id: int):
    try:
        with uow() as s:
            email = disable_user(s, _target(s, user_id).email, actor=actor(), address=address()).email
    except AccountError as exc:
        return _users_page(error=_sentence(str(exc)), status=400)
    flash(f"The account for {email} is disabled: it can no longer sign in, and its links no longer work.")
    return redirect(url_for("console.users"), 303)


@bp.post("/users/<int:user_id>/enable")
@requires("admin")
def user_enable(user_id: int):
    try:
        with uow() as s:
            email = enable_user(s, _target(s, user_id).email, actor=actor(), address=address()).email
    except AccountError as exc:
        return _users_page(error=_sentence(str(exc)), status=400)
    flash(f"The account for {email} can sign in again.")
    return redirect(url_for("console.users"), 303)


@bp.post("/users/<int:user_id>/unlock")
@requires("admin")
def user_unlock(user_id: int):
    try:
        with uow() as s:
            email = unlock_user(s, _target(s, user_id).email, actor=actor(), address=address()).email
    except AccountError as exc:
        return _users_page(error=_sentence(str(exc)), status=400)
    flash(f"The account for {email} is unlocked: it can sign in again now.")
    return redirect(url_for("console.users"), 303)


@bp.post("/users/<int:user_id>/link")
@requires("admin")
def user_link(user_id: int):
    try:
        with uow() as s:
            user = _target(s, user_id)
            token = new_password_link_token(s, user, actor=actor(), address=address())
            email = user.email
    except AccountError as exc:
        return _users_page(error=_sentence(str(exc)), status=400)
    return _users_page(link=_link(email, token))


# --- audit log -------------------------------------------------------------------------------------

NO_PATIENT = "No patient has that study id or internal id."


def _args(source, *, typed_patient: bool) -> dict[str, str]:
    """The filters for the page's address: the patient as its internal id (``patient_pk``), never as typed.
    ``typed_patient``: ``patient`` (a study id or an internal id) is looked up.  Raises AuditFilterError."""
    args = {k: v for k in FILTER_KEYS if (v := (source.get(k) or "").strip())}
    typed = (source.get("patient") or "").strip() if typed_patient else ""
    if typed_patient:
        args.pop("patient_pk", None)
    parse_filters(args)
    if typed:
        with uow() as s:
            pk = patient_pk(s, typed)
        if pk is None:
            raise AuditFilterError(NO_PATIENT)
        args["patient_pk"] = str(pk)
    return args


def _page(*, rows=(), more=False, args=None, offset=0, error=None, status=200):
    args = args or {}
    with uow() as s:
        names = actions(s)
        pk = args.get("patient_pk")
        patient = (patient_study_id(s, int(pk)) or pk) if pk and pk.isdigit() else ""
    form = {k: args.get(k, "") for k in ("actor", "action", "since", "until")} | {"patient": patient}
    return render_template("console/audit.html", title="Audit log", rows=rows, more=more, actions=names, form=form,
                           query=args, offset=offset, page_size=PAGE_SIZE, error=error), status


def _offset() -> int:
    raw = (request.args.get("offset") or "0").strip()
    if not raw.isdigit() or len(raw) > 12:
        raise AuditFilterError("The position in the list (offset) in the address is not valid.")
    return int(raw)


@bp.get("/audit")
@requires("admin")
def audit_log():
    try:
        if (request.args.get("patient") or "").strip():  # a typed patient: to the address with its internal id
            return redirect(url_for("console.audit_log", **_args(request.args, typed_patient=True)), 303)
        args, offset = _args(request.args, typed_patient=False), _offset()
        filters = parse_filters(args)
        with uow() as s:
            rows, more = read_audit_log(s, viewer=actor(), address=address(), purpose="page", limit=PAGE_SIZE,
                                        offset=offset, zone=zone(), **filters)
    except AuditFilterError as exc:
        return _page(args=_safe_args(), error=str(exc), status=400)
    return _page(rows=rows, more=more, args=args, offset=offset)


def _safe_args() -> dict[str, str]:
    """What the form can show again after a refusal (no typed patient: it may be a study id)."""
    return {k: v for k in ("actor", "action", "since", "until") if (v := (request.args.get(k) or request.form.get(k)
                                                                         or "").strip())}


@bp.post("/audit")
@requires("admin")
def audit_filter():
    """The filter form (posted, so a study id typed in it never appears in an address): to the page with the
    filters in its address, the patient as its internal id."""
    try:
        args = _args(request.form, typed_patient=True)
    except AuditFilterError as exc:
        return _page(args=_safe_args(), error=str(exc), status=400)
    return redirect(url_for("console.audit_log", **args), 303)


@bp.get("/audit.csv")
@requires("admin")
def audit_csv():
    """The rows the page's filters select (all of them, not one page) as a CSV attachment."""
    try:
        if (request.args.get("patient") or "").strip():
            return redirect(url_for("console.audit_csv", **_args(request.args, typed_patient=True)), 303)
        filters = parse_filters(_args(request.args, typed_patient=False))
        with uow() as s:
            rows, _more = read_audit_log(s, viewer=actor(), address=address(), purpose="csv", limit=None,
                                         zone=zone(), **filters)
    except AuditFilterError as exc:
        return _page(args=_safe_args(), error=str(exc), status=400)
    name = f"audit-log-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(make_csv(rows, zone()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- settings (read only) -------------------------------------------------------------------------------

@bp.get("/settings")
@requires("admin")
def settings_view():
    from outreach.staff.settings_page import settings_page

    with uow() as s:
        page = settings_page(s, settings())
    return render_template("console/settings.html", title="Settings", page=page,
                           sso_on=sso_settings(settings()) is not None)
