"""Personal access tokens for the data API (issue 22): a researcher or administrator makes one in the console,
sees it once, and a script sends it as ``Authorization: Bearer TOKEN``.

Only the token's SHA-256 is stored (a token is 32 random bytes, so a plain hash is enough: nothing to guess).
Each has a name, an expiry (``API_TOKEN_DAYS``), its last use, and can be revoked.  A token acts as its person
with that person's role *now*: disabled, or no longer a researcher or administrator, and it answers no more.
Tokens never reach identified data (the API has no such route).  Creating and revoking are audited.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..config import Settings
from ..db import audit
from ..models import AccessToken, User

PREFIX = "otk_"  # tells a token apart in a script or a leaked log (secret scanners can look for it)
ROLES = frozenset({"admin", "researcher"})  # who may hold one (the console's "research" area)
NAME_MAX = 100
LIVE_MAX = 20  # live tokens per person: enough for every laptop and server, few enough to keep track of


class TokenError(ValueError):
    """A token cannot be made or used; ``status`` is the HTTP answer (400, 401 or 403), the message is words."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, settings: Settings, user: User, name: str, *, address: str | None = None,
                 now: dt.datetime | None = None) -> tuple[AccessToken, str]:
    """A new token for ``user``: (its row, the token itself, to be shown once and never again)."""
    now = now or utcnow()
    if user.role not in ROLES:
        raise TokenError("only researchers and administrators may have a token for the data API", 403)
    name = " ".join((name or "").split())
    if not name:
        raise TokenError("give the token a name that says where it is used (for example 'laptop R scripts')")
    if len(name) > NAME_MAX:
        raise TokenError(f"the name is longer than {NAME_MAX} characters")
    live = [t for t in list_tokens(session, user) if is_live(t, now)]
    if len(live) >= LIVE_MAX:
        raise TokenError(f"you have {len(live)} tokens in use already; revoke one you no longer need first")
    token = PREFIX + secrets.token_urlsafe(32)
    row = AccessToken(user_id=user.id, name=name, token_hash=hash_token(token), created_at=now,
                      expires_at=now + dt.timedelta(days=settings.api_token_days))
    session.add(row)
    session.flush()
    audit(session, "api_token_created", actor=user.email, address=address, token_id=row.id, name=name,
          expires_at=row.expires_at.isoformat(timespec="seconds"))
    return row, token


def is_live(token: AccessToken, now: dt.datetime | None = None) -> bool:
    return token.revoked_at is None and token.expires_at > (now or utcnow())


def list_tokens(session: Session, user: User) -> list[AccessToken]:
    """The person's tokens, newest first (revoked and expired ones too, so their last use can be read)."""
    return list(session.scalars(select(AccessToken).where(AccessToken.user_id == user.id)
                                .order_by(AccessToken.created_at.desc(), AccessToken.id.desc())))


def revoke_token(session: Session, user: User, token_id: int, *, address: str | None = None,
                 now: dt.datetime | None = None) -> AccessToken | None:
    """Revoke one of the person's own tokens; None when it is not theirs (or not there).  Revoking twice is
    harmless."""
    token = session.get(AccessToken, token_id)
    if token is None or token.user_id != user.id:
        return None
    if token.revoked_at is None:
        token.revoked_at = now or utcnow()
        audit(session, "api_token_revoked", actor=user.email, address=address, token_id=token.id, name=token.name)
    return token


@dataclass
class Caller:
    """Who a request's token speaks for."""

    token_id: int
    token_name: str
    email: str
    role: str


def authenticate(session: Session, authorization: str | None, *, now: dt.datetime | None = None) -> Caller:
    """The person behind ``Authorization: Bearer TOKEN``, their token's last use recorded; TokenError (401:
    no token, or not one that works; 403: the person may no longer use the API) otherwise."""
    now = now or utcnow()
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise TokenError("send your personal access token as 'Authorization: Bearer TOKEN' (make one in the "
                         "console: API tokens)", 401)
    token = session.scalar(select(AccessToken).where(AccessToken.token_hash == hash_token(value)))
    if token is None:
        raise TokenError("this token is not known: check it was copied whole, or make a new one in the console", 401)
    if token.revoked_at is not None:
        raise TokenError("this token was revoked; make a new one in the console", 401)
    if token.expires_at <= now:
        raise TokenError(f"this token expired on {token.expires_at:%Y-%m-%d}; make a new one in the console", 401)
    user = session.get(User, token.user_id)
    if user is None or user.disabled_at is not None:
        raise TokenError("the account this token belongs to is disabled", 401)
    if user.role not in ROLES:
        raise TokenError("the data API is for researchers and administrators; this account's role does not "
                         "give access", 403)
    token.last_used_at = now
    return Caller(token_id=token.id, token_name=token.name, email=user.email, role=user.role)
