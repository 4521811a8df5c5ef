"""Console accounts: the `outreach users` commands, one-time links, password rules, sign-in limits,
authenticator codes, and who the audit log names.  Every test runs on SQLite and PostgreSQL.

Sign-ins are made the way the console makes them: ``authenticate`` inside a unit of work, the error
caught outside it (so the work is rolled back), to show the limits hold anyway."""
from __future__ import annotations

import os
import pwd
import re
import time

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from outreach.staff import accounts
from outreach.staff.accounts import (
    AccountError,
    SignInError,
    TotpRejected,
    TotpRequired,
    add_user,
    admin_needs_totp,
    authenticate,
    disable_totp,
    disable_user,
    enable_totp,
    new_password_link_token,
    password_problems,
    set_password,
    set_role,
    start_totp,
    token_user,
)
from outreach.config import load_settings
from outreach.db import current_actor
from outreach.models import AuditEvent, Base, SignInAttempt, User

GOOD = "violet kettle drums at noon"
ADMIN = "cli:test-admin"
HERE = "198.51.100.4"
LINK = re.compile(r"at: (\S+)/console/set-password/([A-Za-z0-9_-]+)$", re.M)


@pytest.fixture
def person(uow):
    """A user with a password set: ``person(email, role=..., password=...)`` returns the email."""

    def make(email="jane.doe@example.org", role="coordinator", password=GOOD):
        with uow() as s:
            _, token = add_user(s, email, role, actor=ADMIN)
        with uow() as s:
            set_password(s, token, password)
        return email

    return make


def sign_in(uow, email, password, *, address=HERE, code=None):
    with uow() as s:
        user = authenticate(s, email, password, address=address, totp_code=code)
    return user


def refused(uow, email, password, *, address=HERE, code=None) -> str:
    """The message of a refused sign-in (a SignInError: nothing says why)."""
    with pytest.raises(SignInError) as exc:
        sign_in(uow, email, password, address=address, code=code)
    return str(exc.value)


def link_token(output: str) -> str:
    match = LINK.search(output)
    assert match, output
    return match.group(2)


# --- the CLI and one-time links ----------------------------------------------------------------------

def test_cli_add_prints_a_link_whose_token_sets_the_password_once(run_cli, uow):
    result = run_cli("users", "add", " Jane.Doe@Example.org ", "--role", "coordinator",
                     extra_env={"PUBLIC_BASE_URL": "https://outreach.example.org/"})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("account created for jane.doe@example.org (coordinator); "
                                    "set a password within 24 hours at: https://outreach.example.org/console/"
                                    "set-password/")
    token = link_token(result.output)
    with uow() as s:
        assert token_user(s, token).email == "jane.doe@example.org"
        set_password(s, token, GOOD, address=HERE)
    assert sign_in(uow, "JANE.DOE@example.org", GOOD).email == "jane.doe@example.org"
    with uow() as s:
        assert token_user(s, token) is None
        with pytest.raises(AccountError, match="this link has expired or was already used; ask an administrator"):
            set_password(s, token, "another fine passphrase")
    assert refused(uow, "jane.doe@example.org", "another fine passphrase") == accounts.SIGN_IN_REFUSED


def test_link_works_for_24_hours_only(run_cli, uow, clock):
    early = link_token(run_cli("users", "add", "early@example.org", "--role", "researcher").output)
    late = link_token(run_cli("users", "add", "late@example.org", "--role", "researcher").output)
    assert "http://localhost:5000/console/set-password/" in run_cli("users", "add", "x@example.org", "--role",
                                                                    "researcher").output
    clock(hours=23)
    with uow() as s:
        set_password(s, early, GOOD)
    clock(hours=2)
    with uow() as s:
        assert token_user(s, late) is None
        with pytest.raises(AccountError, match="expired"):
            set_password(s, late, GOOD)


def test_reset_prints_a_new_link_and_the_old_one_stops_working(run_cli, uow):
    first = link_token(run_cli("users", "add", "sam@example.org", "--role", "coordinator").output)
    result = run_cli("users", "reset", "SAM@example.org")
    assert result.exit_code == 0 and result.output.startswith("new link for sam@example.org; set a password")
    second = link_token(result.output)
    assert second != first
    with uow() as s:
        with pytest.raises(AccountError, match="expired or was already used"):
            set_password(s, first, GOOD)
    with uow() as s:
        set_password(s, second, GOOD)
    assert sign_in(uow, "sam@example.org", GOOD).email == "sam@example.org"


