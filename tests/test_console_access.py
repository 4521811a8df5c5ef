"""Who may open what in the console: every route × role, sign-in limits, CSRF, idle timeout, headers.

The real Flask app with the console on, on both databases."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from outreach.models import AuditEvent

from .conftest import CONSOLE_PASSWORD, csrf_token_of

EVERYONE = {"admin", "coordinator", "researcher", "clinician"}
STUDY = {"admin", "coordinator", "researcher"}  # the study's progress: no clinician (no research data)
CARE = {"admin", "clinician"}  # the care team's alliance alerts and check-ins
STAFF = {"admin", "coordinator"}
ADMIN = {"admin"}
PUBLIC = None  # no account needed
# endpoint -> roles that may open it.  A console route missing here fails test_every_route_is_in_the_table.
ROUTES = {
    "console.sign_in": PUBLIC, "console.set_password_page": PUBLIC,
    "console.sso_start": PUBLIC, "console.sso_callback": PUBLIC, "console.sso_code": PUBLIC,
    "console.sign_out": EVERYONE, "console.home": EVERYONE, "console.progress": STUDY,
    "console.dashboard": STUDY,
    "console.care": CARE, "console.care_acknowledge": CARE, "console.care_patient": CARE,
    "console.kiosk_start": CARE, "console.kiosk": PUBLIC, "console.kiosk_submit": PUBLIC,  # the tablet: a signed sheet
    "console.kiosk_lock": PUBLIC,  # the tablet left idle locks
    "console.two_factor": EVERYONE,
    "console.alerts": STAFF, "console.alert_list": STAFF, "console.take": STAFF, "console.resolve": STAFF,
    "console.flag": STAFF,
    "console.patients": STAFF, "console.patient": STAFF, "console.show_phone": STAFF, "console.send_text": STAFF,
    "console.hold": STAFF, "console.release": STAFF, "console.correct_phone": STAFF,
    "console.withdraw": STAFF, "console.withdrawals": STAFF,
    "console.inbox": STAFF, "console.inbox_handled": STAFF,
    "console.users": ADMIN, "console.user_add": ADMIN, "console.user_role": ADMIN, "console.user_disable": ADMIN,
    "console.user_link": ADMIN, "console.user_enable": ADMIN, "console.user_unlock": ADMIN, "console.audit_log": ADMIN,
    "console.audit_csv": ADMIN, "console.audit_filter": ADMIN, "console.settings_view": ADMIN,
    "console.waves": STAFF, "console.wave": STAFF, "console.wave_pause": STAFF, "console.wave_resume": STAFF, "console.wave_cancel": STAFF,
    "console.wave_launch": STAFF, "console.wave_live": STAFF, "console.imports": STAFF, "console.import_upload": STAFF,
    "console.import_start": STAFF, "console.admission_new": STAFF, "console.admission_record": STAFF,
    # a job's page and files are its owner's (404 for anyone else but an administrator)
    "console.job": EVERYONE, "console.job_status": EVERYONE, "console.job_file": EVERYONE,
    **{endpoint: {"admin", "researcher"} for endpoint in (  # exports, the report, data API tokens
        "console.exports", "console.export_start", "console.report", "console.report_job", "console.report_generate",
        "console.report_download", "console.tokens", "console.token_create", "console.token_revoke")},
}


def _routes(app):
    """(endpoint, method, path) of every console route, path arguments filled with 1."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console.") or rule.endpoint == "console.static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, path))
    return out


def test_every_route_is_in_the_table(console_app):
    assert {endpoint for endpoint, _, _ in _routes(console_app)} == set(ROUTES)


@pytest.mark.parametrize("role", ["admin", "coordinator", "researcher", "clinician"])
def test_each_role_opens_exactly_its_routes_and_gets_403_elsewhere(console_app, console_client, role):
    client = console_client(role)
    for endpoint, method, path in _routes(console_app):
        allowed = ROUTES[endpoint]
        if endpoint == "console.sign_out":
            continue  # would end this client's session
        response = client.open(path, method=method, data={"csrf_token": client.csrf})
        if allowed is None or role in allowed:
            assert response.status_code != 403, (role, method, path)
        else:
            assert response.status_code == 403, (role, method, path, response.status_code)
            assert "Your role does not give access to this page." in response.get_data(as_text=True)


