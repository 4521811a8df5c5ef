"""Shared fixtures.  Every database test runs on SQLite and on PostgreSQL, each on a clean schema.

PostgreSQL comes from ``TEST_POSTGRES_URL``; without it those tests are
skipped with a reason, except under CI (``CI=true``) where that is a failure.
"""
from __future__ import annotations

import os
import re
import socket

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from outreach.config import load_settings
from outreach.db import make_engine, session_factory, unit_of_work
from outreach.models import Base

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgresql"]


class NetworkAccessError(BaseException):
    """Raised on any unmocked connection to the outside world (not catchable by ``except Exception``)."""


@pytest.fixture(autouse=True)
def _no_outside_network(monkeypatch):
    real_connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            raise NetworkAccessError(f"test tried to reach {host}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def _require_pg() -> str:
    if not PG_URL:
        msg = "TEST_POSTGRES_URL is not set: PostgreSQL tests need a server (.ci/run starts one)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return PG_URL


def reset_schema(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            Base.metadata.drop_all(conn)
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def empty_db_url(request, tmp_path):
    """A database URL with an empty schema (for migration tests)."""
    url = f"sqlite:///{tmp_path / 'test.db'}" if request.param == "sqlite" else _require_pg()
    reset_schema(url)
    yield url


@pytest.fixture
def db_url(empty_db_url):
    engine = make_engine(empty_db_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    return empty_db_url


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine):
    return session_factory(engine)


@pytest.fixture
def session(db_url):
    """A reading session for assertions; it takes no write lock, so the code under test can write.
    Call ``session.rollback()`` to see what others committed since its last read."""
    eng = make_engine(db_url, immediate=False)
    s = session_factory(eng)()
    yield s
    s.rollback()
    s.close()
    eng.dispose()


@pytest.fixture
def env(db_url, spool_path, jobs_path):
    """Environment for the service: the test database and safe defaults."""
    return {"DATABASE_URL": db_url, "DEFAULT_REGION": "CA", "DEFAULT_TIMEZONE": "America/Toronto",
            "ORG_NAME": "Recovery Study", "SPOOL_DIR": str(spool_path), "JOBS_DIR": str(jobs_path)}


@pytest.fixture(autouse=True)
def spool_path(tmp_path, monkeypatch):
    """Each test's own spool folder (never the project's instance/spool)."""
    path = tmp_path / "spool"
    monkeypatch.setenv("SPOOL_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def jobs_path(tmp_path, monkeypatch):
    """Each test's own folder for the console's uploads and job results (never the project's instance/jobs)."""
    path = tmp_path / "jobs"
    monkeypatch.setenv("JOBS_DIR", str(path))
    return path


@pytest.fixture
def settings(env):
    return load_settings(env)


@pytest.fixture
def run_cli(env):
    """Invoke the real ``outreach`` CLI against the test database."""
    from outreach.cli import cli

    def run(*args: str, extra_env: dict | None = None, input: str | None = None):
        runner = CliRunner()
        return runner.invoke(cli, list(args), env={**env, **(extra_env or {})}, input=input,
                             catch_exceptions=False)

    return run


@pytest.fixture
def uow(sessions):
    return lambda: unit_of_work(sessions)


_skipped_pg: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and "postgresql" in report.nodeid:
        _skipped_pg.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if IN_CI and _skipped_pg:
        print(f"\nCI: {len(_skipped_pg)} PostgreSQL test(s) were skipped; that is a failure under CI")
        session.exitstatus = 1


# --- builders and the signed webhook -------------------------------------------------------------

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_BASE = "https://outreach.example.org"


@pytest.fixture
def web_env(env):
    return {**env, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "HELP_CONTACT": "1-800-555-0199",
            "PUBLIC_BASE_URL": PUBLIC_BASE}


@pytest.fixture
def app(web_env):
    from webhooks.app import create_app

    application = create_app(web_env)
    yield application
    application.extensions["outreach"]["engine"].dispose()


@pytest.fixture
def twilio(app):
    """Plays Twilio: signed posts to the real app."""
    from outreach.messaging.webhook_client import SignedWebhookClient, flask_post

    return SignedWebhookClient(flask_post(app.test_client()), PUBLIC_BASE, AUTH_TOKEN)


@pytest.fixture
def make_patient(sessions):
    import datetime as dt

    from outreach.models import AllianceRating, Episode, Patient

    counter = iter(range(1, 10_000))

    def make(patient_id=None, phone=None, language="en", consent=True, opted_out=False, timezone="America/Toronto",
             discharge_date=None, mean=5.0):
        """A patient with one stay (``p.episode_id``) discharged on ``discharge_date`` and rated ``mean``."""
        n = next(counter)
        with unit_of_work(sessions) as s:
            p = Patient(patient_id=patient_id or f"T{n:04d}", phone=phone or f"+1416555{n:04d}", language=language,
                        sms_consent=consent, timezone=timezone,
                        opted_out_at=dt.datetime(2026, 11, 1) if opted_out else None)
            s.add(p)
            s.flush()
            stay = Episode(patient_id=p.id, discharge_date=discharge_date or dt.date(2026, 10, 1))
            s.add(stay)
            s.flush()
            s.add(AllianceRating(episode_id=stay.id, instrument="alliance6", items=[5] * 6, mean_score=mean,
                                 subscale_scores={"bond": mean, "goal_task": mean}))
        p.episode_id = stay.id
        return p

    return make


@pytest.fixture
def make_followup(sessions):
    import datetime as dt

    from outreach.models import FollowUp

    from outreach.clock import utcnow

    def make(patient, timepoint=30, state="invited", invited_at=None):
        with unit_of_work(sessions) as s:
            fu = FollowUp(patient_id=patient.id, episode_id=patient.episode_id, timepoint_days=timepoint, state=state,
                          invited_at=invited_at or utcnow() - dt.timedelta(minutes=5))
            s.add(fu)
        return fu

    return make


@pytest.fixture
def clock():
    """Move the service's clock forward (``clock(hours=48)``); reset after the test."""
    import datetime as dt

    from outreach.clock import using

    with using() as simulated:  # this test's own clock: nothing else in the process moves
        yield lambda **delta: simulated.advance(dt.timedelta(**delta))


TWILIO_SID = "AC" + "1" * 32


@pytest.fixture
def send_env(env):
    """Settings for sending through Twilio (mocked at the HTTP edge), no quiet hours, no rate limit."""
    return {**env, "SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID, "TWILIO_AUTH_TOKEN": "tok",
            "TWILIO_MESSAGING_SERVICE_SID": "MG" + "2" * 32, "PUBLIC_BASE_URL": "https://outreach.example.org",
            "SEND_WINDOW": "Mon-Sun 00:00-24:00", "SEND_RATE_PER_SECOND": "0"}


# --- the console ---------------------------------------------------------------------------------

CONSOLE_PASSWORD = "correct horse battery staple"


@pytest.fixture
def console_env(web_env):
    return {**web_env, "SECRET_KEY": "console-secret-for-tests", "CONSOLE_INSECURE_COOKIES": "1"}


@pytest.fixture
def console_app(console_env):
    from webhooks.app import create_app

    application = create_app(console_env)
    yield application
    application.extensions["outreach"]["engine"].dispose()


@pytest.fixture
def make_user(sessions):
    """A console account with ``CONSOLE_PASSWORD`` set (as if its one-time link had been used)."""
    from argon2 import PasswordHasher

    from outreach.models import User

    def make(email: str, role: str = "coordinator"):
        with unit_of_work(sessions) as s:
            user = User(email=email, role=role, password_hash=PasswordHasher().hash(CONSOLE_PASSWORD))
            s.add(user)
        return user

    return make


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token_of(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def without_csrf(html: str) -> str:
    """The page with its CSRF token taken out: the token is random letters and digits, so a check that a short
    identifier ("B1", "4242") is absent from a page would otherwise fail now and then on the token alone."""
    match = CSRF_FIELD.search(html)
    return html.replace(match.group(1), "") if match else html


@pytest.fixture
def console_client(console_app, make_user):
    """``console_client("coordinator")``: a test client signed in with a new account of that role."""
    counter = iter(range(1, 1000))

    def signed_in(role: str = "coordinator", email: str | None = None):
        email = email or f"{role}{next(counter)}@study.example.org"
        make_user(email, role)
        client = console_app.test_client()
        token = csrf_token_of(client.get("/console/sign-in").get_data(as_text=True))
        response = client.post("/console/sign-in", data={"email": email, "password": CONSOLE_PASSWORD,
                                                         "csrf_token": token})
        assert response.status_code == 302, response.get_data(as_text=True)
        client.csrf = csrf_token_of(client.get("/console/").get_data(as_text=True))
        return client

    return signed_in


@pytest.fixture
def next_code(monkeypatch):
    """``next_code(secret)``: the authenticator code of the next 30-second step, the service reading codes that
    much later (a code counts once, so a test that types several must wait for each, as a person would)."""
    import datetime as dt

    import pyotp

    from outreach.staff import accounts

    real, shift = accounts.totp_now, {"seconds": 0}
    monkeypatch.setattr(accounts, "totp_now", lambda: real() + dt.timedelta(seconds=shift["seconds"]))

    def code(secret: str) -> str:
        shift["seconds"] += 30
        return pyotp.TOTP(secret).at(real().replace(tzinfo=dt.timezone.utc) + dt.timedelta(seconds=shift["seconds"]))

    return code


@pytest.fixture(scope="session")
def default_demo(tmp_path_factory):
    """The demo as `make demo` runs it (the default cohort and seed), run once for every test that reads its output:
    its folder and the lines it printed."""
    from analysis.summary import analyse_demo
    from outreach.demo import run_demo
    from webhooks.app import create_app

    base = tmp_path_factory.mktemp("default_demo")
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:  # its own spool and jobs folders, as every test has
        mp.setenv("SPOOL_DIR", str(base / "spool"))
        mp.setenv("JOBS_DIR", str(base / "jobs"))
        run_demo(base / "demo", app_factory=create_app, analyse=analyse_demo, echo=lines.append)
    return base / "demo", lines
