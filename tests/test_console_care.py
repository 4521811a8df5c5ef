"""Issue 26, part 4: the care team's console pages.  The queue of alliance alerts (acknowledged with a note,
audited), a patient's trend (a server-rendered chart with its table), and what a clinician may see: their own
teams' patients only (403 otherwise), and no follow-up answers, research data or message bodies.
The real Flask app on both databases; the services behind each page have their own tests here."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from outreach.care.checkins import Method, record_checkin, stay_in_treatment
from outreach.care.overview import NotYourPatient, patient_trend, team_queue
from outreach.models import AllianceAlert, Answer, AuditEvent, CareTeam, CareTeamMember, Episode, FollowUp, Message, User
from outreach.study.instrument import load_instrument

from .conftest import without_csrf

INSTRUMENT = load_instrument("alliance6")
ADMITTED = dt.date.today() - dt.timedelta(days=30)


@pytest.fixture
def ward(uow, make_patient):
    """Ward A with patient A1 (falling check-ins: an open alert; an answered follow-up of an earlier stay) and
    Ward B with patient B1; clinicians a@ (Ward A) and b@ (Ward B)."""
    def setup(clinicians):
        ids = {pid: make_patient(patient_id=pid, discharge_date=ADMITTED - dt.timedelta(days=200)) for pid in ("A1", "B1")}
        with uow() as s:
            teams = {name: CareTeam(name=name) for name in ("Ward A", "Ward B")}
            s.add_all(teams.values())
            s.flush()
            for email, team in clinicians.items():
                user = s.scalar(select(User).where(User.email == email))
                s.add(CareTeamMember(team_id=teams[team].id, user_id=user.id))
            for pid, team in (("A1", "Ward A"), ("B1", "Ward B")):
                s.add(Episode(patient_id=ids[pid].id, admission_date=ADMITTED, care_team_id=teams[team].id,
                              alliance_checkins="tablet", created_at=dt.datetime.combine(ADMITTED, dt.time(18))))
            s.flush()
            fu = FollowUp(patient_id=ids["A1"].id, episode_id=ids["A1"].episode_id, timepoint_days=30, state="completed")
            s.add(fu)
            s.flush()
            s.add(Answer(followup_id=fu.id, question_key="self_efficacy", raw_text="secret-answer-words", value=9))
            s.add(Message(direction="in", patient_id=ids["A1"].id, followup_id=fu.id, body="a private message body",
                          status="received"))
        for day, items in ((6, [6] * 6), (13, [6] * 6), (20, [6, 2, 5, 6, 4, 6])):
            with uow() as s:
                record_checkin(s, stay_in_treatment(s, ids["A1"].id), items, INSTRUMENT, method=Method.TABLET,
                               taken_at=dt.datetime.combine(ADMITTED + dt.timedelta(days=day), dt.time(14)))
        return ids

    return setup


def test_the_queue_and_trend_services_keep_to_the_clinicians_teams(uow, make_user, ward):
    a = make_user("a@study.example.org", "clinician")
    make_user("b@study.example.org", "clinician")
    admin = make_user("admin@study.example.org", "admin")
    ids = ward({"a@study.example.org": "Ward A", "b@study.example.org": "Ward B"})
    with uow() as s:
        mine = team_queue(s, s.get(User, a.id))
        everyone = team_queue(s, s.get(User, admin.id))
        trend = patient_trend(s, s.get(User, a.id), ids["A1"].id, INSTRUMENT, 7)
        with pytest.raises(NotYourPatient):
            patient_trend(s, s.get(User, a.id), ids["B1"].id, INSTRUMENT, 7)
    assert [p.patient_id for p in mine.patients] == ["A1"] and [p.patient_id for p in everyone.patients] == ["A1", "B1"]
    assert [(x.patient_id, x.rule, x.statements, x.subscale) for x in mine.alerts] == [("A1", "low_statement", [2], "bond")]
    assert [p.level for p in trend.points] == [None, None, "alert"] and trend.points[0].at_ceiling
    assert trend.missed == 1  # day 30: periods 1-4, one (the fourth) without a check-in
    with uow() as s:  # the same stay loaded into the service on day 25: the fourth period began before it
        stay = s.scalar(select(Episode).where(Episode.patient_id == ids["A1"].id, Episode.admission_date == ADMITTED))
        stay.created_at = dt.datetime.combine(ADMITTED + dt.timedelta(days=25), dt.time(9))
    with uow() as s:
        assert patient_trend(s, s.get(User, a.id), ids["A1"].id, INSTRUMENT, 7).missed == 0  # as the alert counts
    assert len(trend.series) == 3 and all(len(s.points.split()) == 3 for s in trend.series)
    assert trend.ceiling_share == pytest.approx(2 / 3)


def test_a_clinician_acknowledges_an_alert_with_a_note_and_sees_no_follow_up_data(console_client, ward, session):
    client = console_client("clinician", "a@study.example.org")
    other = console_client("clinician", "b@study.example.org")
    ids = ward({"a@study.example.org": "Ward A", "b@study.example.org": "Ward B"})
    page = without_csrf(client.get("/console/care").get_data(as_text=True))
    assert "Open alliance alerts" in page and "a statement rated 2 or below: statement 2 (Bond" in page
    assert "B1" not in page and "Crisis alerts" not in page and "Dashboard" not in page
    alert_id = session.scalar(select(AllianceAlert.id))
    refused = client.post(f"/console/care/alerts/{alert_id}/acknowledge", data={"csrf_token": client.csrf, "note": " "},
                          follow_redirects=True).get_data(as_text=True)
    assert "acknowledging an alliance alert needs a note" in refused
    by_other = other.post(f"/console/care/alerts/{alert_id}/acknowledge",
                          data={"csrf_token": other.csrf, "note": "not mine"}, follow_redirects=True)
    assert f"there is no alliance alert {alert_id}" in by_other.get_data(as_text=True)
    done = client.post(f"/console/care/alerts/{alert_id}/acknowledge",
                       data={"csrf_token": client.csrf, "note": "Talked about respect on the ward"},
                       follow_redirects=True).get_data(as_text=True)
    assert f"Alliance alert #{alert_id} acknowledged." in done and "No open alliance alerts." in done
    session.rollback()
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "alliance_alert_acknowledged"))
    assert event.actor == "a@study.example.org" and event.details["note"] == "Talked about respect on the ward"

    trend = client.get(f"/console/care/patients/{ids['A1'].id}")
    html = trend.get_data(as_text=True)
    assert trend.status_code == 200 and '<svg class="chart"' in html and 'role="img"' in html
    assert "<caption" in html and "acknowledged by a@study.example.org: Talked about respect" in html
    assert "1 check-in period missed" in html
    for private in ("secret-answer-words", "a private message body", "self_efficacy", "Self-efficacy"):
        assert private not in html
    assert other.get(f"/console/care/patients/{ids['A1'].id}").status_code == 403  # another team's patient
    assert client.get(f"/console/patients/{ids['A1'].id}").status_code == 403  # the coordinators' patient page
    assert client.get("/console/dashboard").status_code == 403  # research data
    assert client.get("/console/care/patients/999999").status_code == 404
    session.rollback()
    viewed = session.scalars(select(AuditEvent.action).where(AuditEvent.patient_id == ids["A1"].id)).all()
    assert "viewed_checkins" in viewed
    looks = session.execute(select(AuditEvent.patient_id, AuditEvent.details)
                            .where(AuditEvent.action == "viewed_care_queue").order_by(AuditEvent.id)).all()
    assert looks[0] == (ids["A1"].id, {"alert_ids": [alert_id]})  # one row per patient shown (the first look)


def test_the_settings_page_shows_the_reliable_change_threshold_in_use(console_client):
    admin = console_client("admin")
    html = admin.get("/console/settings").get_data(as_text=True)
    assert "A drop of <strong>0.70</strong> or more" in html
    assert "SD 0.8 and α 0.9, the defaults until 100 check-ins exist (0 so far)" in html


def test_a_coordinator_records_an_admission_on_the_form(console_client, session, uow):
    """Issue 26: the admission form (coordinators and administrators; the route table has it), its problems in
    the import's words, nothing written until it is right."""
    with uow() as s:
        s.add(CareTeam(name="Ward A"))
    client = console_client("coordinator", "coord@study.example.org")
    page = client.get("/console/admissions/new").get_data(as_text=True)
    assert "Record an admission" in page and "<option >Ward A</option>" in page.replace("<option>", "<option >")
    form = {"csrf_token": client.csrf, "patient_id": "N1", "phone": "416-555-0142", "admission_date": "2999-01-01",
            "care_team": "Ward A", "sms_consent": "no", "alliance_checkins": "sms", "language": "en"}
    refused = client.post("/console/admissions/new", data=form)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "Nothing was recorded" in text and "2999-01-01 is in the future" in text
    assert session.scalar(select(Episode.id)) is None
    session.rollback()  # end this reading transaction: see what is written next
    done = client.post("/console/admissions/new", data={**form, "admission_date": str(ADMITTED),
                                                         "alliance_checkins": "tablet"})
    assert done.status_code == 302
    assert "Admission of N1 recorded." in client.get(done.headers["Location"]).get_data(as_text=True)
    assert session.scalar(select(Episode.alliance_checkins)) == "tablet"
    assert session.scalar(select(AuditEvent.actor).where(AuditEvent.action == "admission_recorded")) == \
        "coord@study.example.org"


