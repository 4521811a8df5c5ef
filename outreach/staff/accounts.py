"""Console accounts: adding people, one-time password links, passwords, sign-in limits, authenticator codes.

Pure service functions on a SQLAlchemy session; the caller owns the transaction (one unit of work),
with one exception made on purpose: :func:`authenticate` and :func:`sso_sign_in` (single sign-on)
commit the record of a *failed* attempt (and a lock it causes) before they raise, so the sign-in
limits hold whatever the caller does with the exception.  Every refusal is an :class:`AccountError`
whose message can be shown as it is.

Secrets are never stored as given: a password as an argon2id hash, a one-time link as the SHA-256
of its token.  An account starts with no password; the person sets one from the link.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..db import audit
from ..models import PasswordToken, SignInAttempt, User
from ..clock import utcnow

if TYPE_CHECKING:
    from ..config import Settings

ROLES = ("admin", "coordinator", "researcher", "clinician")  # clinician: their care teams' patients only

TOKEN_LIFETIME = dt.timedelta(hours=24)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte "password" is only a way to burn CPU
LIMIT_WINDOW = dt.timedelta(minutes=15)
LOCK_DURATION = dt.timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20

COMMON_PASSWORDS_FILE = Path(__file__).resolve().parents[2] / "console" / "data" / "common-passwords.txt"

EXPIRED_LINK = "this link has expired or was already used; ask an administrator for a new one"
SIGN_IN_REFUSED = ("the email or password is not right, or the account is locked; "
                   "wait 15 minutes or ask an administrator")
CODE_NEEDED = "enter the 6-digit code from your authenticator app"
SSO_NO_ACCOUNT = ("there is no console account for {email}; ask a study administrator to add you with this "
                  "e-mail address")
SSO_DISABLED = "the console account for {email} is disabled; ask a study administrator"
SSO_LOCKED = ("the console account for {email} is locked after too many wrong attempts; wait 15 minutes "
              "or ask a study administrator")
SSO_ADDRESS_BLOCKED = "too many failed sign-ins from this address; wait 15 minutes and try again"
TOTP_ALREADY_ON = ("your account already uses an authenticator app; to move it to another app, turn it off "
                   "with its current code first, then set it up again")
CODE_WRONG = ("that code is not right; enter the 6-digit code your authenticator app shows now "
              "(check that the phone's clock is right)")

_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}$")
_hasher = PasswordHasher()


class AccountError(ValueError):
    """A refusal, in plain words that can be shown to the person as they are."""


class PasswordRefused(AccountError):
    """A password that breaks the rules; ``problems`` lists every rule it breaks."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class SignInError(AccountError):
    """Any failed sign-in.  Always the same message: it never says whether the account exists."""

    def __init__(self) -> None:
        super().__init__(SIGN_IN_REFUSED)


class SsoRefused(AccountError):
    """Single sign-on refused for an account reason (none with this e-mail, disabled, locked)."""


class TotpRequired(AccountError):
    """The password was right and the account uses an authenticator app: ask for its code."""

    def __init__(self, message: str = CODE_NEEDED) -> None:
        super().__init__(message)


class TotpRejected(TotpRequired):
    """The password was right but the authenticator code was not (counts as a failed attempt)."""

    def __init__(self) -> None:
        super().__init__(CODE_WRONG)


# --- people ----------------------------------------------------------------------------------------

def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def _check_email(email: str) -> str:
    email = normalise_email(email)
    if len(email) > 254 or not _EMAIL.match(email):
        raise AccountError(f"'{email}' does not look like an email address")
    return email


def _check_role(role: str) -> str:
    role = (role or "").strip().lower()
    if role not in ROLES:
        raise AccountError(f"'{role}' is not a role; choose one of {', '.join(ROLES)}")
    return role


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalise_email(email)))


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def _existing(session: Session, email: str) -> User:
    user = find_user(session, email)
    if user is None:
        raise AccountError(f"there is no account for {normalise_email(email)}")
    return user