def test_cli_refusals_are_one_line_and_exit_1(run_cli):
    assert run_cli("users", "add", "amy@example.org", "--role", "admin").exit_code == 0
    for args, message in [
        (("users", "add", "Amy@Example.org", "--role", "coordinator"), "an account for amy@example.org already exists"),
        (("users", "add", "not-an-email", "--role", "coordinator"), "does not look like an email address"),
        (("users", "disable", "nobody@example.org"), "there is no account for nobody@example.org"),
        (("users", "reset", "nobody@example.org"), "there is no account for nobody@example.org"),
        (("users", "role", "nobody@example.org", "researcher"), "there is no account for nobody@example.org"),
    ]:
        result = run_cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: ") and message in result.output
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert run_cli("users", "add", "bob@example.org", "--role", "boss").exit_code == 2  # click names the choices


def test_cli_list_shows_role_status_2fa_and_last_sign_in_but_no_password_data(run_cli, uow, person, session,
                                                                              next_code):
    person("amy@example.org", role="admin")
    run_cli("users", "add", "new@example.org", "--role", "researcher")
    person("gone@example.org")
    assert run_cli("users", "disable", "gone@example.org").exit_code == 0
    with uow() as s:
        amy = s.scalar(select(User).where(User.email == "amy@example.org"))
        secret = start_totp(amy)
        enable_totp(s, amy, secret, next_code(secret))
    sign_in(uow, "amy@example.org", GOOD, code=next_code(secret))
    out = run_cli("users", "list").output
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["amy@example.org"][1:4] == ["admin", "active", "on"]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d E[SD]T$", out.splitlines()[1])  # the coordinators' zone
    assert rows["new@example.org"][1:] == ["researcher", "no", "password", "off", "never"]
    assert rows["gone@example.org"][1:3] == ["coordinator", "disabled"]
    hashes = session.scalars(select(User.password_hash).where(User.password_hash.is_not(None))).all()
    assert hashes and not any(h in out or h[-16:] in out for h in hashes) and "argon2" not in out


# --- passwords ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("password, message", [
    ("Tr0ub4dor&3", "at least 12 characters"),
    ("password123456", "too common"),
    ("Qwertyuiop123", "too common"),
    ("Summer2024!!", "too common"),
    ("1qaz2wsx3edc", "too common"),
    ("my jane.doe password!", "must not contain your email address"),
    ("zzzzzzzzzzzzzzzz", "one character repeated"),
])
def test_weak_passwords_are_refused_with_their_reason_and_the_link_stays_usable(uow, password, message, session):
    with uow() as s:
        _, token = add_user(s, "jane.doe@example.org", "coordinator", actor=ADMIN)
    with uow() as s:
        with pytest.raises(AccountError, match=message):
            set_password(s, token, password)
    assert session.scalar(select(User.password_hash)) is None
    with uow() as s:
        set_password(s, token, GOOD)  # the refusal did not use the link up


def test_password_rules_in_words():
    assert password_problems(GOOD, "jane.doe@example.org") == []
    assert password_problems("dragon", "a@b.org") == ["the password must be at least 12 characters long",
                                                      "the password is too common or too easy to guess (a "
                                                      "well-known password, perhaps with numbers or symbols "
                                                      "added); choose something less predictable"]
    assert len(accounts.common_passwords()) > 20_000


def test_the_hash_is_argon2_and_the_password_and_token_are_stored_nowhere(uow, session):
    with uow() as s:
        _, token = add_user(s, "jane.doe@example.org", "coordinator", actor=ADMIN)
    with uow() as s:
        set_password(s, token, GOOD, address=HERE)
    sign_in(uow, "jane.doe@example.org", GOOD)
    session.rollback()
    assert session.scalar(select(User.password_hash)).startswith("$argon2id$")
    dump = " ".join(repr(row) for table in Base.metadata.sorted_tables
                    for row in session.execute(table.select()).all())
    assert "jane.doe@example.org" in dump  # the dump does hold the data
    assert GOOD not in dump and token not in dump


def test_an_old_hash_is_upgraded_at_sign_in(uow, person, session):
    email = person()
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD)
    with uow() as s:
        s.scalar(select(User).where(User.email == email)).password_hash = weak
    sign_in(uow, email, GOOD)
    session.rollback()
    stored = session.scalar(select(User.password_hash))
    assert stored != weak and not PasswordHasher().check_needs_rehash(stored)
    assert sign_in(uow, email, GOOD).email == email


# --- sign-in limits ----------------------------------------------------------------------------------

