"""The audit log: filters, order, CSV, the admin pages (users and audit), and that nothing rewrites audit rows."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from outreach.staff.audit_log import (AuditFilterError, actions, audit_csv, audit_rows, parse_filters, patient_pk,
                                read_audit_log)
from outreach.db import unit_of_work
from outreach.models import AuditEvent, User

ROOT = Path(__file__).resolve().parent.parent
TORONTO = "America/Toronto"


def add_events(sessions, *rows: dict) -> list[int]:
    """Insert audit rows with chosen values (``at`` naive UTC); returns their ids."""
    with unit_of_work(sessions) as s:
        events = [AuditEvent(**{"details": {}, **row}) for row in rows]
        s.add_all(events)
        s.flush()
        return [e.id for e in events]


@pytest.fixture
def log(sessions, make_patient):
    """Two patients and a small log spread over a few days (times are UTC)."""
    a, b = make_patient(patient_id="S-100"), make_patient(patient_id="S-200")
    add_events(
        sessions,
        dict(at=dt.datetime(2026, 11, 2, 4, 30), actor="ana@site.org", action="viewed_patient", patient_id=a.id,
             address="10.0.0.1"),  # 23:30 on 1 November in Toronto
        dict(at=dt.datetime(2026, 11, 2, 15, 0), actor="ana@site.org", action="showed_phone", patient_id=a.id,
             address="10.0.0.1"),
        dict(at=dt.datetime(2026, 11, 3, 9, 0), actor="bo@site.org", action="viewed_patient", patient_id=b.id,
             address="10.0.0.2"),
        dict(at=dt.datetime(2026, 11, 4, 4, 59), actor="cli:ops", action="wave_launched",
             details={"wave_id": 1}),  # 23:59 on 3 November in Toronto
        dict(at=dt.datetime(2026, 11, 4, 5, 0), actor="system", action="crisis_alert_opened", patient_id=b.id),
    )
    return a, b


def test_newest_first_with_study_ids(session, log):
    rows = audit_rows(session)
    assert [r.at for r in rows] == sorted((r.at for r in rows), reverse=True)
    assert len(rows) == 5
    assert rows[0].action == "crisis_alert_opened" and rows[0].patient_study_id == "S-200"
    assert rows[-1].actor == "ana@site.org" and rows[-1].address == "10.0.0.1"


def test_same_moment_ordered_by_insertion(session, sessions):
    at = dt.datetime(2026, 11, 5, 12, 0)
    first, second = add_events(sessions, dict(at=at, actor="x", action="one"), dict(at=at, actor="x", action="two"))
    assert [r.id for r in audit_rows(session)] == [second, first]


def test_filter_by_actor_exact_and_part(session, log):
    assert {r.action for r in audit_rows(session, actor="bo@site.org")} == {"viewed_patient"}
    assert len(audit_rows(session, actor="ana@site.org")) == 2
    assert len(audit_rows(session, actor="@SITE.org")) == 3  # a part, any case
    assert [r.actor for r in audit_rows(session, actor="cli:")] == ["cli:ops"]
    assert audit_rows(session, actor="%") == []  # a LIKE wildcard is matched literally


def test_filter_by_action(session, log):
    rows = audit_rows(session, action="viewed_patient")
    assert [r.actor for r in rows] == ["bo@site.org", "ana@site.org"]
    assert audit_rows(session, action="viewed") == []  # exact, not a part
    assert actions(session) == ["crisis_alert_opened", "showed_phone", "viewed_patient", "wave_launched"]


def test_filter_by_patient_study_id_or_internal_id(session, log):
    a, b = log
    by_study = audit_rows(session, patient="S-100")
    assert {r.action for r in by_study} == {"viewed_patient", "showed_phone"}
    assert all(r.patient_pk == a.id for r in by_study)
    b_rows = [r.id for r in audit_rows(session, patient="S-200")]
    assert len(b_rows) == 2
    assert [r.id for r in audit_rows(session, patient=str(b.id))] == b_rows
    assert [r.id for r in audit_rows(session, patient=b.id)] == b_rows
    assert audit_rows(session, patient="S-999") == []
    assert patient_pk(session, "S-100") == a.id and patient_pk(session, str(b.id)) == b.id
    assert patient_pk(session, "nobody") is None


def test_date_range_is_inclusive_days_in_the_console_zone(session, log):
    day = dt.date(2026, 11, 3)
    rows = audit_rows(session, since=day, until=day, zone=TORONTO)  # 3 Nov 00:00 to 23:59:59 in Toronto
    assert [r.action for r in rows] == ["wave_launched", "viewed_patient"]
    rows = audit_rows(session, until=dt.date(2026, 11, 1), zone=TORONTO)
    assert [r.action for r in rows] == ["viewed_patient"]  # 04:30 UTC on 2 Nov is still 1 Nov in Toronto
    assert len(audit_rows(session, since=dt.date(2026, 11, 2), zone=TORONTO)) == 4
    # in UTC the same dates cut elsewhere
    assert [r.action for r in audit_rows(session, since=day, until=day)] == ["viewed_patient"]
    # moments are inclusive bounds
    assert len(audit_rows(session, since=dt.datetime(2026, 11, 4, 4, 59), until=dt.datetime(2026, 11, 4, 5, 0))) == 2


def test_filters_combine_and_page(session, log):
    rows = audit_rows(session, actor="ana", action="viewed_patient", patient="S-100", since=dt.date(2026, 11, 1),
                      until=dt.date(2026, 11, 30), zone=TORONTO)
    assert len(rows) == 1
    everything = audit_rows(session)
    assert audit_rows(session, limit=2) == everything[:2]
    assert audit_rows(session, limit=2, offset=2) == everything[2:4]


def test_parse_filters():
    got = parse_filters({"actor": " ana ", "patient": "", "action": "viewed_patient", "since": "2026-11-01",
                         "until": "2026-11-03"})
    assert got == {"actor": "ana", "action": "viewed_patient", "since": dt.date(2026, 11, 1),
                   "until": dt.date(2026, 11, 3)}
    assert parse_filters({"patient_pk": "12"}) == {"patient": 12}
    with pytest.raises(AuditFilterError, match="YYYY-MM-DD"):
        parse_filters({"since": "1/11/2026"})
    with pytest.raises(AuditFilterError, match="after"):
        parse_filters({"since": "2026-11-05", "until": "2026-11-01"})
    with pytest.raises(AuditFilterError):
        parse_filters({"patient_pk": "S-100"})


def test_reading_the_log_is_audited(session, sessions, log):
    a, _ = log
    with unit_of_work(sessions) as s:
        rows, more = read_audit_log(s, viewer="admin@site.org", address="10.9.9.9", limit=1, patient="S-100",
                                    since=dt.date(2026, 11, 1))
    assert len(rows) == 1 and more
    session.rollback()
    seen = session.scalars(select(AuditEvent).where(AuditEvent.action == "viewed_audit_log")).one()
    assert seen.actor == "admin@site.org" and seen.patient_id == a.id
    assert seen.details["filters"] == {"patient": "S-100", "since": "2026-11-01"}
    assert seen.details["rows"] == 1 and seen.details["format"] == "page"
    assert "10.9.9.9" in (seen.address, seen.details.get("address"))


def test_csv_has_a_header_one_line_per_row_and_quotes_commas(session, sessions, make_patient):
    p = make_patient(patient_id="S,1")
    add_events(sessions,
               dict(at=dt.datetime(2026, 11, 2, 15, 0), actor="ana@site.org", action="resolved", patient_id=p.id,
                    address="10.0.0.1", details={"note": 'called, "fine" now', "alert_id": 3}),
               dict(at=dt.datetime(2026, 11, 1, 15, 0), actor="=cmd|' /C calc'!A0", action="viewed_patient"))
    text = audit_csv(audit_rows(session), zone=TORONTO)
    lines = text.splitlines()
    assert lines[0] == "at,actor,action,patient,address,details"
    assert len(lines) == 3  # header + one line per row (a comma or quote in a value does not add lines)
    assert '"S,1"' in lines[1]
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[0]["at"] == "2026-11-02T10:00:00-05:00"
    assert parsed[0]["patient"] == "S,1" and parsed[0]["address"] == "10.0.0.1"
    assert json.loads(parsed[0]["details"]) == {"alert_id": 3, "note": 'called, "fine" now'}
    assert parsed[1]["actor"].startswith("'=")  # not run as a formula by a spreadsheet
    assert parsed[1]["patient"] == "" and json.loads(parsed[1]["details"]) == {}
    assert audit_csv([]).splitlines() == ["at,actor,action,patient,address,details"]


# --- the application never rewrites audit rows -------------------------------------------------------

FORBIDDEN = [
    re.compile(r"\b(?:update|delete)\(\s*AuditEvent\b"),
    re.compile(r"AuditEvent\.__table__\.(?:update|delete)\("),
    re.compile(r"query\(\s*AuditEvent\b[^\n]*\.(?:update|delete)\("),
    re.compile(r"\b(?:UPDATE|DELETE\s+FROM)\s+[\"`]?audit_events\b", re.IGNORECASE),
    re.compile(r"\b(?:session|s|db|conn|bind)\.delete\(\s*\w*(?:audit|event)\w*\s*\)", re.IGNORECASE),
]


def forbidden_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if any(p.search(line) for p in FORBIDDEN)]


def test_the_pattern_catches_rewrites():
    for bad in ("s.execute(update(AuditEvent).values(actor='x'))", "session.execute(delete(AuditEvent))",
                "session.delete(audit_event)", "s.delete(event)", "conn.execute(text('DELETE FROM audit_events'))",
                "AuditEvent.__table__.delete()", "session.query(AuditEvent).filter_by(id=1).delete()",
                "UPDATE audit_events SET actor = 'x'"):
        assert forbidden_lines(bad), bad
    for fine in ("session.add(AuditEvent(action='x'))", "select(AuditEvent)", "s.execute(delete(PasswordToken))",
                 "session.delete(patient)"):
        assert not forbidden_lines(fine), fine


RETENTION = "outreach/study/retention.py"  # the one place rows go: those older than RETAIN_AUDIT_DAYS


def test_no_code_updates_or_deletes_audit_rows():
    found = []
    for folder in ("outreach", "console", "webhooks", "analysis"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".sql", ".html") or "__pycache__" in path.parts:
                continue
            found += [f"{path.relative_to(ROOT)}: {line}" for line in forbidden_lines(path.read_text("utf-8"))]
    expired = [line for line in found if line.startswith(f"{RETENTION}: ") and "delete(AuditEvent)" in line]
    assert len(expired) == 1, found  # the retention rule deletes expired rows, in one statement
    rest = [line for line in found if line not in expired]
    assert not rest, "audit rows are only ever inserted (and deleted once expired):\n" + "\n".join(rest)


# --- the pages, through the real app ----------------------------------------------------------------

PASSWORD = "correct horse battery staple"


@pytest.fixture
def console_app(web_env):
    from webhooks.app import create_app

    application = create_app({**web_env, "SECRET_KEY": "test-secret", "CONSOLE_INSECURE_COOKIES": "1"})
    yield application
    application.extensions["outreach"]["engine"].dispose()


def make_user(sessions, email: str, role: str) -> int:
    import argon2

    with unit_of_work(sessions) as s:
        user = User(email=email, role=role, password_hash=argon2.PasswordHasher().hash(PASSWORD))
        s.add(user)
        s.flush()
        return user.id


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf_token in the page"
    return match.group(1)


def signed_in(app, email: str):
    client = app.test_client()
    page = client.get("/console/sign-in")
    assert page.status_code == 200
    answer = client.post("/console/sign-in", data={"email": email, "password": PASSWORD,
                                                   "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def token_of(client, path: str = "/console/users") -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def test_audit_page_filters_and_downloads(console_app, sessions, session, log):
    make_user(sessions, "admin@site.org", "admin")
    client = signed_in(console_app, "admin@site.org")

    page = client.get("/console/audit?action=viewed_patient")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count("<td>viewed_patient</td>") == 2 and "showed_phone</td>" not in html
    assert "bo@site.org" in html and "S-200" in html
    assert 'for="f-action"' in html and 'for="f-since"' in html and 'for="f-patient"' in html
    assert page.headers["Cache-Control"] == "no-store"

    download = client.get("/console/audit.csv?action=viewed_patient")
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    body = download.get_data(as_text=True).splitlines()
    assert body[0] == "at,actor,action,patient,address,details" and len(body) == 3

    # a study id typed in the filter never reaches an address: the page is addressed by the internal id
    a, _ = log
    moved = client.post("/console/audit", data={"patient": "S-100", "action": "", "csrf_token": token_of(client)})
    assert moved.status_code == 303
    assert "S-100" not in moved.headers["Location"] and f"patient_pk={a.id}" in moved.headers["Location"]
    filtered = client.get(moved.headers["Location"]).get_data(as_text=True)
    assert "showed_phone" in filtered and "bo@site.org" not in filtered
    typed = client.get("/console/audit?patient=S-100")
    assert typed.status_code == 303 and "S-100" not in typed.headers["Location"]

    bad = client.get("/console/audit?since=yesterday")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.get_data(as_text=True)

    session.rollback()
    looks = session.scalars(select(AuditEvent).where(AuditEvent.action == "viewed_audit_log")
                            .order_by(AuditEvent.id)).all()
    assert [e.details["format"] for e in looks][:2] == ["page", "csv"]
    assert looks[0].actor == "admin@site.org" and looks[0].details["filters"] == {"action": "viewed_patient"}
    assert any(e.patient_id == a.id for e in looks)


def test_users_page_adds_a_user_and_shows_the_link_once(console_app, sessions, session):
    admin_id = make_user(sessions, "admin@site.org", "admin")
    client = signed_in(console_app, "admin@site.org")
    page = client.get("/console/users")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "admin@site.org" in html and 'for="new-role"' in html and 'for="new-email"' in html

    added = client.post("/console/users/add", data={"email": "Cora@Site.org", "role": "coordinator",
                                                    "csrf_token": token_of(client)})
    assert added.status_code == 200
    html = added.get_data(as_text=True)
    link = re.search(r"https://outreach.example.org/console/set-password/([A-Za-z0-9_-]+)", html)  # PUBLIC_BASE_URL
    assert link, html
    assert "safe channel" in html and "24 hours" in html
    assert client.get(f"/console/set-password/{link.group(1)}").status_code == 200
    assert link.group(1) not in client.get("/console/users").get_data(as_text=True)  # shown once

    again = client.post("/console/users/add", data={"email": "cora@site.org", "role": "coordinator",
                                                    "csrf_token": token_of(client)})
    assert again.status_code == 400 and "already exists" in again.get_data(as_text=True)
    wrong = client.post("/console/users/add", data={"email": "x@site.org", "role": "boss",
                                                    "csrf_token": token_of(client)})
    assert wrong.status_code == 400 and "not a role" in wrong.get_data(as_text=True)

    session.rollback()
    cora = session.scalars(select(User).where(User.email == "cora@site.org")).one()
    changed = client.post(f"/console/users/{cora.id}/role", data={"role": "researcher",
                                                                  "csrf_token": token_of(client)})
    assert changed.status_code == 303
    assert "cora@site.org is now a researcher" in client.get("/console/users").get_data(as_text=True)
    relinked = client.post(f"/console/users/{cora.id}/link", data={"csrf_token": token_of(client)})
    assert "/console/set-password/" in relinked.get_data(as_text=True)
    assert client.get(f"/console/set-password/{link.group(1)}").status_code == 410  # the old link stopped
    assert client.post(f"/console/users/{cora.id}/disable", data={"csrf_token": token_of(client)}).status_code == 303
    last = client.post(f"/console/users/{admin_id}/disable", data={"csrf_token": token_of(client)})
    assert last.status_code == 400 and "last active administrator" in last.get_data(as_text=True)
    missing = client.post("/console/users/999999/role", data={"role": "admin", "csrf_token": token_of(client)})
    assert missing.status_code == 400 and "no such account" in missing.get_data(as_text=True)
    no_csrf = client.post(f"/console/users/{cora.id}/link")
    assert no_csrf.status_code == 400

    session.rollback()
    done = session.scalars(select(AuditEvent.action).where(AuditEvent.actor == "admin@site.org")).all()
    assert {"user_added", "user_role_changed", "password_link_issued", "user_disabled"} <= set(done)
    assert session.get(User, cora.id).disabled_at is not None
    assert session.scalar(select(func.count()).select_from(User)) == 2


def test_coordinator_and_researcher_get_403(console_app, sessions):
    make_user(sessions, "admin@site.org", "admin")
    for email, role in (("cora@site.org", "coordinator"), ("rex@site.org", "researcher")):
        make_user(sessions, email, role)
        client = signed_in(console_app, email)
        for path in ("/console/users", "/console/audit", "/console/audit.csv"):
            answer = client.get(path)
            assert answer.status_code == 403, (role, path)
        token = token_of(client, "/console/")
        assert client.post("/console/users/add", data={"email": "evil@site.org", "role": "admin",
                                                        "csrf_token": token}).status_code == 403
        home = client.get("/console/").get_data(as_text=True)
        assert "/console/users" not in home and "/console/audit" not in home


def test_signed_out_visitor_is_sent_to_sign_in(console_app):
    answer = console_app.test_client().get("/console/audit")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/console/sign-in")