def _attached(session: Session, user: User) -> User:
    """The session's own copy of ``user`` (views pass the user they loaded in an earlier request)."""
    own = session.get(User, user.id)
    if own is None:
        raise AccountError(f"there is no account for {user.email}")
    return own


def add_user(session: Session, email: str, role: str, *, actor: str,
             address: str | None = None) -> tuple[User, str]:
    """A new account with no password, and the token of a one-time link (valid 24 hours) to set one."""
    email = _check_email(email)
    role = _check_role(role)
    if find_user(session, email) is not None:
        raise AccountError(f"an account for {email} already exists")
    user = User(email=email, role=role)
    session.add(user)
    session.flush()
    token = _issue_token(session, user)
    audit(session, "user_added", actor=actor, address=address, email=email, role=role)
    return user, token


def _issue_token(session: Session, user: User) -> str:
    """A new one-time token for ``user``; any earlier unused one stops working."""
    session.execute(delete(PasswordToken).where(PasswordToken.user_id == user.id, PasswordToken.used_at.is_(None)))
    token = secrets.token_urlsafe(32)
    session.add(PasswordToken(user_id=user.id, token_hash=_token_hash(token), expires_at=utcnow() + TOKEN_LIFETIME))
    session.flush()
    return token


def _token_hash(token: str) -> str:
    return hashlib.sha256((token or "").encode("utf-8")).hexdigest()


def new_password_link_token(session: Session, user: User, *, actor: str, address: str | None = None) -> str:
    """A new one-time link (24 hours) for ``user``, e.g. after a forgotten password; earlier links stop working.
    The current password keeps working until a new one is set."""
    user = _attached(session, user)
    if user.disabled_at is not None:
        raise AccountError(f"the account for {user.email} is disabled")
    token = _issue_token(session, user)
    audit(session, "password_link_issued", actor=actor, address=address, email=user.email)
    return token


def _valid_token(session: Session, token: str, *, lock: bool = False) -> PasswordToken | None:
    query = (select(PasswordToken).join(User, User.id == PasswordToken.user_id)
             .where(PasswordToken.token_hash == _token_hash(token), PasswordToken.used_at.is_(None),
                    PasswordToken.expires_at > utcnow(), User.disabled_at.is_(None)))
    if lock:
        query = query.with_for_update(of=PasswordToken)
    return session.scalar(query)


def token_user(session: Session, token: str) -> User | None:
    """The person a one-time link belongs to, while it is unused, unexpired and their account is active."""
    row = _valid_token(session, token)
    return session.get(User, row.user_id) if row is not None else None


def set_password(session: Session, token: str, password: str, *, address: str | None = None) -> User:
    """Set the password of the link's owner and use the link up.  Refuses a bad link or a weak password."""
    row = _valid_token(session, token, lock=True)
    if row is None:
        raise AccountError(EXPIRED_LINK)
    user = session.get(User, row.user_id)
    problems = password_problems(password, user.email)
    if problems:
        raise PasswordRefused(problems)
    user.password_hash = _hasher.hash(password)
    user.locked_until = None
    row.used_at = utcnow()
    audit(session, "password_set", actor=user.email, address=address)
    session.flush()
    return user


# --- password rules --------------------------------------------------------------------------------

@cache
def common_passwords() -> frozenset[str]:
    """The common-password list (lower case)."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


_EDGE = re.compile(r"^[\W\d_]+|[\W\d_]+$")  # digits, symbols and spaces at either end


def password_problems(password: str, email: str) -> list[str]:
    """Every rule ``password`` breaks, in words; empty when it is acceptable."""
    password = password or ""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    lowered = password.lower()
    if password and len(set(password)) == 1:
        problems.append("the password must not be one character repeated")
    else:
        common = common_passwords()
        core = _EDGE.sub("", lowered)  # "Summer2024!" -> "summer": a common word with digits added
        if lowered in common or lowered.strip() in common or (core and core in common):
            problems.append("the password is too common or too easy to guess (a well-known password, "
                            "perhaps with numbers or symbols added); choose something less predictable")
    local = normalise_email(email).split("@", 1)[0]
    names = {local, local.split("+", 1)[0]}
    if any(len(name) >= 3 and name in lowered for name in names):
        problems.append("the password must not contain your email address or the part before the @")
    return problems


# --- signing in ------------------------------------------------------------------------------------

@cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str | None, password: str) -> bool:
    """argon2 verification; without a hash, one against a throw-away hash so the time taken is the same."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _failures_since(session: Session, column, value: str, since: dt.datetime) -> int:
    return session.scalar(select(func.count()).select_from(SignInAttempt)
                          .where(column == value, SignInAttempt.succeeded.is_(False), SignInAttempt.at >= since))


