"""Personal access tokens and the data API (issue 22): made in the console (shown once, stored hashed, with a name
and an expiry, revocable, listed with their last use); ``GET /api/v1/export`` with ``Authorization: Bearer TOKEN``
answers the console's de-identified export, audited as a download; JSON errors in words; a token never reaches
identified data.  On both databases."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import re

import pandas as pd
import pytest
from sqlalchemy import select

from analysis.dataset import CONTRACT
from outreach.clock import utcnow
from outreach.db import unit_of_work
from outreach.models import AccessToken, AuditEvent, User
from outreach.staff.tokens import (PREFIX, TokenError, authenticate, create_token, hash_token, list_tokens,
                                   revoke_token)

from .test_console_exports import (assert_nothing_identifying, console_env, research_settings,  # noqa: F401
                                   secrets_of, small_study)


def _user(sessions, email, role):
    from argon2 import PasswordHasher

    with unit_of_work(sessions) as s:
        user = User(email=email, role=role, password_hash=PasswordHasher().hash("x" * 20))
        s.add(user)
    return user


def _token(sessions, settings, user, name="laptop", now=None) -> str:
    with unit_of_work(sessions) as s:
        return create_token(s, settings, s.get(User, user.id), name, now=now)[1]


def _events(session, action):
    session.rollback()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# -- the service ----------------------------------------------------------------------------------------------------

def test_a_token_is_stored_hashed_named_and_expires(sessions, research_settings, session):
    user = _user(sessions, "res@study.example.org", "researcher")
    token = _token(sessions, research_settings, user, "  laptop   R scripts ")
    assert token.startswith(PREFIX) and len(token) > 40
    session.rollback()
    [row] = session.scalars(select(AccessToken)).all()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert token not in str([getattr(row, c.key) for c in AccessToken.__table__.columns])
    assert row.name == "laptop R scripts"
    assert abs((row.expires_at - row.created_at) - dt.timedelta(days=research_settings.api_token_days)) < \
        dt.timedelta(seconds=1)
    [created] = _events(session, "api_token_created")
    assert created.actor == "res@study.example.org" and token not in str(created.details)


def test_a_token_needs_a_name_and_a_research_role(sessions, research_settings):
    coordinator = _user(sessions, "coord@study.example.org", "coordinator")
    researcher = _user(sessions, "res@study.example.org", "researcher")
    with pytest.raises(TokenError, match="researchers and administrators") as caught:
        _token(sessions, research_settings, coordinator)
    assert caught.value.status == 403
    with pytest.raises(TokenError, match="give the token a name"):
        _token(sessions, research_settings, researcher, "   ")
    with pytest.raises(TokenError, match="longer than"):
        _token(sessions, research_settings, researcher, "n" * 101)


def test_authenticate_records_the_last_use_and_refuses_in_words(sessions, research_settings):
    user = _user(sessions, "res@study.example.org", "researcher")
    token = _token(sessions, research_settings, user)
    with unit_of_work(sessions) as s:
        caller = authenticate(s, f"Bearer {token}")
    assert (caller.email, caller.role, caller.token_name) == ("res@study.example.org", "researcher", "laptop")
    with unit_of_work(sessions) as s:
        assert s.get(AccessToken, caller.token_id).last_used_at is not None

    def refused(header, now=None):
        with unit_of_work(sessions) as s, pytest.raises(TokenError) as caught:
            authenticate(s, header, now=now)
        return caught.value.status, str(caught.value)

    assert refused(None)[0] == 401 and "Authorization: Bearer" in refused(None)[1]
    assert refused(f"Basic {token}")[0] == 401
    assert refused(f"Bearer {token}x") == (401, refused(f"Bearer {PREFIX}nothing")[1])
    assert "expired" in refused(f"Bearer {token}", now=utcnow() + dt.timedelta(days=91))[1]
    with unit_of_work(sessions) as s:
        s.get(User, user.id).role = "coordinator"
    assert refused(f"Bearer {token}")[0] == 403
    with unit_of_work(sessions) as s:
        u = s.get(User, user.id)
        u.role, u.disabled_at = "researcher", utcnow()
    assert refused(f"Bearer {token}") == (401, "the account this token belongs to is disabled")


def test_a_revoked_token_opens_nothing_and_only_its_owner_revokes_it(sessions, research_settings, session):
    owner = _user(sessions, "res@study.example.org", "researcher")
    other = _user(sessions, "other@study.example.org", "researcher")
    token = _token(sessions, research_settings, owner)
    token_id = hash_token(token)
    with unit_of_work(sessions) as s:
        row = s.scalar(select(AccessToken).where(AccessToken.token_hash == token_id))
        assert revoke_token(s, s.get(User, other.id), row.id) is None
        assert revoke_token(s, s.get(User, owner.id), row.id).revoked_at is not None
        assert revoke_token(s, s.get(User, owner.id), row.id) is not None  # twice: harmless
    with unit_of_work(sessions) as s, pytest.raises(TokenError, match="revoked"):
        authenticate(s, f"Bearer {token}")
    assert len(_events(session, "api_token_revoked")) == 1
    with unit_of_work(sessions) as s:
        assert [t.name for t in list_tokens(s, s.get(User, owner.id))] == ["laptop"]
        assert list_tokens(s, s.get(User, other.id)) == []


# -- the API --------------------------------------------------------------------------------------------------------

@pytest.fixture
def api_token(sessions, research_settings):
    user = _user(sessions, "api@study.example.org", "researcher")
    return _token(sessions, research_settings, user, "pandas")


def _get(client, path, token=None):
    return client.get(path, headers={"Authorization": f"Bearer {token}"} if token else {})


def test_the_api_answers_the_consoles_deidentified_export_audited(small_study, console_app, api_token, session,
                                                                  sessions, research_settings):
    from outreach.jobs.exports import start_export
    from outreach.jobs.queue import jobs_dir, run_pending
    import zipfile

    client = console_app.test_client()
    answer = _get(client, "/api/v1/export?format=csv&timepoint=30", api_token)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.headers["Content-Type"].startswith("text/csv") and "attachment" in answer.headers["Content-Disposition"]
    assert "Set-Cookie" not in answer.headers
    df = pd.read_csv(io.BytesIO(answer.data))
    assert list(df.columns) == CONTRACT and len(df) == 3
    for secret in secrets_of(small_study):
        assert secret.encode() not in answer.data
    [event] = _events(session, "api_export_downloaded")
    assert event.actor == "api@study.example.org" and event.details["rows"] == 3 and event.details["format"] == "csv"
    assert event.details["sha256"] == hashlib.sha256(answer.data).hexdigest() == answer.headers["X-Content-SHA256"]
    # the same file as the console's export zips
    with unit_of_work(sessions) as s:
        job_id = start_export(s, research_settings, fmt="csv", timepoint=30, owner="api@study.example.org",
                              owner_role="researcher", address=None).id
    run_pending(sessions, research_settings, "test-worker")
    [zipped] = (jobs_dir(research_settings) / str(job_id)).glob("*.zip")
    with zipfile.ZipFile(zipped) as bundle:
        data = bundle.read(next(n for n in bundle.namelist() if not n.endswith("codebook.csv")))
    assert data == answer.data
    parquet = _get(client, "/api/v1/export?format=parquet", api_token)
    assert parquet.status_code == 200 and len(pd.read_parquet(io.BytesIO(parquet.data))) == 3
    assert len(_events(session, "api_export_downloaded")) == 2
    with unit_of_work(sessions) as s:
        assert s.scalar(select(AccessToken)).last_used_at is not None


def test_the_api_refuses_in_json_words(small_study, console_app, api_token, sessions, session):
    client = console_app.test_client()

    def error(path, token=None, status=None):
        answer = _get(client, path, token)
        assert answer.status_code == status, (path, answer.status_code, answer.get_data(as_text=True))
        assert answer.is_json and answer.json["status"] == status and answer.json["error"]
        assert_nothing_identifying(answer.get_data(as_text=True), small_study, path)
        return answer

    assert "Bearer" in error("/api/v1/export", status=401).headers["WWW-Authenticate"]
    error("/api/v1/export", "otk_not-a-token", status=401)
    assert "csv or parquet" in error("/api/v1/export?format=dta", api_token, status=400).json["error"]
    assert "time points" in error("/api/v1/export?timepoint=45", api_token, status=400).json["error"]
    refused = error("/api/v1/export?identified=1", api_token, status=400).json["error"]
    assert "never given to a token" in refused
    error("/api/v1/nothing", api_token, status=404)
    with unit_of_work(sessions) as s:
        s.scalar(select(User).where(User.email == "api@study.example.org")).role = "coordinator"
    error("/api/v1/export", api_token, status=403)
    assert _events(session, "api_export_downloaded") == []


def test_the_codebook_is_served_to_a_token(console_app, api_token):
    answer = _get(console_app.test_client(), "/api/v1/codebook", api_token)
    assert answer.status_code == 200
    codebook = pd.read_csv(io.BytesIO(answer.data))
    assert list(codebook.columns) == ["variable", "label", "type", "codes"]
    assert "patient_id" not in set(codebook["variable"]) and "participant" in set(codebook["variable"])


# -- the console's page ---------------------------------------------------------------------------------------------

def test_a_researcher_makes_sees_once_lists_and_revokes_a_token(console_client, console_app, session, small_study):
    client = console_client("researcher", "res@study.example.org")
    assert "You have no token yet" in client.get("/console/tokens").get_data(as_text=True)
    made = client.post("/console/tokens", data={"csrf_token": client.csrf, "name": "laptop R"})
    page = made.get_data(as_text=True)
    assert made.status_code == 200 and "shown this once" in page
    token = re.search(r'id="token-value" readonly value="([^"]+)"', page).group(1)
    assert token.startswith(PREFIX) and made.headers["Cache-Control"] == "no-store"
    listing = client.get("/console/tokens").get_data(as_text=True)
    assert token not in listing and "laptop R" in listing and "never" in listing
    assert _get(console_app.test_client(), "/api/v1/export", token).status_code == 200
    listing = client.get("/console/tokens").get_data(as_text=True)
    assert "never" not in listing.split("token-list")[1]  # its last use is listed
    assert_nothing_identifying(listing, small_study, "tokens page")
    row_id = session.scalar(select(AccessToken.id))
    revoked = client.post(f"/console/tokens/{row_id}/revoke", data={"csrf_token": client.csrf})
    assert revoked.status_code == 302
    assert "revoked" in client.get("/console/tokens").get_data(as_text=True)
    assert _get(console_app.test_client(), "/api/v1/export", token).status_code == 401


def test_a_token_without_a_name_is_refused_on_the_page(console_client):
    client = console_client("admin")
    answer = client.post("/console/tokens", data={"csrf_token": client.csrf, "name": ""})
    assert answer.status_code == 400 and "Give the token a name" in answer.get_data(as_text=True)


def test_someone_elses_token_cannot_be_revoked_from_the_page(console_client, session):
    owner, other = console_client("researcher"), console_client("researcher")
    owner.post("/console/tokens", data={"csrf_token": owner.csrf, "name": "mine"})
    row_id = session.scalar(select(AccessToken.id))
    other.post(f"/console/tokens/{row_id}/revoke", data={"csrf_token": other.csrf})
    session.rollback()
    assert session.get(AccessToken, row_id).revoked_at is None


def test_other_methods_and_addresses_are_answered_in_json(console_app, api_token):
    client = console_app.test_client()
    posted = client.post("/api/v1/export", headers={"Authorization": f"Bearer {api_token}"})
    assert posted.status_code == 405 and posted.json["error"] == "the data API only answers GET"
    assert client.get("/api/v1/").status_code == 404 and client.get("/api/v1/").is_json