def test_the_queue_is_paged_and_filtered_by_team_within_what_the_user_sees(uow, make_user, make_patient):
    """An administrator's view of every team came as one page of every patient (2,000 rows: 847 ms); now a page
    of ``per_page`` patients and at most as many alerts, and a team filter; a clinician picking another team's
    id sees nothing."""
    nurse = make_user("a@study.example.org", "clinician")
    admin = make_user("admin@study.example.org", "admin")
    with uow() as s:
        teams = [CareTeam(name=n) for n in ("Ward A", "Ward B")]
        s.add_all(teams)
        s.flush()
        s.add(CareTeamMember(team_id=teams[0].id, user_id=nurse.id))
        a, b = teams[0].id, teams[1].id
    for i in range(5):
        p = make_patient(patient_id=f"P{i}", discharge_date=ADMITTED - dt.timedelta(days=200))
        with uow() as s:
            ep = Episode(patient_id=p.id, admission_date=ADMITTED, care_team_id=a if i % 2 == 0 else b,
                         alliance_checkins="tablet")
            s.add(ep)
            s.flush()
            s.add(AllianceAlert(patient_id=p.id, episode_id=ep.id, care_team_id=ep.care_team_id, rule="low_mean",
                                statements=[], details={"says": "mean below 4.0"},
                                raised_at=dt.datetime(2026, 1, 1 + i, 9)))
    with uow() as s:
        admin_user, nurse_user = s.get(User, admin.id), s.get(User, nurse.id)
        first = team_queue(s, admin_user, per_page=2)
        assert [p.patient_id for p in first.patients] == ["P0", "P1"] and first.has_next and first.more_alerts
        assert [a.patient_id for a in first.alerts] == ["P4", "P3"]  # the newest
        assert [n for _, n in first.teams] == ["Ward A", "Ward B"]
        last = team_queue(s, admin_user, per_page=2, page=3)
        assert [p.patient_id for p in last.patients] == ["P4"] and not last.has_next
        ward_b = team_queue(s, admin_user, team_id=b)
        assert [p.patient_id for p in ward_b.patients] == ["P1", "P3"] and len(ward_b.alerts) == 2
        assert not ward_b.has_next and not ward_b.more_alerts
        own = team_queue(s, nurse_user)
        assert [p.patient_id for p in own.patients] == ["P0", "P2", "P4"] and own.teams == [(a, "Ward A")]
        other = team_queue(s, nurse_user, team_id=b)
        assert other.patients == [] and other.alerts == []