def authenticate(session: Session, email: str, password: str, *, address: str,
                 totp_code: str | None = None) -> User:
    """The user with this email and password (and authenticator code, when they use one).

    Raises :class:`SignInError` (one message for every reason), or :class:`TotpRequired` when the
    password was right and a code is needed, or :class:`TotpRejected` when that code was wrong.
    Every attempt is recorded; a failed one is committed before the error is raised.  Five failures
    for one email within 15 minutes lock that account for 15 minutes; twenty from one address within
    15 minutes refuse that address until its failures in the last 15 minutes fall below twenty.
    The step that only asks for the code is not counted as a failure (the password was right)."""
    now = utcnow()
    email = normalise_email(email)[:254]
    address = (address or "unknown")[:64]
    password = password or ""

    def fail(user: User | None, exc: AccountError | None = None) -> NoReturn:
        _refuse(session, user, email, address, now, exc or SignInError())

    if _address_blocked(session, address, now):
        fail(None)
    # Lock the account's row first: parallel guesses then queue, and each sees the failures before it
    # (without it, a burst of guesses on PostgreSQL all had their password checked).
    user = session.scalar(select(User).where(User.email == email).with_for_update()) if email else None
    right = (_verify(user.password_hash if user is not None else None, password[:MAX_PASSWORD_LENGTH])
             and len(password) <= MAX_PASSWORD_LENGTH)  # bounded work; no stored password is longer
    if user is None or not right or user.disabled_at is not None or _locked(user, now):
        fail(user)
    if user.totp_secret:
        if not (totp_code or "").strip():
            raise TotpRequired()
        if not _use_code(user, user.totp_secret, totp_code):
            fail(user, TotpRejected())
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    _record_sign_in(session, user, address, now, method="password")
    return user


def _address_blocked(session: Session, address: str, now: dt.datetime) -> bool:
    return _failures_since(session, SignInAttempt.address, address, now - LIMIT_WINDOW) >= MAX_FAILURES_PER_ADDRESS


def _refuse(session: Session, user: User | None, email: str, address: str, now: dt.datetime,
            exc: AccountError) -> NoReturn:
    """Record a failed attempt (and the lock it may cause), commit it, and raise ``exc``."""
    session.add(SignInAttempt(at=now, email=email, address=address, succeeded=False))
    if user is None:  # the same work as for an account, so timing says nothing about existence
        session.flush()
        _failures_since(session, SignInAttempt.email, email, now - LIMIT_WINDOW)
    elif not _locked(user, now):
        # failures since the window opened, the last lock ended or the last success, whichever is latest
        since = max(now - LIMIT_WINDOW, user.locked_until or dt.datetime.min,
                    user.last_sign_in_at or dt.datetime.min)
        session.flush()
        if _failures_since(session, SignInAttempt.email, email, since) >= MAX_FAILURES_PER_ACCOUNT:
            user.locked_until = now + LOCK_DURATION
            audit(session, "account_locked", actor=email, address=address, until=user.locked_until.isoformat())
    session.commit()  # the record of a failure must survive the caller rolling back
    raise exc


def _record_sign_in(session: Session, user: User, address: str, now: dt.datetime, *, method: str) -> None:
    user.last_sign_in_at = now
    user.locked_until = None
    session.add(SignInAttempt(at=now, email=user.email, address=address, succeeded=True))
    audit(session, "signed_in", actor=user.email, address=address, method=method)
    session.flush()


