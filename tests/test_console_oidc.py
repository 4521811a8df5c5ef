"""Single sign-on (issue 22) against a real OpenID Connect provider on loopback, on both databases.

The provider is ``oidc-provider-mock`` (authlib's authorization server) served on a loopback port, with a
thin WSGI layer in front that enforces PKCE (S256) the way a real provider does (the mock alone ignores
it) and can play a provider that issues its tokens to another application.  Nothing of the console's
side is stubbed: it reads the discovery document, the keys and the token over HTTP.  The tests play the
person's browser with Flask's test client (the console) and ``requests`` (the provider's consent page).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import re
import threading
import time
import urllib.parse

import pyotp
import pytest
import requests
from oidc_provider_mock import app as provider_app
from sqlalchemy import select
from werkzeug.serving import make_server

from outreach.config import ConfigError
from outreach.models import AuditEvent, SignInAttempt, User

from .conftest import CONSOLE_PASSWORD, csrf_token_of

CLIENT_ID = "outreach-console"
CLIENT_SECRET = "sso-client-secret-for-tests-9f3a"


class Provider:
    """oidc-provider-mock behind a layer that checks PKCE and can swap the client the tokens are issued to."""

    def __init__(self, **options) -> None:
        self.app = provider_app(require_nonce=True, **options)
        self.as_client: str | None = None  # when set, the provider issues the code and token to this client
        self.challenges: dict[str, tuple[str | None, str | None]] = {}
        self.pkce_checked = 0
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)

    def set_user(self, sub: str, **claims) -> None:
        """The claims the provider gives for ``sub`` (by default only ``email`` = ``sub``)."""
        assert requests.put(f"{self.issuer}/users/{urllib.parse.quote(sub)}", json=claims, timeout=5).status_code == 204

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/oauth2/authorize":
            query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
            if self.as_client:
                query["client_id"] = self.as_client
                environ["QUERY_STRING"] = urllib.parse.urlencode(query)

            def remember_challenge(status, headers, exc_info=None):
                location = dict(headers).get("Location", "")
                code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query)).get("code")
                if code:
                    self.challenges[code] = (query.get("code_challenge"), query.get("code_challenge_method"))
                return start_response(status, headers, exc_info)

            return self.app(environ, remember_challenge)
        if path == "/oauth2/token":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            form = dict(urllib.parse.parse_qsl(body.decode()))
            challenge, method = self.challenges.pop(form.get("code", ""), (None, None))
            verifier = form.get("code_verifier", "").encode()
            expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if method != "S256" or not challenge or expected != challenge:
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [json.dumps({"error": "invalid_grant", "error_description": "PKCE check failed"}).encode()]
            self.pkce_checked += 1
            if self.as_client:
                secret = base64.b64decode(environ["HTTP_AUTHORIZATION"].split()[1]).decode().split(":", 1)[1]
                environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(
                    f"{self.as_client}:{secret}".encode()).decode()
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    yield p
    p.stop()


@pytest.fixture(autouse=True)
def _provider_as_itself(provider):
    provider.as_client = None
    yield
    provider.as_client = None


@pytest.fixture
def sso_env(console_env, provider):
    return {**console_env, "OIDC_ISSUER": provider.issuer, "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET}


@pytest.fixture
def make_app():
    from webhooks.app import create_app

    apps = []

    def make(env):
        application = create_app(env)
        apps.append(application)
        return application

    yield make
    for application in apps:
        application.extensions["outreach"]["engine"].dispose()


@pytest.fixture
def sso_app(make_app, sso_env):
    return make_app(sso_env)


# --- playing the person's browser ----------------------------------------------------------------------------

def start(client) -> str:
    """Click "Sign in with your institution's account": the provider's authorization URL."""
    response = client.get("/console/sign-in/sso")
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def consent(authorize_url: str, sub: str, **changed) -> str:
    """Sign in at the provider as ``sub`` (its consent page's form); the URL it sends the browser back to.
    ``changed`` alters the authorization request's parameters first, as an attacker in the middle could."""
    parts = urllib.parse.urlsplit(authorize_url)
    query = {**dict(urllib.parse.parse_qsl(parts.query)), **changed}
    url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    assert requests.get(url, timeout=5).status_code == 200  # the provider's sign-in page
    response = requests.post(url, data={"sub": sub}, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def back(client, callback_url: str):
    """The browser following the provider's redirect back to the console."""
    parts = urllib.parse.urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}")