def test_five_wrong_passwords_lock_even_the_right_one_for_15_minutes(uow, person, clock, session):
    email = person()
    for _ in range(5):
        assert refused(uow, email, "wrong password here") == accounts.SIGN_IN_REFUSED
    assert refused(uow, email, GOOD) == accounts.SIGN_IN_REFUSED
    assert session.scalar(select(User.locked_until)) is not None
    clock(minutes=14)
    assert refused(uow, email, GOOD) == accounts.SIGN_IN_REFUSED
    clock(minutes=2)
    assert sign_in(uow, email, GOOD).email == email
    assert refused(uow, email, "wrong password here") == accounts.SIGN_IN_REFUSED  # the count starts again
    assert sign_in(uow, email, GOOD).email == email
    session.rollback()
    rows = session.execute(select(SignInAttempt.succeeded).where(SignInAttempt.email == email)
                           .order_by(SignInAttempt.id)).scalars().all()
    assert rows == [False] * 7 + [True, False, True]


def test_four_failures_and_a_success_do_not_lock(uow, person):
    email = person()
    for _ in range(4):
        refused(uow, email, "wrong password here")
    assert sign_in(uow, email, GOOD).email == email
    for _ in range(4):
        refused(uow, email, "wrong password here")
    assert sign_in(uow, email, GOOD).email == email


def test_an_unknown_email_gets_the_same_message_as_a_wrong_password(uow, person, session):
    email = person()
    wrong = refused(uow, email, "wrong password here")
    unknown = refused(uow, "nobody@example.org", GOOD)
    with uow() as s:
        add_user(s, "new@example.org", "researcher", actor=ADMIN)
    no_password_yet = refused(uow, "new@example.org", "")
    assert wrong == unknown == no_password_yet == accounts.SIGN_IN_REFUSED
    assert "nobody@example.org" in session.scalars(select(SignInAttempt.email)).all()


def test_twenty_failures_from_one_address_block_it_for_every_account(uow, person, clock):
    email = person()
    for n in range(20):
        refused(uow, f"guess{n}@example.org", "wrong password here", address="203.0.113.50")
    assert refused(uow, email, GOOD, address="203.0.113.50") == accounts.SIGN_IN_REFUSED
    assert sign_in(uow, email, GOOD, address="192.0.2.8").email == email  # another address is not blocked
    clock(minutes=16)
    assert sign_in(uow, email, GOOD, address="203.0.113.50").email == email


def test_a_disabled_account_cannot_sign_in_and_its_links_stop_working(run_cli, uow, person):
    email = person()
    with uow() as s:
        token = new_password_link_token(s, s.scalar(select(User).where(User.email == email)), actor=ADMIN)
    assert run_cli("users", "disable", email).output == f"account {email} disabled\n"
    assert refused(uow, email, GOOD) == accounts.SIGN_IN_REFUSED
    with uow() as s:
        assert token_user(s, token) is None
    assert run_cli("users", "disable", email).exit_code == 1
    assert run_cli("users", "enable", email).exit_code == 0
    assert sign_in(uow, email, GOOD).email == email


# --- authenticator codes -----------------------------------------------------------------------------

def _wrong_code(secret: str) -> str:
    """A 6-digit code the app does not show now, nor just before or after."""
    totp, now = pyotp.TOTP(secret), time.time()
    valid = {totp.at(now, counter_offset=k) for k in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in valid)


def test_a_code_is_required_once_the_authenticator_app_is_on(uow, person, next_code):
    email = person()
    with uow() as s:
        user = s.scalar(select(User).where(User.email == email))
    secret = start_totp(user)
    with uow() as s:  # the user object comes from another session, as in the console
        with pytest.raises(AccountError, match="code is not right"):
            enable_totp(s, user, secret, _wrong_code(secret))
    with uow() as s:
        enable_totp(s, user, secret, next_code(secret), address=HERE)
    with pytest.raises(TotpRequired) as needed:
        sign_in(uow, email, GOOD)
    assert str(needed.value) == "enter the 6-digit code from your authenticator app"
    with pytest.raises(TotpRejected):
        sign_in(uow, email, GOOD, code=_wrong_code(secret))
    assert refused(uow, email, "wrong password here", code=next_code(secret)) == accounts.SIGN_IN_REFUSED
    assert sign_in(uow, email, GOOD, code=next_code(secret)).email == email
    for _ in range(6):  # being asked for the code is not a failure: it never locks the account
        with pytest.raises(TotpRequired):
            sign_in(uow, email, GOOD)
    spaced = next_code(secret)
    assert sign_in(uow, email, GOOD, code=f"{spaced[:3]} {spaced[3:]}")
    with uow() as s:
        disable_totp(s, user, actor=email, address=HERE)
    assert sign_in(uow, email, GOOD).email == email