def sso_sign_in(session: Session, email: str, *, address: str, totp_code: str | None = None) -> User:
    """The active account with ``email``, which the institution's identity provider has vouched for
    (single sign-on: the console checked the provider's signed answer; no password is involved).

    Only an account an administrator added with this e-mail signs in, with its console role.  The same
    limits as a password sign-in hold: a disabled or locked account and a blocked address are refused,
    and an account with an authenticator app still needs its code (:class:`TotpRequired`, then
    :class:`TotpRejected` for a wrong one, which counts towards the lock).  The person has proved who
    they are, so a refusal says why in words (:class:`SsoRefused`).  The sign-in is recorded and audited
    as ``signed_in`` with ``method="sso"``; a refusal is recorded as a failed attempt."""
    now = utcnow()
    email = normalise_email(email)[:254]
    address = (address or "unknown")[:64]
    if _address_blocked(session, address, now):
        _refuse(session, None, email, address, now, SsoRefused(SSO_ADDRESS_BLOCKED))
    user = session.scalar(select(User).where(User.email == email).with_for_update()) if email else None
    if user is None:
        _refuse(session, None, email, address, now, SsoRefused(SSO_NO_ACCOUNT.format(email=email or "(none)")))
    if user.disabled_at is not None:
        _refuse(session, user, email, address, now, SsoRefused(SSO_DISABLED.format(email=email)))
    if _locked(user, now):
        _refuse(session, user, email, address, now, SsoRefused(SSO_LOCKED.format(email=email)))
    if user.totp_secret:
        if not (totp_code or "").strip():
            raise TotpRequired()
        if not _use_code(user, user.totp_secret, totp_code):
            _refuse(session, user, email, address, now, TotpRejected())
    _record_sign_in(session, user, address, now, method="sso")
    return user


