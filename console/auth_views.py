"""Sign in, sign out, set a password from a one-time link, and the authenticator-app code."""
from __future__ import annotations

from flask import current_app, flash, g, redirect, render_template, request, session, url_for

from outreach.staff.accounts import (AccountError, TotpRequired, authenticate, current_code_ok, disable_totp, enable_totp,
                               end_sessions, get_user, pending_totp_secret, provisioning_uri, set_password,
                               token_user)

from .blueprint import address, bp, settings, uow
from .security import now, requires, stamp


def get_user_now(user_id: int):
    """The account as stored now (after a change in an earlier transaction)."""
    with uow() as s:
        return get_user(s, user_id)


PASSWORD_LOGIN_OFF = ("password sign-in is turned off for this console; sign in with your institution's "
                      "account instead")


def begin_session(user) -> None:
    """Sign ``user`` in on this browser (a password or a single sign-on checked before)."""
    session.clear()  # a new session id: nothing from before sign-in carries over
    session.update(uid=user.id, stamp=stamp(user), seen=now())
    session.permanent = True


def sso_offered() -> bool:
    """Whether the sign-in page offers the institution's identity provider (see ``oidc_views``)."""
    return current_app.extensions["console"].get("sso") is not None


def render_sign_in(status: int = 200, **context):
    """The sign-in page: single sign-on when it is set up, the password form unless PASSWORD_LOGIN=0."""
    context.setdefault("email", "")
    context.setdefault("ask_code", False)
    return render_template("console/sign_in.html", title="Sign in", sso=sso_offered(),
                           password_login=settings().password_login, **context), status


@bp.route("/sign-in", methods=["GET", "POST"])
@requires("public")
def sign_in():
    notice = session.pop("notice", None)
    if request.method == "GET":
        return render_sign_in(notice=notice)
    if not settings().password_login:
        return render_sign_in(error=PASSWORD_LOGIN_OFF, status=403)
    email = request.form.get("email", "")
    try:
        with uow() as s:
            user = authenticate(s, email, request.form.get("password", ""), address=address(),
                                totp_code=request.form.get("code") or None)
    except TotpRequired as exc:
        return render_sign_in(error=str(exc), email=email, ask_code=True)
    except AccountError as exc:
        return render_sign_in(error=str(exc), email=email, ask_code=bool(request.form.get("code")))
    begin_session(user)
    return redirect(url_for("console.home"))


@bp.post("/sign-out")
@requires("signed_in")
def sign_out():
    with uow() as s:
        end_sessions(s, g.user, address=address())
    session.clear()
    session["notice"] = "You are signed out."
    return redirect(url_for("console.sign_in"))


@bp.route("/set-password/<token>", methods=["GET", "POST"])
@requires("public")
def set_password_page(token: str):
    with uow() as s:
        user = token_user(s, token)
        email = user.email if user else None
    if email is None:
        return render_template("console/error.html", title="Link not valid",
                               message="This link has expired or was already used; ask an administrator for a "
                                       "new one."), 410
    if not settings().password_login:  # single sign-on only: a password would never be asked for
        session["notice"] = ("This console does not use passwords: sign in with your institution's account "
                             "below.")
        return redirect(url_for("console.sign_in"))
    if request.method == "GET":
        return render_template("console/set_password.html", title="Choose a password", email=email)
    password, again = request.form.get("password", ""), request.form.get("again", "")
    if password != again:
        return render_template("console/set_password.html", title="Choose a password", email=email,
                               error="The two passwords are not the same."), 200
    try:
        with uow() as s:
            set_password(s, token, password, address=address())
    except AccountError as exc:
        return render_template("console/set_password.html", title="Choose a password", email=email,
                               error=str(exc)), 200
    session.clear()
    session["notice"] = "Your password is set. Sign in with it now."
    return redirect(url_for("console.sign_in"))


@bp.route("/account/two-factor", methods=["GET", "POST"])
@requires("signed_in")
def two_factor():
    user = g.user
    issuer = settings().org_name
    if request.method == "POST" and request.form.get("action") == "disable":
        with uow() as s:  # whoever is at an unlocked screen cannot: the current code, not used before
            right = current_code_ok(s, user, request.form.get("code"))
        if not right:
            return render_template("console/two_factor.html", title="Authenticator app", enabled=True,
                                   error="That is not the current code from your authenticator app (a code "
                                         "counts once: wait for the next one)."), 200
        with uow() as s:
            disable_totp(s, user, actor=user.email, address=address())
        session["stamp"] = stamp(get_user_now(user.id))
        flash("The authenticator-app code is turned off for your account.")
        return redirect(url_for("console.two_factor"))
    if request.method == "POST":
        with uow() as s:
            secret = pending_totp_secret(s, user)
        try:
            with uow() as s:
                enable_totp(s, user, secret, request.form.get("code", ""), address=address())
        except AccountError as exc:
            return render_template("console/two_factor.html", title="Authenticator app", secret=secret,
                                   uri=provisioning_uri(secret, user.email, issuer), error=str(exc)), 200
        session["stamp"] = stamp(get_user_now(user.id))
        flash("From now on, signing in asks for the 6-digit code from your authenticator app.")
        return redirect(url_for("console.home"))
    if user.totp_secret:
        return render_template("console/two_factor.html", title="Authenticator app", enabled=True)
    with uow() as s:
        secret = pending_totp_secret(s, user)
    return render_template("console/two_factor.html", title="Authenticator app", secret=secret,
                           uri=provisioning_uri(secret, user.email, issuer))