def test_wrong_codes_lock_the_account_like_wrong_passwords(uow, person, next_code):
    email = person()
    with uow() as s:
        user = s.scalar(select(User).where(User.email == email))
        secret = start_totp(user)
        enable_totp(s, user, secret, next_code(secret))
    for _ in range(5):
        with pytest.raises(TotpRejected):
            sign_in(uow, email, GOOD, code=_wrong_code(secret))
    assert refused(uow, email, GOOD, code=next_code(secret)) == accounts.SIGN_IN_REFUSED


def test_admins_need_the_app_only_when_the_setting_says_so(uow):
    with uow() as s:
        admin, _ = add_user(s, "amy@example.org", "admin", actor=ADMIN)
        coordinator, _ = add_user(s, "cas@example.org", "coordinator", actor=ADMIN)
    strict, relaxed = load_settings({"REQUIRE_2FA_FOR_ADMINS": "1"}), load_settings({"REQUIRE_2FA_FOR_ADMINS": "0"})
    assert admin_needs_totp(strict, admin) and not admin_needs_totp(relaxed, admin)
    assert not admin_needs_totp(strict, coordinator)
    admin.totp_secret = start_totp(admin)
    assert not admin_needs_totp(strict, admin)


# --- administration ----------------------------------------------------------------------------------

def test_the_last_active_administrator_cannot_be_demoted_or_disabled(run_cli):
    run_cli("users", "add", "amy@example.org", "--role", "admin")
    for args in (("users", "role", "amy@example.org", "coordinator"), ("users", "disable", "amy@example.org")):
        result = run_cli(*args)
        assert result.exit_code == 1
        assert "error: amy@example.org is the last active administrator" in result.output
    run_cli("users", "add", "ben@example.org", "--role", "admin")
    assert run_cli("users", "disable", "ben@example.org").exit_code == 0
    assert run_cli("users", "role", "amy@example.org", "researcher").exit_code == 1  # a disabled admin does not count
    assert run_cli("users", "enable", "ben@example.org").exit_code == 0
    result = run_cli("users", "role", "AMY@example.org", "Coordinator")
    assert result.exit_code == 0 and result.output == "amy@example.org is now coordinator\n"
    assert run_cli("users", "role", "ben@example.org", "researcher").exit_code == 1


def test_current_actor_is_the_operating_system_user_whatever_the_environment_says(monkeypatch, run_cli, session):
    os_user = pwd.getpwuid(os.getuid()).pw_name
    for name in ("OUTREACH_ACTOR", "USER", "LOGNAME", "USERNAME", "LNAME"):
        monkeypatch.setenv(name, "mallory")
    assert current_actor() == f"cli:{os_user}"
    result = run_cli("users", "add", "amy@example.org", "--role", "admin",
                     extra_env={"OUTREACH_ACTOR": "mallory", "USER": "mallory", "LOGNAME": "mallory"})
    assert result.exit_code == 0
    assert session.scalar(select(AuditEvent.actor).where(AuditEvent.action == "user_added")) == f"cli:{os_user}"


def test_account_changes_and_sign_ins_are_audited_with_the_address(uow, session):
    with uow() as s:
        add_user(s, "amy@example.org", "admin", actor=ADMIN)
        _, token = add_user(s, "jo@example.org", "researcher", actor="amy@example.org", address="192.0.2.1")
    with uow() as s:
        set_password(s, token, GOOD, address="192.0.2.2")
    sign_in(uow, "jo@example.org", GOOD, address="192.0.2.3")
    with uow() as s:
        set_role(s, "jo@example.org", "coordinator", actor="amy@example.org", address="192.0.2.4")
        disable_user(s, "jo@example.org", actor="amy@example.org", address="192.0.2.5")
    session.rollback()
    events = session.execute(select(AuditEvent.action, AuditEvent.actor, AuditEvent.address, AuditEvent.details)
                             .where(AuditEvent.address.is_not(None)).order_by(AuditEvent.id)).all()
    assert [tuple(e[:3]) for e in events] == [
        ("user_added", "amy@example.org", "192.0.2.1"),
        ("password_set", "jo@example.org", "192.0.2.2"),
        ("signed_in", "jo@example.org", "192.0.2.3"),
        ("user_role_changed", "amy@example.org", "192.0.2.4"),
        ("user_disabled", "amy@example.org", "192.0.2.5"),
    ]
    assert events[0].details == {"email": "jo@example.org", "role": "researcher"}
    assert events[3].details == {"email": "jo@example.org", "old_role": "researcher", "new_role": "coordinator"}


def test_the_common_password_list_is_as_long_as_the_readme_says():
    from outreach.staff.accounts import common_passwords

    assert len(common_passwords()) >= 30_000  # README: "about 31,000 common passwords"