def _locked(user: User, now: dt.datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


# --- authenticator app (TOTP) ----------------------------------------------------------------------

def start_totp(user: User) -> str:
    """A new secret for an authenticator app (not stored until :func:`enable_totp` checks a code)."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    """The ``otpauth://`` link an authenticator app reads (shown as a QR code or typed in)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def current_code_ok(session: Session, user: User, code: str | None) -> bool:
    """Whether ``code`` is the user's current authenticator code (asked again before turning it off); a code
    counts once."""
    user = session.scalar(select(User).where(User.id == user.id).with_for_update())
    return bool(user.totp_secret) and _use_code(user, user.totp_secret, code)


def totp_now() -> dt.datetime:
    """The time authenticator codes are read at (a seam: tests type successive codes without waiting)."""
    return utcnow()


def _code_step(secret: str, code: str | None) -> int | None:
    """The 30-second step whose code ``code`` is (the current one or either neighbour), or None."""
    code = re.sub(r"\s", "", code or "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    try:
        totp = pyotp.TOTP(secret)
        now = totp_now().replace(tzinfo=dt.UTC)
        step = totp.timecode(now)
        for offset in (0, -1, 1):
            if hmac.compare_digest(totp.generate_otp(step + offset), code):
                return step + offset
    except Exception:  # a malformed secret  # noqa: BLE001
        return None
    return None


def _use_code(user: User, secret: str, code: str | None) -> bool:
    """Whether ``code`` is a code of ``secret`` not used before by this account: a code seen once (a sign-in,
    turning it on or off) is refused after, so one read over a shoulder or from a phishing page cannot be
    played again.  Records its step on the (locked) user row."""
    step = _code_step(secret, code)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return False
    user.totp_last_step = step
    return True


def enable_totp(session: Session, user: User, secret: str, code: str, *, address: str | None = None) -> User:
    """Turn on authenticator codes for ``user`` once ``code`` shows their app has ``secret``.  An account that
    already has them keeps its secret: it is replaced only by turning codes off with the current one first."""
    user = session.scalar(select(User).where(User.id == user.id).with_for_update())
    if user.totp_secret:
        raise AccountError(TOTP_ALREADY_ON)
    if not secret or not _use_code(user, secret, code):
        raise AccountError(CODE_WRONG)
    user.totp_secret = secret
    user.totp_pending = None
    audit(session, "totp_enabled", actor=user.email, address=address)
    session.flush()
    return user


def disable_totp(session: Session, user: User, *, actor: str | None = None, address: str | None = None) -> User:
    """Turn authenticator codes off for ``user`` (themself, or an administrator when a phone is lost)."""
    user = _attached(session, user)
    user.totp_secret = None
    audit(session, "totp_disabled", actor=actor or user.email, address=address, email=user.email)
    session.flush()
    return user


def admin_needs_totp(settings: Settings, user: User) -> bool:
    """True when administrators must use an authenticator app and this administrator has not set one up."""
    return settings.require_2fa_for_admins and user.role == "admin" and not user.totp_secret


# --- administration --------------------------------------------------------------------------------

def _other_active_admins(session: Session, user: User) -> int:
    ids = session.scalars(select(User.id).where(User.role == "admin", User.disabled_at.is_(None), User.id != user.id)
                          .with_for_update()).all()
    return len(ids)


def _refuse_last_admin(session: Session, user: User) -> None:
    if user.role == "admin" and user.disabled_at is None and _other_active_admins(session, user) == 0:
        raise AccountError(f"{user.email} is the last active administrator; make another account an "
                           "administrator first")


def disable_user(session: Session, email: str, *, actor: str, address: str | None = None) -> User:
    """Stop ``email`` from signing in (their one-time links stop working too).  Nothing is deleted."""
    user = _existing(session, email)
    if user.disabled_at is not None:
        raise AccountError(f"the account for {user.email} is already disabled")
    _refuse_last_admin(session, user)
    user.disabled_at = utcnow()
    session.execute(delete(PasswordToken).where(PasswordToken.user_id == user.id, PasswordToken.used_at.is_(None)))
    audit(session, "user_disabled", actor=actor, address=address, email=user.email)
    session.flush()
    return user


def enable_user(session: Session, email: str, *, actor: str, address: str | None = None) -> User:
    """Let a disabled account sign in again (with its old password, if it had one)."""
    user = _existing(session, email)
    if user.disabled_at is None:
        raise AccountError(f"the account for {user.email} is not disabled")
    user.disabled_at = None
    user.locked_until = None
    audit(session, "user_enabled", actor=actor, address=address, email=user.email)
    session.flush()
    return user


def pending_totp_secret(session: Session, user: User) -> str:
    """The secret of an authenticator being set up, kept in the database until a code confirms it
    (a session cookie is signed, not encrypted: a secret there could be read by whoever has it)."""
    user = _attached(session, user)
    if not user.totp_pending:
        user.totp_pending = start_totp(user)
        session.flush()
    return user.totp_pending


def end_sessions(session: Session, user: User, *, address: str | None = None, reason: str = "signed out") -> None:
    """Sign ``user`` out everywhere: every session cookie issued before now stops working."""
    user = _attached(session, user)
    user.sessions_revoked_at = utcnow()
    audit(session, "signed_out", actor=user.email, address=address, reason=reason)
    session.flush()


def unlock_user(session: Session, email: str, *, actor: str, address: str | None = None) -> User:
    """End a lock after too many wrong passwords (the person is known and is locked out)."""
    user = _existing(session, email)
    if user.locked_until is None or user.locked_until <= utcnow():
        raise AccountError(f"the account for {user.email} is not locked")
    user.locked_until = None
    audit(session, "user_unlocked", actor=actor, address=address, email=user.email)
    session.flush()
    return user


def set_role(session: Session, email: str, role: str, *, actor: str, address: str | None = None) -> User:
    """Give ``email`` another role.  The last active administrator keeps theirs."""
    role = _check_role(role)
    user = _existing(session, email)
    if user.role == role:
        return user
    if role != "admin":
        _refuse_last_admin(session, user)
    old, user.role = user.role, role
    audit(session, "user_role_changed", actor=actor, address=address, email=user.email, old_role=old, new_role=role)
    session.flush()
    return user