def test_signed_out_visitors_are_sent_to_sign_in(console_app):
    client = console_app.test_client()
    for endpoint, method, path in _routes(console_app):
        if ROUTES[endpoint] is PUBLIC:
            continue
        response = client.open(path, method=method)
        assert response.status_code == 302 and response.headers["Location"].endswith("/console/sign-in"), path


def test_navigation_shows_only_what_the_role_may_open(console_client):
    researcher = console_client("researcher").get("/console/").get_data(as_text=True)
    assert ">Dashboard</a>" in researcher and "Study progress" not in researcher  # the dashboard superseded it
    for label in ("Crisis alerts", "Patients", "Inbox", "Users", "Audit log"):
        assert f">{label}" not in researcher
    admin = console_client("admin").get("/console/").get_data(as_text=True)
    for label in ("Crisis alerts", "Patients", "Inbox", "Users", "Audit log"):
        assert f">{label}" in admin


def test_console_pages_carry_security_headers(console_client):
    response = console_client("coordinator").get("/console/alerts")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script>" not in response.get_data(as_text=True)  # no inline script anywhere


def test_session_cookie_is_httponly_samesite_and_secure_unless_told_otherwise(console_env, make_user):
    from webhooks.app import create_app

    app = create_app({**console_env, "CONSOLE_INSECURE_COOKIES": "0"})
    try:
        make_user("secure@study.example.org", "admin")
        client = app.test_client()
        token = csrf_token_of(client.get("/console/sign-in", base_url="https://localhost").get_data(as_text=True))
        response = client.post("/console/sign-in", base_url="https://localhost",
                               headers={"Referer": "https://localhost/console/sign-in"},
                               data={"email": "secure@study.example.org", "password": CONSOLE_PASSWORD,
                                     "csrf_token": token})
        cookie = response.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    finally:
        app.extensions["outreach"]["engine"].dispose()


def test_a_form_without_its_csrf_token_is_refused(console_client):
    client = console_client("coordinator")
    response = client.post("/console/alerts/1/resolve", data={"note": "called, safe"})
    assert response.status_code == 400
    assert "This form was not sent from a page of this console" in response.get_data(as_text=True)


def test_the_sixth_wrong_password_locks_the_account_and_says_nothing_about_existence(console_app, make_user):
    make_user("lock@study.example.org", "coordinator")
    client = console_app.test_client()
    token = csrf_token_of(client.get("/console/sign-in").get_data(as_text=True))

    def attempt(email, password):
        return client.post("/console/sign-in", data={"email": email, "password": password, "csrf_token": token})

    unknown = attempt("nobody@study.example.org", "wrong password here").get_data(as_text=True)
    for _ in range(5):
        wrong = attempt("lock@study.example.org", "wrong password here")
        assert wrong.status_code == 200
    message = re.search(r'<div class="error-summary".*?<p>(.*?)</p>', wrong.get_data(as_text=True), re.S).group(1)
    assert message in unknown  # the same words for an unknown account
    locked = attempt("lock@study.example.org", CONSOLE_PASSWORD)
    assert locked.status_code == 200 and message in locked.get_data(as_text=True)


def test_idle_sessions_are_signed_out(console_client, monkeypatch):
    import time

    from console import security

    client = console_client("coordinator")
    assert client.get("/console/alerts").status_code == 200
    later = time.time() + 31 * 60
    monkeypatch.setattr(security, "now", lambda: later)
    response = client.get("/console/alerts")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/sign-in")
    page = client.get("/console/sign-in").get_data(as_text=True)
    assert "signed out after a period without activity" in page


