"""Issue 26, part 5: the tablet check-in through the real app (the browser test is in test_kiosk_browser.py).
A clinician hands the tablet over; the console locks; the patient's page holds only the statements in their
language; a submit sent twice is saved once; another team's patient answers 403."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from outreach.models import AllianceCheckin, AuditEvent, CareTeam, CareTeamMember, Episode, User

from .conftest import without_csrf

ADMITTED = dt.date.today() - dt.timedelta(days=10)


@pytest.fixture
def handed(uow, make_patient):
    def setup(email, language="fr", team="Ward A"):
        p = make_patient(patient_id="K1", language=language, discharge_date=ADMITTED - dt.timedelta(days=300))
        with uow() as s:
            wards = {n: CareTeam(name=n) for n in ("Ward A", "Ward B")}
            s.add_all(wards.values())
            s.flush()
            s.add(CareTeamMember(team_id=wards[team].id, user_id=s.scalar(select(User.id).where(User.email == email))))
            s.add(Episode(patient_id=p.id, admission_date=ADMITTED, care_team_id=wards["Ward A"].id,
                          alliance_checkins="tablet"))
        return p

    return setup


def test_the_tablet_shows_only_the_statements_and_saves_a_retried_submit_once(console_client, handed, session):
    client = console_client("clinician", "nurse@study.example.org")
    p = handed("nurse@study.example.org")
    started = client.post(f"/console/care/patients/{p.id}/tablet", data={"csrf_token": client.csrf})
    assert started.status_code == 302 and started.headers["Location"].endswith("/console/kiosk")
    page = without_csrf(client.get("/console/kiosk").get_data(as_text=True))
    assert '<html lang="fr">' in page and "Je sens que mon équipe de soins me respecte." in page
    assert "pas du tout" in page and "complètement" in page and page.count('class="statement"') == 6
    assert "K1" not in page and "<nav" not in page and "nurse@" not in page  # no patient data, no navigation
    assert client.get("/console/care").status_code == 302  # locked: the console asks for a sign-in
    sheet = re.search(r'name="sheet" value="([^"]+)"', page).group(1)
    form = {"sheet": sheet, **{f"alliance_{i}": str(v) for i, v in enumerate([6, 5, 6, 4, 5, 6], 1)}}
    first = client.post("/console/kiosk", data=form, headers={"X-Kiosk-Submit": "1"})
    again = client.post("/console/kiosk", data=form, headers={"X-Kiosk-Submit": "1"})  # the response was lost
    assert first.json["saved"] and not first.json["again"] and again.json["again"]
    assert first.json["checkin"] == again.json["checkin"]
    assert session.scalar(select(func.count()).select_from(AllianceCheckin)) == 1
    c = session.scalar(select(AllianceCheckin))
    assert (c.method, c.items, c.treatment_week) == ("tablet", [6, 5, 6, 4, 5, 6], 2)
    assert c.staff_user_id == session.scalar(select(User.id).where(User.email == "nurse@study.example.org"))
    assert "Tablette verrouillée" in client.get("/console/kiosk").get_data(as_text=True)  # stays locked
    plain = client.post("/console/kiosk", data=form).get_data(as_text=True)  # without the script
    assert "Merci!" in plain
    assert client.post("/console/kiosk", data={**form, "sheet": sheet[:-3] + "xyz"}).status_code == 400
    assert session.scalar(select(AuditEvent.actor).where(AuditEvent.action == "tablet_handed_over")) == \
        "nurse@study.example.org"


def test_an_unanswered_statement_is_refused_and_another_teams_patient_is_403(console_client, handed):
    client = console_client("clinician", "other@study.example.org")
    p = handed("other@study.example.org", language="en", team="Ward B")
    assert client.post(f"/console/care/patients/{p.id}/tablet", data={"csrf_token": client.csrf}).status_code == 403
    admin = console_client("admin", "admin@study.example.org")  # an administrator sees every team
    assert admin.post(f"/console/care/patients/{p.id}/tablet", data={"csrf_token": admin.csrf}).status_code == 302
    page = admin.get("/console/kiosk").get_data(as_text=True)
    assert '<html lang="en">' in page and "I trust my care team." in page and "not at all" in page
    sheet = re.search(r'name="sheet" value="([^"]+)"', page).group(1)
    refused = admin.post("/console/kiosk", data={"sheet": sheet, "alliance_1": "3", "alliance_2": "4"})
    assert refused.status_code == 422 and "statement 3 has no answer" in refused.get_data(as_text=True)


def test_the_tablet_is_not_handed_over_for_a_participant_who_withdrew(console_client, handed, uow):
    from outreach.models import Patient

    client = console_client("clinician", "nurse@study.example.org")
    p = handed("nurse@study.example.org", language="en")
    with uow() as s:
        s.get(Patient, p.id).withdrawn_at = dt.datetime.combine(ADMITTED, dt.time(12))
    refused = client.post(f"/console/care/patients/{p.id}/tablet", data={"csrf_token": client.csrf})
    assert refused.status_code == 302 and "/kiosk" not in refused.headers["Location"]  # back to the patient page
    assert "withdrew from the study" in client.get(refused.headers["Location"]).get_data(as_text=True)


def test_a_tablet_left_idle_locks_and_its_sheet_is_neither_shown_nor_saved(console_client, handed, session,
                                                                           monkeypatch):
    """The idle reset used to start the sheet again and keep it for two hours: the next person to pick the tablet
    up had the previous patient's check-in.  Now the page locks (the script posts the lock), and the server holds
    to KIOSK_IDLE_SECONDS (120) by itself: a sheet not shown for that long is discarded when asked for again."""
    from console import security

    client = console_client("clinician", "nurse@study.example.org")
    p = handed("nurse@study.example.org", language="en")
    client.post(f"/console/care/patients/{p.id}/tablet", data={"csrf_token": client.csrf})
    page = client.get("/console/kiosk")
    assert "I trust my care team." in page.get_data(as_text=True) and page.headers["Cache-Control"] == "no-store"
    sheet = re.search(r'name="sheet" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    assert 'id="kiosk-lock"' in page.get_data(as_text=True)
    locked = client.post("/console/kiosk/lock", data={"sheet": sheet}, follow_redirects=True)  # no CSRF token
    assert locked.status_code == 200 and "This tablet is locked" in locked.get_data(as_text=True)
    assert "I trust my care team." not in client.get("/console/kiosk").get_data(as_text=True)
    form = {"sheet": sheet, **{f"alliance_{i}": "6" for i in range(1, 7)}}
    refused = client.post("/console/kiosk", data=form, headers={"X-Kiosk-Submit": "1"})
    assert refused.status_code == 422 and "not saved" in refused.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(AllianceCheckin)) == 0

    admin = console_client("admin")  # (the nurse was signed out by the hand-over: another staff member)
    assert admin.post(f"/console/care/patients/{p.id}/tablet", data={"csrf_token": admin.csrf}).status_code == 302
    assert "I trust my care team." in admin.get("/console/kiosk").get_data(as_text=True)
    later = security.now() + 121
    monkeypatch.setattr(security, "now", lambda: later)
    assert "This tablet is locked" in admin.get("/console/kiosk").get_data(as_text=True)  # no script needed
    monkeypatch.setattr(security, "now", lambda: later + 1)
    assert "I trust my care team." not in admin.get("/console/kiosk").get_data(as_text=True)  # discarded for good


def test_the_tablet_and_the_trend_read_the_statements_and_subscales_from_the_instrument(
        console_client, handed, session, monkeypatch, uow):
    """The tablet named its fields alliance_1 ... and the trend drew 'bond' and 'goal_task' whatever the
    instrument (ALLIANCE_INSTRUMENT may name another file, with its own columns and subscales): another instrument
    got a tablet whose every submit was refused and a trend page that failed.  Both read the instrument now."""
    import dataclasses

    from console import care_views, kiosk_views
    from outreach.care.overview import patient_trend
    from outreach.study.instrument import Subscale, load_instrument

    other = dataclasses.replace(load_instrument("alliance6"), name="wai6", column_prefix="wai_", subscales=(
        Subscale("task", "Tasks", (1, 4, 6), 2), Subscale("relation", "Relationship", (2, 3, 5), 2)))
    monkeypatch.setattr(kiosk_views, "load_instrument", lambda name: other)
    monkeypatch.setattr(care_views, "load_instrument", lambda name: other)
    client = console_client("clinician", "nurse@study.example.org")
    p = handed("nurse@study.example.org", language="en")
    client.post(f"/console/care/patients/{p.id}/tablet", data={"csrf_token": client.csrf})
    page = client.get("/console/kiosk").get_data(as_text=True)
    assert 'name="wai_1"' in page and 'name="alliance_1"' not in page
    sheet = re.search(r'name="sheet" value="([^"]+)"', page).group(1)
    saved = client.post("/console/kiosk", data={"sheet": sheet, **{f"wai_{i}": "5" for i in range(1, 7)}},
                        headers={"X-Kiosk-Submit": "1"})
    assert saved.status_code == 200 and saved.json["saved"]
    assert session.scalar(select(AllianceCheckin.subscale_scores)) == {"task": 5.0, "relation": 5.0}
    with uow() as s:
        trend = patient_trend(s, s.scalar(select(User).where(User.email == "nurse@study.example.org")), p.id, other, 7)
    assert [x.name for x in trend.series] == ["mean", "task", "relation"] and all(x.points for x in trend.series)
    assert trend.points[0].subscales == {"task": 5.0, "relation": 5.0}
    admin = console_client("admin")
    html = admin.get(f"/console/care/patients/{p.id}").get_data(as_text=True)
    assert "dashed blue: Tasks; dotted amber: Relationship." in html and "<th scope=\"col\">Relationship</th>" in html