def sso_sign_in(client, sub: str, **changed):
    return back(client, consent(start(client), sub, **changed))


def signed_in_as(client) -> str | None:
    response = client.get("/console/")
    if response.status_code != 200:
        return None
    html = response.get_data(as_text=True)
    return html.split("Sign out ", 1)[1].split("<", 1)[0].strip() if "Sign out " in html else None


def page_text(response) -> str:
    return " ".join(response.get_data(as_text=True).replace("&#39;", "'").split())


# --- a good sign-in ------------------------------------------------------------------------------------------

def test_a_person_an_admin_added_signs_in_through_the_provider_and_keeps_their_console_role(
        sso_app, provider, make_user, session):
    make_user("coord@study.example.org", "coordinator")
    # the provider's answer says "admin" and spells the address in capitals: neither matters
    provider.set_user("c-123", email="Coord@Study.example.org", email_verified=True, role="admin",
                      groups=["admins"])
    client = sso_app.test_client()
    page = client.get("/console/sign-in").get_data(as_text=True)
    assert "Sign in with your institution's account" in page and 'name="password"' in page

    authorize_url = start(client)
    request = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))
    assert authorize_url.startswith(provider.issuer + "/oauth2/authorize?")
    assert request["client_id"] == CLIENT_ID and request["scope"] == "openid email"
    assert request["redirect_uri"] == "http://localhost/console/sign-in/sso/callback"
    assert request["code_challenge_method"] == "S256" and len(request["code_challenge"]) == 43
    assert request["state"] and request["nonce"] and request["response_type"] == "code"

    checked_before = provider.pkce_checked
    response = back(client, consent(authorize_url, "c-123"))
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/")
    assert provider.pkce_checked == checked_before + 1  # the code was exchanged with the right verifier
    assert signed_in_as(client) == "coord@study.example.org"
    home = client.get("/console/").get_data(as_text=True)
    assert ">Users<" not in home  # a coordinator's navigation
    assert client.get("/console/users").status_code == 403

    session.rollback()
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "signed_in")).one()
    assert (event.actor, event.address, event.details) == ("coord@study.example.org", "127.0.0.1", {"method": "sso"})
    attempt = session.scalars(select(SignInAttempt)).one()
    assert attempt.succeeded and attempt.email == "coord@study.example.org"
    assert session.scalar(select(User.last_sign_in_at).where(User.email == "coord@study.example.org")) is not None


