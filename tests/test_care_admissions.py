"""Issue 26, part 1: care teams, the clinician role, admissions imported (the discharge import's checks and
messages), check-ins stored and scored by the instrument's rules, and a discharge completing the stay with its last
check-in as the discharge alliance.  Real CLI, real database (both)."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from outreach.db import unit_of_work

from outreach.care.checkins import CheckinError, Method, record_checkin, stay_in_treatment
from outreach.models import AllianceCheckin, AllianceRating, AuditEvent, CareTeam, CareTeamMember, Episode, Patient, User
from outreach.study.instrument import load_instrument

HEADER = "patient_id,phone,admission_date,care_team,sms_consent,alliance_checkins"
DISCHARGE_HEADER = "patient_id,phone,discharge_date,sms_consent," + ",".join(f"alliance_{i}" for i in range(1, 7))
TODAY = dt.date.today()
ADMITTED = TODAY - dt.timedelta(days=20)


def write(tmp_path, lines, name="admissions.csv", sep=","):
    path = tmp_path / name
    path.write_text("\n".join(line.replace(",", sep) for line in lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def teams(run_cli):
    for name in ("Ward A", "Ward B"):
        assert run_cli("care-teams", "add", name).exit_code == 0
    return ["Ward A", "Ward B"]


def test_a_care_team_has_members_and_a_clinician_is_a_role(run_cli, session, teams):
    assert run_cli("users", "add", "nurse@study.example.org", "--role", "clinician").exit_code == 0
    result = run_cli("care-teams", "add-member", "Ward A", "nurse@study.example.org")
    assert result.exit_code == 0, result.output
    listed = run_cli("care-teams", "list").output
    assert "Ward A: nurse@study.example.org" in listed and "Ward B: no members" in listed
    assert run_cli("care-teams", "add", "Ward A").output.startswith("error: there is already a care team named")
    missing = run_cli("care-teams", "add-member", "Ward C", "nurse@study.example.org")
    assert missing.exit_code == 1 and "no care team named 'Ward C' (care teams: Ward A, Ward B)" in missing.output
    assert session.scalar(select(User.role).where(User.email == "nurse@study.example.org")) == "clinician"
    assert session.scalar(select(CareTeamMember.team_id)) == session.scalar(select(CareTeam.id).where(CareTeam.name == "Ward A"))
    assert session.scalar(select(AuditEvent.details).where(AuditEvent.action == "care_team_member_added")) == {
        "team": "Ward A", "member": "nurse@study.example.org"}


@pytest.mark.parametrize("sep, name", [(",", "comma"), (";", "semicolon"), ("\t", "tab")])
def test_admissions_are_imported_as_stays_in_treatment(tmp_path, run_cli, session, teams, sep, name):
    path = write(tmp_path, [HEADER + ",language",
                            f"P1,416-555-0101,{ADMITTED},Ward A,yes,sms,fr",
                            f"P2,416-555-0102,{ADMITTED},Ward B,oui,tablet,",
                            f"P3,416-555-0103,{ADMITTED},Ward B,no,none,"], sep=sep)
    result = run_cli("import-admissions", str(path))
    assert result.exit_code == 0, result.output
    assert (f"imported 3 new patients, 3 new episodes, updated 0, unchanged 0, rejected 0 ({name}-separated)"
            in result.output)
    stays = {pid: (e.admission_date, e.discharge_date, e.alliance_checkins, team, lang) for pid, e, team, lang in
             session.execute(select(Patient.patient_id, Episode, CareTeam.name, Patient.language)
                             .join(Episode, Episode.patient_id == Patient.id)
                             .join(CareTeam, CareTeam.id == Episode.care_team_id))}
    assert stays == {"P1": (ADMITTED, None, "sms", "Ward A", "fr"), "P2": (ADMITTED, None, "tablet", "Ward B", "en"),
                     "P3": (ADMITTED, None, "none", "Ward B", "en")}
    again = run_cli("import-admissions", str(path))
    assert "imported 0 new patients, 0 new episodes, updated 0, unchanged 3, rejected 0" in again.output
    assert session.scalar(select(AuditEvent.details).where(AuditEvent.action == "import_admissions"))["separator"] == name


def test_problems_are_reported_as_the_discharge_import_reports_them(tmp_path, run_cli, session, teams):
    future = TODAY + dt.timedelta(days=2)
    path = write(tmp_path, [HEADER,
                            f"Q1,555-12,{ADMITTED},Ward A,yes,sms",
                            f"Q2,416-555-0102,{future},Ward A,yes,sms",
                            f"Q3,416-555-0103,{ADMITTED},Ward Z,yes,sms",
                            f"Q4,416-555-0104,{ADMITTED},Ward A,peut-être,weekly",
                            f"Q5,416-555-0105,{ADMITTED},Ward A,no,sms",
                            f"Q6,416-555-0106,{ADMITTED},Ward A,yes,tablet"])
    result = run_cli("import-admissions", str(path))
    assert result.exit_code == 1
    out = result.output
    assert "line 2: phone:" in out
    assert f"line 3: admission_date: {future} is in the future" in out
    assert "line 4: care_team: 'Ward Z' is not a care team (care teams: Ward A, Ward B)" in out
    assert "line 5: sms_consent: 'peut-être' is not one of yes/no, oui/non" in out
    assert "line 5: alliance_checkins: 'weekly' is not one of sms, tablet, none" in out
    assert "line 6: alliance_checkins: sms check-ins need sms_consent yes" in out
    assert "nothing was imported" in out
    assert session.scalar(select(Patient.id)) is None
    skipped = run_cli("import-admissions", str(path), "--skip-invalid")
    assert "imported 1 new patients, 1 new episodes, updated 0, unchanged 0, rejected 5" in skipped.output
    rejected = (tmp_path / "admissions.rejected.csv").read_text(encoding="utf-8-sig")
    assert "+1416555****" not in rejected and "Ward Z" in rejected


def test_a_header_missing_a_column_lists_the_admission_columns(tmp_path, run_cli, teams):
    result = run_cli("import-admissions", str(write(tmp_path, ["patient_id,phone,admission_date,sms_consent",
                                                               f"R1,416-555-0101,{ADMITTED},yes"])))
    assert result.exit_code == 1
    assert "line 1: header: missing required column 'care_team'" in result.output
    assert "required columns: patient_id, phone, admission_date, care_team, sms_consent, alliance_checkins" in result.output


def test_one_stay_in_treatment_at_a_time(tmp_path, run_cli, teams):
    assert run_cli("import-admissions", str(write(tmp_path, [HEADER, f"S1,416-555-0101,{ADMITTED},Ward A,yes,sms"]))
                   ).exit_code == 0
    later = ADMITTED + dt.timedelta(days=3)
    result = run_cli("import-admissions", str(write(tmp_path, [HEADER, f"S1,416-555-0101,{later},Ward A,yes,sms"],
                                                    name="next.csv")))
    assert result.exit_code == 1
    assert f"'S1' has a stay in treatment since {ADMITTED}; import its discharge first" in result.output


def _admit(tmp_path, run_cli, pid="C1", method="sms"):
    path = write(tmp_path, [HEADER, f"{pid},416-555-0101,{ADMITTED},Ward A,yes,{method}"], name=f"{pid}.csv")
    assert run_cli("import-admissions", str(path)).exit_code == 0


def test_a_checkin_is_stored_with_its_scores_week_and_method(tmp_path, run_cli, uow, session, settings, teams):
    _admit(tmp_path, run_cli)
    instrument = load_instrument("alliance6")
    with uow() as s:
        stay = stay_in_treatment(s, s.scalar(select(Patient.id)))
        week2 = dt.datetime.combine(ADMITTED + dt.timedelta(days=8), dt.time(15))
        recorded = record_checkin(s, stay, [6, 5, 4, None, 5, 6], instrument, method=Method.TABLET, taken_at=week2,
                                  client_key="page-1")
        again = record_checkin(s, stay, [0, 0, 0, 0, 0, 0], instrument, method=Method.TABLET, client_key="page-1")
        assert again.created is False and again.checkin.id == recorded.checkin.id  # a retried submit: saved once
        with pytest.raises(CheckinError, match="statement 2: 7 is not a whole number from 0 to 6"):
            record_checkin(s, stay, [1, 7, 1, 1, 1, 1], instrument, method=Method.TABLET)
    c = session.scalar(select(AllianceCheckin))
    assert (c.items, c.mean_score, c.subscale_scores) == ([6, 5, 4, None, 5, 6], 5.2,
                                                          {"bond": pytest.approx(14 / 3, abs=1e-4), "goal_task": 6.0})
    assert (c.method, c.treatment_week, c.days_since_admission, c.client_key) == ("tablet", 2, 8, "page-1")


def test_the_discharge_completes_the_stay_and_its_last_checkin_becomes_the_discharge_alliance(
        tmp_path, run_cli, uow, session, teams):
    _admit(tmp_path, run_cli, "D1")
    _admit(tmp_path, run_cli, "D2")
    instrument = load_instrument("alliance6")
    with uow() as s:
        for pid in ("D1", "D2"):
            stay = stay_in_treatment(s, s.scalar(select(Patient.id).where(Patient.patient_id == pid)))
            for week, items in ((1, [4] * 6), (2, [5, 5, 6, 5, 6, 6])):
                taken = dt.datetime.combine(ADMITTED + dt.timedelta(days=7 * week - 1), dt.time(15))
                record_checkin(s, stay, items, instrument, method=Method.SMS, taken_at=taken)
    discharged = TODAY - dt.timedelta(days=2)
    path = write(tmp_path, [DISCHARGE_HEADER, f"D1,416-555-0101,{discharged},yes,,,,,,",
                            f"D2,416-555-0101,{discharged},yes,3,3,3,3,3,3"], name="discharges.csv")
    result = run_cli("import-discharges", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 0 new patients, 0 new episodes, updated 2, unchanged 0" in result.output
    rows = {pid: (e, r) for pid, e, r in session.execute(
        select(Patient.patient_id, Episode, AllianceRating).join(Episode, Episode.patient_id == Patient.id)
        .join(AllianceRating, AllianceRating.episode_id == Episode.id))}
    d1_stay, d1_rating = rows["D1"]
    assert (d1_stay.admission_date, d1_stay.discharge_date, d1_stay.length_of_stay_days) == (ADMITTED, discharged, 18)
    last = session.scalar(select(AllianceCheckin).where(AllianceCheckin.episode_id == d1_stay.id,
                                                        AllianceCheckin.treatment_week == 2))
    assert (d1_rating.items, d1_rating.mean_score, d1_rating.checkin_id) == ([5, 5, 6, 5, 6, 6], last.mean_score, last.id)
    _, d2_rating = rows["D2"]  # the discharge file's own ratings are kept, as a check-in marked import
    imported = session.get(AllianceCheckin, d2_rating.checkin_id)
    assert (d2_rating.mean_score, imported.method, imported.items) == (3.0, "import", [3] * 6)
    plan = run_cli("waves", "plan", "--timepoint", "30")
    assert plan.exit_code == 0, plan.output


@pytest.mark.parametrize("window, expected", [
    (None, {"R1": [5, 5, 5, 5, 4, 5], "R2": None, "R3": None}),  # ALLIANCE_DISCHARGE_DAYS 14: days 4 to 18
    ("17", {"R1": [5, 5, 5, 5, 4, 5], "R2": [3, 4, 3, 4, 3, 4], "R3": None}),
])
def test_the_discharge_alliance_is_a_scored_check_in_of_the_stays_last_days(tmp_path, run_cli, uow, session, teams,
                                                                             window, expected):
    """A stay with no rating in the discharge file took its latest check-in, even one with too few statements for
    a mean (a discharge alliance with no mean) or one from the stay's first days (not the alliance at discharge).
    Now: the latest check-in with a mean in ALLIANCE_DISCHARGE_DAYS up to the discharge, else none."""
    instrument = load_instrument("alliance6")
    plan = {"R1": ((6, [5, 5, 5, 5, 4, 5]), (15, [6, None, None, None, None, 2])),  # the last one has no mean
            "R2": ((1, [3, 4, 3, 4, 3, 4]),),  # 17 days before the discharge
            "R3": ((10, [6, None, None, None, None, None]),)}  # no mean at all
    for pid, checkins in plan.items():
        _admit(tmp_path, run_cli, pid)
        with uow() as s:
            stay = stay_in_treatment(s, s.scalar(select(Patient.id).where(Patient.patient_id == pid)))
            for day, items in checkins:
                record_checkin(s, stay, items, instrument, method=Method.TABLET,
                               taken_at=dt.datetime.combine(ADMITTED + dt.timedelta(days=day), dt.time(15)))
    discharged = TODAY - dt.timedelta(days=2)  # day 18 of the stay
    path = write(tmp_path, [DISCHARGE_HEADER] + [f"{pid},416-555-0101,{discharged},yes,,,,,," for pid in plan],
                 name="discharges.csv")
    result = run_cli("import-discharges", str(path), extra_env={"ALLIANCE_DISCHARGE_DAYS": window} if window else None)
    assert result.exit_code == 0, result.output
    ratings = dict(session.execute(select(Patient.patient_id, AllianceRating)
                                   .join(Episode, Episode.patient_id == Patient.id)
                                   .join(AllianceRating, AllianceRating.episode_id == Episode.id)).all())
    got = {pid: (r.items if r.checkin_id is not None else None) for pid, r in ratings.items()}
    assert got == expected
    assert all(r.mean_score is not None for r in ratings.values() if r.checkin_id is not None)


def test_waves_leave_stays_in_treatment_alone(tmp_path, run_cli, make_patient, teams):
    old = make_patient(patient_id="W1", discharge_date=TODAY - dt.timedelta(days=60))
    _admit(tmp_path, run_cli, "W1")  # readmitted: the old stay's 90-day follow-up is superseded
    result = run_cli("waves", "plan", "--timepoint", "30", "--as-of", (TODAY - dt.timedelta(days=30)).isoformat())
    assert result.exit_code == 0, result.output
    assert old.patient_id == "W1"


def _form(**over):
    return {"patient_id": "F1", "phone": "416-555-0131", "admission_date": str(ADMITTED), "care_team": "Ward A",
            "sms_consent": "yes", "alliance_checkins": "tablet", "language": "fr", "timezone": "", "episode_id": "",
            **over}


def test_an_admission_recorded_on_the_form_is_checked_and_written_as_an_imported_row(session, uow, settings, teams):
    """The console's form (``record_admission``): the import's checks and messages, one transaction, audited."""
    from outreach.care.admissions import record_admission

    future = TODAY + dt.timedelta(days=2)
    with uow() as s:
        refused = record_admission(s, settings, _form(phone="555-12", admission_date=str(future), care_team="Ward Z",
                                                      sms_consent="peut-être", alliance_checkins="weekly"),
                                   actor="coord@study.example.org", address="10.0.0.9")
    said = {e.column: e.problem for e in refused.errors}
    assert said["admission_date"] == f"{future} is in the future" and "phone" in said
    assert said["care_team"] == "'Ward Z' is not a care team (care teams: Ward A, Ward B)"
    assert said["sms_consent"].startswith("'peut-être' is not one of yes/no, oui/non")
    assert said["alliance_checkins"] == "'weekly' is not one of sms, tablet, none"
    with uow() as s:
        sms_without_consent = record_admission(s, settings, _form(sms_consent="no", alliance_checkins="sms"),
                                               actor="coord@study.example.org")
    assert [(e.column, e.problem) for e in sms_without_consent.errors] == [
        ("alliance_checkins", "sms check-ins need sms_consent yes; use tablet or none")]
    assert session.scalar(select(Patient.id)) is None
    assert session.scalar(select(AuditEvent.id).where(AuditEvent.action == "admission_recorded")) is None
    session.rollback()  # end this reading transaction: see what is written next
    with uow() as s:
        done = record_admission(s, settings, _form(patient_id="F1, with a comma"), actor="coord@study.example.org",
                                address="10.0.0.9")
    assert not done.errors and done.new_patients == 1 and done.new_episodes == 1
    row = session.execute(select(Patient.patient_id, Patient.phone, Patient.language, Episode.admission_date,
                                 Episode.alliance_checkins, CareTeam.name)
                          .join(Episode, Episode.patient_id == Patient.id)
                          .join(CareTeam, CareTeam.id == Episode.care_team_id)).one()
    assert tuple(row) == ("F1, with a comma", "+14165550131", "fr", ADMITTED, "tablet", "Ward A")
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "admission_recorded")).one()
    assert event.actor == "coord@study.example.org" and event.address == "10.0.0.9"
    assert event.details["file"] == "console form" and event.details["new_episodes"] == 1
    with uow() as s:
        again = record_admission(s, settings, _form(patient_id="F1, with a comma",
                                                    admission_date=str(ADMITTED + dt.timedelta(days=1))),
                                 actor="coord@study.example.org")
    assert [e.problem for e in again.errors] == [
        f"'F1, with a comma' has a stay in treatment since {ADMITTED}; import its discharge first (one stay in "
        "treatment at a time)"]


def test_an_admission_of_a_participant_who_withdrew_is_skipped_and_their_erased_number_stays_erased(
        tmp_path, run_cli, session, teams):
    """Issue 25's promise holds for admissions too: no import enrols a participant who withdrew again, and an
    admission row does not bring back the phone number their removal erased."""
    path = write(tmp_path, [HEADER, f"W1,416-555-0111,{ADMITTED},Ward A,yes,sms"])
    assert run_cli("import-admissions", str(path)).exit_code == 0
    out = run_cli("patients", "withdraw", "W1", "--reason", "asked to leave the study", "--data", "remove", "--yes",
                  extra_env={"EXPORT_KEY": "k" * 64})
    assert out.exit_code == 0, out.output
    again = run_cli("import-admissions", str(write(tmp_path, [HEADER, f"W1,416-555-0111,{ADMITTED + dt.timedelta(days=1)},Ward B,yes,sms"],
                                                       name="later.csv")))
    assert again.exit_code == 0, again.output
    assert "skipped 1 row(s) of participants who withdrew from the study" in again.output
    session.rollback()
    person = session.scalar(select(Patient).where(Patient.patient_id == "W1"))
    assert (person.phone, person.phone_valid) == ("", False)
    assert session.scalars(select(Episode).where(Episode.patient_id == person.id)).all() == []


def test_a_large_admission_file_leaves_nothing_frozen_from_the_garbage_collector(tmp_path, settings, sessions, teams):
    """Reading rows freezes what was read (every 2,000 rows) and only the discharge import undid it: an admission
    file of 2,500 rows left about 110,000 objects frozen for the life of the process (the worker's, in a job)."""
    import gc

    from outreach.care.admissions import import_admissions

    path = write(tmp_path, [HEADER] + [f"A{i:05d},416-555-{i % 10000:04d},{ADMITTED},Ward A,yes,sms"
                                       for i in range(2500)])
    gc.unfreeze()
    with unit_of_work(sessions) as s:
        result = import_admissions(s, path, settings, skip_invalid=True)
    assert result.new_episodes > 2000
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_a_file_with_a_zero_byte_is_refused_in_words_naming_its_line(tmp_path, run_cli, session):
    """A NUL is no text: PostgreSQL refused the write with the driver's words, SQLite stored it. Now both refuse the
    file, saying where."""
    path = tmp_path / "damaged.csv"
    path.write_bytes((DISCHARGE_HEADER + "\nD1,416-555-0101,2026-10-01,yes,6,6,5,6,6,6\n"
                      "D2,416-555-0102,2026-10-01,y\x00s,6,6,5,6,6,6\n").encode())
    refused = run_cli("import-discharges", str(path))
    assert refused.exit_code == 1 and "line 3: the file holds a zero byte (NUL)" in refused.output
    assert "Traceback" not in refused.output and "DataError" not in refused.output
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Patient)) == 0