def test_sign_out_ends_the_session(console_client):
    client = console_client("coordinator")
    client.post("/console/sign-out", data={"csrf_token": client.csrf})
    assert client.get("/console/alerts").status_code == 302


def test_without_secret_key_the_console_is_off_and_the_webhooks_run(app, twilio):
    assert app.test_client().get("/console/").status_code == 404
    status, _ = twilio.text("+14165550000", "hello")
    assert status == 200


def test_a_researcher_never_sees_a_phone_a_patient_id_or_a_message_body(console_client, make_patient,
                                                                         make_followup, twilio, run_cli):
    patient = make_patient(patient_id="SECRET-ID-77", phone="+14165550177")
    make_followup(patient)
    twilio.text(patient.phone, "yes")
    twilio.text(patient.phone, "my private words about my week")
    run_cli("waves", "launch", "--timepoint", "30", "--yes")
    client = console_client("researcher")
    pages = [client.get(path) for path in ("/console/", "/console/progress", "/console/account/two-factor")]
    for page in pages:
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        for secret in ("SECRET-ID-77", "4165550177", "416-555-0177", "555-0177", "private words"):
            assert secret not in html
    assert client.get(f"/console/patients/{patient.id}").status_code == 403


def test_viewing_the_alert_queue_is_audited_with_the_address(console_client, twilio, make_patient, make_followup,
                                                             session):
    patient = make_patient()
    make_followup(patient)
    twilio.text(patient.phone, "I want to kill myself")
    client = console_client("coordinator", email="coord@study.example.org")
    html = client.get("/console/alerts", environ_base={"REMOTE_ADDR": "10.1.2.3"}).get_data(as_text=True)
    assert "I want to kill myself" in html and "Alert #1" in html
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "viewed_alert_queue"))
    assert event.actor == "coord@study.example.org" and event.address == "10.1.2.3"
    assert event.details["alert_ids"] == [1]


def _secret_of(html: str) -> str:
    return re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', html).group(1)


def test_an_authenticator_code_once_turned_on_is_asked_at_sign_in(console_app, console_client, next_code):
    import pyotp

    client = console_client("admin", email="totp@study.example.org")
    secret = _secret_of(client.get("/console/account/two-factor").get_data(as_text=True))
    wrong = client.post("/console/account/two-factor", data={"code": "000000", "csrf_token": client.csrf})
    assert wrong.status_code == 200 and "There is a problem" in wrong.get_data(as_text=True)
    right = client.post("/console/account/two-factor",
                        data={"code": next_code(secret), "csrf_token": client.csrf})
    assert right.status_code == 302
    client.post("/console/sign-out", data={"csrf_token": client.csrf})

    fresh = console_app.test_client()
    token = csrf_token_of(fresh.get("/console/sign-in").get_data(as_text=True))
    form = {"email": "totp@study.example.org", "password": CONSOLE_PASSWORD, "csrf_token": token}
    asked = fresh.post("/console/sign-in", data=form)
    assert asked.status_code == 200 and "6-digit code from your authenticator app" in asked.get_data(as_text=True)
    assert fresh.get("/console/").status_code == 302  # not signed in yet
    done = fresh.post("/console/sign-in", data={**form, "code": next_code(secret)})
    assert done.status_code == 302 and fresh.get("/console/users").status_code == 200


def test_admins_must_set_up_a_code_first_when_required(console_env, make_user):
    from webhooks.app import create_app

    app = create_app({**console_env, "REQUIRE_2FA_FOR_ADMINS": "1"})
    try:
        make_user("boss@study.example.org", "admin")
        make_user("coord@study.example.org", "coordinator")
        for email, expected in [("boss@study.example.org", "/console/account/two-factor"),
                                ("coord@study.example.org", None)]:
            client = app.test_client()
            token = csrf_token_of(client.get("/console/sign-in").get_data(as_text=True))
            client.post("/console/sign-in", data={"email": email, "password": CONSOLE_PASSWORD, "csrf_token": token})
            response = client.get("/console/alerts")
            if expected:
                assert response.status_code == 302 and response.headers["Location"].endswith(expected)
            else:
                assert response.status_code == 200
    finally:
        app.extensions["outreach"]["engine"].dispose()