def test_sign_out_and_the_idle_timeout_work_as_after_a_password(sso_app, provider, make_user, session, monkeypatch):
    from console import security

    make_user("res@study.example.org", "researcher")
    client = sso_app.test_client()
    sso_sign_in(client, "res@study.example.org")
    assert signed_in_as(client) == "res@study.example.org"
    token = csrf_token_of(client.get("/console/").get_data(as_text=True))
    response = client.post("/console/sign-out", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/sign-in")
    assert "You are signed out." in client.get("/console/sign-in").get_data(as_text=True)
    assert signed_in_as(client) is None

    other = sso_app.test_client()
    sso_sign_in(other, "res@study.example.org")
    assert signed_in_as(other) == "res@study.example.org"
    later = time.time() + 31 * 60
    monkeypatch.setattr(security, "now", lambda: later)
    response = other.get("/console/progress")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/sign-in")
    assert "signed out after a period without activity" in other.get("/console/sign-in").get_data(as_text=True)
    session.rollback()
    reasons = session.scalars(select(AuditEvent.details).where(AuditEvent.action == "signed_out")).all()
    assert [r["reason"] for r in reasons] == ["signed out", "no activity"]


def test_an_account_with_an_authenticator_app_gives_its_code_after_the_provider(sso_app, provider, make_user, uow,
                                                                               session):
    make_user("two@study.example.org", "admin")
    secret = pyotp.random_base32()
    with uow() as s:
        s.scalar(select(User).where(User.email == "two@study.example.org")).totp_secret = secret
    client = sso_app.test_client()
    response = sso_sign_in(client, "two@study.example.org")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/sign-in/sso/code")
    assert signed_in_as(client) is None  # not yet
    page = client.get("/console/sign-in/sso/code")
    assert "6-digit code from your authenticator app" in page.get_data(as_text=True)
    token = csrf_token_of(page.get_data(as_text=True))
    wrong = client.post("/console/sign-in/sso/code", data={"csrf_token": token, "code": "000000"})
    assert "that code is not right" in page_text(wrong).lower() and signed_in_as(client) is None
    right = client.post("/console/sign-in/sso/code", data={"csrf_token": token, "code": pyotp.TOTP(secret).now()})
    assert right.status_code == 302 and signed_in_as(client) == "two@study.example.org"
    session.rollback()
    assert session.scalars(select(SignInAttempt.succeeded).order_by(SignInAttempt.id)).all() == [False, True]


def test_the_code_step_after_the_provider_does_not_wait_forever(sso_app, provider, make_user, uow, monkeypatch):
    from console import oidc_views

    make_user("slow@study.example.org", "coordinator")
    with uow() as s:
        s.scalar(select(User).where(User.email == "slow@study.example.org")).totp_secret = pyotp.random_base32()
    client = sso_app.test_client()
    sso_sign_in(client, "slow@study.example.org")
    later = time.time() + 6 * 60
    monkeypatch.setattr(oidc_views, "now", lambda: later)
    response = client.get("/console/sign-in/sso/code")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/sign-in")
    assert "The sign-in took too long" in page_text(client.get("/console/sign-in"))
    assert signed_in_as(client) is None


def test_an_admin_without_an_authenticator_is_sent_to_set_one_up_when_admins_need_one(make_app, sso_env, provider,
                                                                                     make_user):
    app = make_app({**sso_env, "REQUIRE_2FA_FOR_ADMINS": "1"})
    make_user("boss@study.example.org", "admin")
    client = app.test_client()
    sso_sign_in(client, "boss@study.example.org")
    response = client.get("/console/users")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/account/two-factor")


# --- refusals, each in words, nobody signed in ---------------------------------------------------------------

def test_an_email_no_admin_added_is_refused_in_words(sso_app, provider, make_user, session):
    make_user("coord@study.example.org", "coordinator")
    client = sso_app.test_client()
    response = sso_sign_in(client, "stranger@study.example.org")
    assert response.status_code == 403
    text = page_text(response)
    assert ("There is no console account for stranger@study.example.org; ask a study administrator to add you "
            "with this e-mail address.") in text
    assert "Traceback" not in text and signed_in_as(client) is None
    session.rollback()
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "signed_in")) is None
    attempt = session.scalars(select(SignInAttempt)).one()
    assert not attempt.succeeded and attempt.email == "stranger@study.example.org"


def test_a_disabled_account_is_refused(sso_app, provider, make_user, uow):
    make_user("gone@study.example.org", "coordinator")
    with uow() as s:
        s.scalar(select(User).where(User.email == "gone@study.example.org")).disabled_at = dt.datetime(2026, 1, 1)
    client = sso_app.test_client()
    response = sso_sign_in(client, "gone@study.example.org")
    assert response.status_code == 403
    assert "The console account for gone@study.example.org is disabled" in page_text(response)
    assert signed_in_as(client) is None


def test_an_id_token_issued_to_another_application_is_refused(sso_app, provider, make_user, session):
    make_user("coord@study.example.org", "coordinator")
    provider.as_client = "another-app"  # the provider signs a good token, but for another client
    client = sso_app.test_client()
    response = sso_sign_in(client, "coord@study.example.org")
    assert response.status_code == 400
    text = page_text(response)
    assert "refused its answer: it was issued for another application, not this console" in text
    assert "Nobody was signed in" in text and signed_in_as(client) is None
    session.rollback()
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "signed_in")) is None


def test_a_nonce_that_is_not_this_sign_ins_is_refused(sso_app, provider, make_user):
    make_user("coord@study.example.org", "coordinator")
    client = sso_app.test_client()
    response = sso_sign_in(client, "coord@study.example.org", nonce="a-nonce-from-another-sign-in")
    assert response.status_code == 400
    assert "it does not belong to this sign-in (its nonce is not the one sent)" in page_text(response)
    assert signed_in_as(client) is None


