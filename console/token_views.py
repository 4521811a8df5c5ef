"""Personal access tokens for the data API (issue 22): a researcher or administrator makes one (shown once),
lists theirs with their last use, and revokes one.  Thin views over :mod:`outreach.staff.tokens`."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from outreach.clock import utcnow
from outreach.staff.tokens import TokenError, create_token, is_live, list_tokens, revoke_token

from .blueprint import address, bp, settings, uow
from .security import requires


def _page(new_token: str | None = None, error: str | None = None, name: str = "", status: int = 200):
    with uow() as s:
        tokens = list_tokens(s, g.user)
        s.expunge_all()
    now = utcnow()
    return render_template("console/tokens.html", title="Data API tokens", tokens=tokens, new_token=new_token,
                           error=error, name=name, days=settings().api_token_days, now=now,
                           is_live=lambda t: is_live(t, now), base=request.url_root.rstrip("/")), status


@bp.get("/tokens")
@requires("research")
def tokens():
    return _page()


@bp.post("/tokens")
@requires("research")
def token_create():
    name = request.form.get("name", "")
    try:
        with uow() as s:
            _, token = create_token(s, settings(), g.user, name, address=address())
    except TokenError as exc:
        return _page(error=f"{str(exc)[:1].upper()}{str(exc)[1:]}.", name=name, status=400)
    return _page(new_token=token)  # shown on this answer only (never stored, never in a redirect or a cookie)


@bp.post("/tokens/<int:token_id>/revoke")
@requires("research")
def token_revoke(token_id: int):
    with uow() as s:
        token = revoke_token(s, g.user, token_id, address=address())
        name = token.name if token is not None else None
    flash(f"The token '{name}' is revoked: it opens nothing any more." if name is not None
          else "There is no such token of yours.")
    return redirect(url_for("console.tokens"))