def test_a_page_refreshing_itself_does_not_keep_a_session_alive(console_client, monkeypatch):
    import time

    from console import security

    client = console_client("coordinator")
    start = time.time()
    client.get("/console/alerts")
    monkeypatch.setattr(security, "now", lambda: start + 20 * 60)
    assert client.get("/console/alerts/list", headers={"HX-Request": "true"}).status_code == 200
    monkeypatch.setattr(security, "now", lambda: start + 31 * 60)  # 31 minutes since a person did anything
    response = client.get("/console/alerts/list", headers={"HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/console/sign-in"


def test_turning_the_authenticator_code_off_needs_the_current_code(console_client, next_code):
    import pyotp

    client = console_client("coordinator")
    secret = _secret_of(client.get("/console/account/two-factor").get_data(as_text=True))
    client.post("/console/account/two-factor", data={"code": next_code(secret), "csrf_token": client.csrf})
    refused = client.post("/console/account/two-factor", data={"action": "disable", "code": "123456",
                                                               "csrf_token": client.csrf})
    assert "not the current code" in refused.get_data(as_text=True)
    client.post("/console/account/two-factor", data={"action": "disable", "code": next_code(secret),
                                                     "csrf_token": client.csrf})
    assert "Turn on" in client.get("/console/account/two-factor").get_data(as_text=True)


def test_parallel_wrong_guesses_still_lock_the_account(sessions, make_user):
    from concurrent.futures import ThreadPoolExecutor

    from outreach.staff.accounts import AccountError, authenticate
    from outreach.db import unit_of_work

    make_user("burst@study.example.org", "coordinator")

    def guess(password):
        try:
            with unit_of_work(sessions) as s:
                authenticate(s, "burst@study.example.org", password, address=f"10.9.0.{hash(password) % 200}")
            return "in"
        except AccountError:
            return "refused"

    attempts = [f"wrong guess number {i}" for i in range(24)]
    attempts.insert(12, CONSOLE_PASSWORD)  # the right password in the middle of a burst of guesses
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(guess, attempts))
    assert results == ["refused"] * 25  # more than five wrong guesses came first: locked, though right
    assert guess(CONSOLE_PASSWORD) == "refused"


def test_signing_out_ends_a_copied_session_cookie_too(console_app, console_client):
    client = console_client("coordinator")
    copy = console_app.test_client()
    cookie = client.get_cookie("outreach_session")
    copy.set_cookie("outreach_session", cookie.value)
    assert copy.get("/console/alerts").status_code == 200  # the copy works while the session lives
    client.post("/console/sign-out", data={"csrf_token": client.csrf})
    assert copy.get("/console/alerts").status_code == 302


def test_the_authenticator_secret_being_set_up_is_not_in_the_cookie(console_client):
    import base64
    import zlib

    client = console_client("coordinator")
    secret = _secret_of(client.get("/console/account/two-factor").get_data(as_text=True))
    payload = client.get_cookie("outreach_session").value.split(".")
    raw = payload[1] if payload[0] == "" else payload[0]  # itsdangerous: '.' prefix when compressed
    data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    text = zlib.decompress(data).decode() if payload[0] == "" else data.decode()
    assert secret not in text


def test_an_administrator_unlocks_a_locked_account(console_app, console_client, make_user, run_cli):
    make_user("locked@study.example.org", "coordinator")
    visitor = console_app.test_client()
    token = csrf_token_of(visitor.get("/console/sign-in").get_data(as_text=True))
    for _ in range(5):
        visitor.post("/console/sign-in", data={"email": "locked@study.example.org", "password": "wrong password x",
                                               "csrf_token": token})
    admin = console_client("admin")
    page = admin.get("/console/users").get_data(as_text=True)
    assert "Locked until" in page
    user_id = re.search(r'/console/users/(\d+)/unlock', page).group(1)
    admin.post(f"/console/users/{user_id}/unlock", data={"csrf_token": admin.csrf})
    assert "Locked until" not in admin.get("/console/users").get_data(as_text=True)
    done = visitor.post("/console/sign-in", data={"email": "locked@study.example.org", "password": CONSOLE_PASSWORD,
                                                  "csrf_token": token})
    assert done.status_code == 302
    assert "is not locked" in run_cli("users", "unlock", "locked@study.example.org").output


def test_behind_trusted_proxies_the_audit_records_the_clients_address(console_env, make_user, session):
    from webhooks.app import create_app

    app = create_app({**console_env, "TRUSTED_PROXIES": "1"})
    try:
        make_user("proxied@study.example.org", "coordinator")
        client = app.test_client()
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        token = csrf_token_of(client.get("/console/sign-in", headers=headers).get_data(as_text=True))
        client.post("/console/sign-in", headers=headers, data={"email": "proxied@study.example.org",
                                                               "password": CONSOLE_PASSWORD, "csrf_token": token})
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "signed_in"))
        assert event.address == "203.0.113.9"
    finally:
        app.extensions["outreach"]["engine"].dispose()