def test_a_changed_or_reused_state_is_refused(sso_app, provider, make_user):
    make_user("coord@study.example.org", "coordinator")
    client = sso_app.test_client()
    callback = consent(start(client), "coord@study.example.org")
    forged = callback.replace("state=", "state=x")
    response = back(client, forged)
    assert response.status_code == 400
    assert "it was not started from this browser, it was already used, or it took too long" in page_text(response)
    assert signed_in_as(client) is None

    good = back(client, callback)  # the real answer still works once...
    assert good.status_code == 302 and signed_in_as(client) == "coord@study.example.org"
    again = back(sso_app.test_client(), callback)  # ...and never again, nor in another browser
    assert again.status_code == 400 and "was not started from this browser" in page_text(again)


def test_an_answer_meant_for_another_browser_is_refused(sso_app, provider, make_user):
    """Login CSRF: an attacker's own sign-in answer planted in a victim's browser signs nobody in."""
    make_user("mallory@study.example.org", "coordinator")
    attacker = sso_app.test_client()
    callback = consent(start(attacker), "mallory@study.example.org")
    victim = sso_app.test_client()
    victim.get("/console/sign-in")
    response = back(victim, callback)
    assert response.status_code == 400 and signed_in_as(victim) is None


def test_an_unverified_email_is_refused(sso_app, provider, make_user):
    make_user("new@study.example.org", "coordinator")
    provider.set_user("u-77", email="new@study.example.org", email_verified=False)
    client = sso_app.test_client()
    response = sso_sign_in(client, "u-77")
    assert response.status_code == 400
    assert "says the e-mail address new@study.example.org is not verified" in page_text(response)
    assert signed_in_as(client) is None


def test_an_answer_without_an_email_is_refused(sso_app, provider):
    provider.set_user("no-mail", name="Someone")
    client = sso_app.test_client()
    response = sso_sign_in(client, "no-mail")
    assert response.status_code == 400 and "did not give an e-mail address" in page_text(response)


def test_the_provider_saying_no_is_shown_in_words(sso_app, provider):
    client = sso_app.test_client()
    url = start(client)
    response = requests.post(url, data={"action": "deny"}, allow_redirects=False, timeout=5)
    page = back(client, response.headers["Location"])
    assert page.status_code == 400
    assert "Your institution's sign-in did not sign you in (access_denied)" in page_text(page)
    assert signed_in_as(client) is None
    # words planted in a link, without a sign-in begun in this browser, are not shown
    planted = sso_app.test_client().get("/console/sign-in/sso/callback?error=access_denied"
                                        "&error_description=Call+555-0100+to+unlock&state=abc")
    assert "555-0100" not in planted.get_data(as_text=True)
    assert "was not started from this browser" in page_text(planted)
    planted = sso_app.test_client().get("/console/sign-in/sso/callback?error=access_denied"
                                        "&error_description=Call+555-0100+to+unlock")
    assert "555-0100" not in planted.get_data(as_text=True) and "(access_denied)" in page_text(planted)


def test_an_expired_id_token_is_refused(make_app, console_env, make_user):
    stale = Provider(access_token_max_age=dt.timedelta(minutes=-10))
    try:
        app = make_app({**console_env, "OIDC_ISSUER": stale.issuer, "OIDC_CLIENT_ID": CLIENT_ID,
                        "OIDC_CLIENT_SECRET": CLIENT_SECRET})
        make_user("coord@study.example.org", "coordinator")
        client = app.test_client()
        response = sso_sign_in(client, "coord@study.example.org")
        assert response.status_code == 400 and "it has expired" in page_text(response)
        assert signed_in_as(client) is None
    finally:
        stale.stop()


def test_a_provider_that_cannot_be_reached_is_said_so(make_app, console_env):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_app({**console_env, "OIDC_ISSUER": f"http://127.0.0.1:{port}", "OIDC_CLIENT_ID": CLIENT_ID,
                    "OIDC_CLIENT_SECRET": CLIENT_SECRET})
    response = app.test_client().get("/console/sign-in/sso")
    assert response.status_code == 502
    assert "Your institution's sign-in could not be reached just now" in page_text(response)


# --- settings ------------------------------------------------------------------------------------------------