def test_the_care_page_offers_the_team_filter_and_pages(console_client, uow, make_patient):
    with uow() as s:
        s.add_all([CareTeam(name="Ward A"), CareTeam(name="Ward B")])
    client = console_client("admin", "admin@study.example.org")
    page = client.get("/console/care").get_data(as_text=True)
    assert 'id="team-filter"' in page and ">Ward B</option>" in page and 'id="pages"' not in page
    with uow() as s:
        b = s.scalar(select(CareTeam.id).where(CareTeam.name == "Ward B"))
    filtered = client.get(f"/console/care?team={b}&page=1")
    assert filtered.status_code == 200 and f'value="{b}" selected' in filtered.get_data(as_text=True)
    with uow() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "viewed_care_queue")
                          .order_by(AuditEvent.id.desc())).first()
        assert event.details["team"] == b and "page" not in event.details  # the first page


def test_a_patient_who_moved_between_teams_is_seen_by_each_team_for_its_own_stay(uow, make_user, make_patient):
    """A clinician sees the check-ins and alliance alerts of the stays their team had, and no other: the page, the
    queue, acknowledging and the tablet agree.  M1 was on Ward A (a stay with an alert), then was readmitted to
    Ward B (another alert).  Before, Ward A's clinician, let in by the earlier stay, was shown Ward B's stay and
    could hand the tablet over for it."""
    from outreach.care.alerts import AllianceAlertError, acknowledge
    from outreach.care.kiosk import hand_over

    a, b = make_user("a@study.example.org", "clinician"), make_user("b@study.example.org", "clinician")
    p = make_patient(patient_id="M1", discharge_date=ADMITTED - dt.timedelta(days=300))
    first_admitted = ADMITTED - dt.timedelta(days=80)
    with uow() as s:
        wards = {n: CareTeam(name=n) for n in ("Ward A", "Ward B")}
        s.add_all(wards.values())
        s.flush()
        s.add_all([CareTeamMember(team_id=wards["Ward A"].id, user_id=a.id),
                   CareTeamMember(team_id=wards["Ward B"].id, user_id=b.id)])
        s.add(Episode(patient_id=p.id, admission_date=first_admitted, care_team_id=wards["Ward A"].id,
                      alliance_checkins="tablet"))
        ward_a, ward_b = wards["Ward A"].id, wards["Ward B"].id

    def rate(admitted, day, items):
        with uow() as s:
            return record_checkin(s, stay_in_treatment(s, p.id), items, INSTRUMENT, method=Method.TABLET,
                                  taken_at=dt.datetime.combine(admitted + dt.timedelta(days=day), dt.time(14))).alert

    rate(first_admitted, 6, [6] * 6)
    first_alert = rate(first_admitted, 13, [6, 1, 6, 6, 6, 6]).id
    with uow() as s:
        first = stay_in_treatment(s, p.id)
        first.discharge_date, first_id = first_admitted + dt.timedelta(days=20), first.id
        s.add(Episode(patient_id=p.id, admission_date=ADMITTED, care_team_id=ward_b, alliance_checkins="tablet"))
    second_alert = rate(ADMITTED, 6, [1] * 6).id

    def look(user_id):
        with uow() as s:
            user = s.get(User, user_id)
            trend = patient_trend(s, user, p.id, INSTRUMENT, 7)
            queue = team_queue(s, user)
            return trend, [x.id for x in queue.alerts], [x.patient_id for x in queue.patients]

    trend, alerts, in_treatment = look(a.id)
    assert (trend.team, trend.admitted, len(trend.points)) == ("Ward A", first_admitted, 2)  # Ward A's stay only
    assert [x.id for x in trend.alerts] == [first_alert] and alerts == [first_alert] and in_treatment == []
    trend, alerts, in_treatment = look(b.id)
    assert (trend.team, trend.admitted, len(trend.points)) == ("Ward B", ADMITTED, 1)
    assert [x.id for x in trend.alerts] == [second_alert] and alerts == [second_alert] and in_treatment == ["M1"]
    with uow() as s, pytest.raises(NotYourPatient):  # the stay in treatment is Ward B's
        hand_over(s, s.get(User, a.id), p.id)
    with uow() as s:
        assert hand_over(s, s.get(User, b.id), p.id).episode_id != first_id
    with uow() as s, pytest.raises(AllianceAlertError):
        acknowledge(s, second_alert, "not my stay", actor="a@study.example.org", team_ids=[ward_a])

    with uow() as s:  # the stay moves to Ward A (a transfer): its check-ins and its open alert go with it
        stay_in_treatment(s, p.id).care_team_id = ward_a
    trend, alerts, in_treatment = look(a.id)
    assert trend.admitted == ADMITTED and alerts == [second_alert, first_alert] and in_treatment == ["M1"]
    with uow() as s, pytest.raises(NotYourPatient):
        patient_trend(s, s.get(User, b.id), p.id, INSTRUMENT, 7)  # Ward B has no stay of M1 now
    with uow() as s:
        assert team_queue(s, s.get(User, b.id)).alerts == []
        acknowledge(s, second_alert, "Talked it over", actor="a@study.example.org", team_ids=[ward_a])