def test_an_authenticator_code_counts_once(console_app, console_client, next_code):
    import pyotp

    client = console_client("coordinator", email="once@study.example.org")
    secret = _secret_of(client.get("/console/account/two-factor").get_data(as_text=True))
    client.post("/console/account/two-factor", data={"code": next_code(secret), "csrf_token": client.csrf})
    client.post("/console/sign-out", data={"csrf_token": client.csrf})
    code = next_code(secret)
    first, second = console_app.test_client(), console_app.test_client()
    for c in (first, second):
        token = csrf_token_of(c.get("/console/sign-in").get_data(as_text=True))
        c.form = {"email": "once@study.example.org", "password": CONSOLE_PASSWORD, "csrf_token": token, "code": code}
    assert first.post("/console/sign-in", data=first.form).status_code == 302
    replayed = second.post("/console/sign-in", data=second.form)  # the same code, read over a shoulder
    assert replayed.status_code != 302 and "code is not right" in replayed.get_data(as_text=True)
    assert pyotp.TOTP(secret).verify(code, valid_window=2)  # a right code, refused only because it was used


def test_the_authenticator_secret_cannot_be_replaced_without_turning_it_off_first(console_client, next_code,
                                                                                   session):
    client = console_client("admin", email="keep@study.example.org")
    secret = _secret_of(client.get("/console/account/two-factor").get_data(as_text=True))
    client.post("/console/account/two-factor", data={"code": next_code(secret), "csrf_token": client.csrf})
    # someone at the unlocked screen posts the setup form again, with a code of a secret of their own
    import pyotp

    theirs = pyotp.random_base32()
    client.post("/console/account/two-factor", data={"code": pyotp.TOTP(theirs).now(), "csrf_token": client.csrf})
    from outreach.models import User

    session.rollback()
    user = session.scalar(select(User).where(User.email == "keep@study.example.org"))
    assert user.totp_secret == secret and user.totp_pending != theirs


def test_changing_the_password_or_the_authenticator_ends_the_other_sessions(console_app, console_client, next_code):
    client = console_client("coordinator", email="two-places@study.example.org")
    other = console_app.test_client()
    token = csrf_token_of(other.get("/console/sign-in").get_data(as_text=True))
    other.post("/console/sign-in", data={"email": "two-places@study.example.org", "password": CONSOLE_PASSWORD,
                                         "csrf_token": token})
    assert other.get("/console/").status_code == 200
    secret = _secret_of(client.get("/console/account/two-factor").get_data(as_text=True))
    client.post("/console/account/two-factor", data={"code": next_code(secret), "csrf_token": client.csrf})
    assert other.get("/console/").status_code == 302  # the other browser is signed out
    assert client.get("/console/").status_code == 200  # the one that changed it stays signed in