def test_password_login_off_leaves_only_the_provider(make_app, sso_env, provider, make_user):
    app = make_app({**sso_env, "PASSWORD_LOGIN": "0"})
    make_user("coord@study.example.org", "coordinator")
    client = app.test_client()
    page = client.get("/console/sign-in").get_data(as_text=True)
    assert "Sign in with your institution's account" in page and 'name="password"' not in page
    token = re.search(r'X-CSRFToken(?:"|&#34;): (?:"|&#34;)([^"&]+)', page).group(1)  # the page's htmx header

    refused = client.post("/console/sign-in", data={"csrf_token": token, "email": "coord@study.example.org",
                                                   "password": CONSOLE_PASSWORD})
    assert refused.status_code == 403 and "password sign-in is turned off" in page_text(refused).lower()
    assert signed_in_as(client) is None
    sso_sign_in(client, "coord@study.example.org")
    assert signed_in_as(client) == "coord@study.example.org"


def test_a_password_link_says_no_password_is_needed_when_password_login_is_off(make_app, sso_env, uow):
    from outreach.staff.accounts import add_user

    app = make_app({**sso_env, "PASSWORD_LOGIN": "0"})
    with uow() as s:
        _, token = add_user(s, "new@study.example.org", "researcher", actor="admin@study.example.org")
    client = app.test_client()
    response = client.get(f"/console/set-password/{token}")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/sign-in")
    assert "This console does not use passwords" in page_text(client.get("/console/sign-in"))


def test_without_the_oidc_settings_there_is_no_single_sign_on(console_app):
    client = console_app.test_client()
    assert "institution" not in client.get("/console/sign-in").get_data(as_text=True)
    assert client.get("/console/sign-in/sso").status_code == 404
    assert client.get("/console/sign-in/sso/callback?code=x&state=y").status_code == 404


def test_the_console_refuses_to_start_when_nobody_could_sign_in(console_env, make_app):
    with pytest.raises(ConfigError) as refused:
        make_app({**console_env, "PASSWORD_LOGIN": "0", "OIDC_ISSUER": "https://login.example.org"})
    message = str(refused.value)
    assert "PASSWORD_LOGIN=0 turns password sign-in off" in message and "nobody could sign in" in message
    assert "OIDC_CLIENT_ID, OIDC_CLIENT_SECRET are not set" in message
    with pytest.raises(ConfigError, match="OIDC_ISSUER must be an https URL"):
        make_app({**console_env, "OIDC_ISSUER": "http://login.example.org", "OIDC_CLIENT_ID": CLIENT_ID,
                  "OIDC_CLIENT_SECRET": CLIENT_SECRET})


def test_no_secret_reaches_the_log(sso_app, provider, make_user, caplog):
    make_user("coord@study.example.org", "coordinator")
    caplog.set_level(logging.DEBUG)
    client = sso_app.test_client()
    authorize_url = start(client)
    callback = consent(authorize_url, "coord@study.example.org")
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    back(client, callback)
    assert signed_in_as(client) == "coord@study.example.org"
    sso_sign_in(sso_app.test_client(), "coord@study.example.org", nonce="forged")  # a refusal is logged
    # the console's side of the log (the provider's own request log, in this process too, is left out)
    console_log = "\n".join(r.getMessage() for r in caplog.records
                            if not r.name.startswith(("werkzeug", "oidc_provider_mock")))
    assert "single sign-on refused" in console_log
    for secret in (CLIENT_SECRET, state["code"], state["state"],
                   dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))["nonce"]):
        assert secret not in console_log
    assert "code_verifier" not in caplog.text.lower()  # authlib logs it at DEBUG, which is kept off


def test_an_admin_can_still_be_audited_by_method(sso_app, provider, make_user, session, console_client):
    """Password and single sign-on sign-ins are told apart in the audit."""
    console_client("admin", "pw@study.example.org")
    make_user("sso@study.example.org", "coordinator")
    sso_sign_in(sso_app.test_client(), "sso@study.example.org")
    session.rollback()
    rows = session.execute(select(AuditEvent.actor, AuditEvent.details).where(AuditEvent.action == "signed_in")
                           .order_by(AuditEvent.id)).all()
    assert [(actor, details["method"]) for actor, details in rows] == [("pw@study.example.org", "password"),
                                                                       ("sso@study.example.org", "sso")]

