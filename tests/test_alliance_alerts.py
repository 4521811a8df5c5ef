"""Issue 26, part 2: alliance alert rules kept as data with their defaults, the watch level, at most one alert per
patient per 7 days, check-ins missed, and the command line's ``alliance alerts`` / ``alliance checkins``.
Real database (both), real CLI."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from outreach.care.alerts import AllianceAlertError, acknowledge, check_missed, flagged_share_by_week, list_alerts
from outreach.care.checkins import Method, record_checkin, stay_in_treatment
from outreach.care.rules import Scored, evaluate, load_rules, reliable_change, reliable_change_of
from outreach.models import AllianceAlert, AuditEvent, Patient
from outreach.study.instrument import load_instrument

INSTRUMENT = load_instrument("alliance6")
RULES = load_rules()
TODAY = dt.date.today()
ADMITTED = TODAY - dt.timedelta(days=40)


def fired(items, earlier=(), drop=0.7):
    mean, _ = INSTRUMENT.score(items)
    flags = evaluate(Scored(items, mean), [Scored(e, INSTRUMENT.score(e)[0]) for e in earlier], INSTRUMENT, RULES,
                     drop_threshold=drop)
    return {f["rule"]: f for f in flags}


def test_the_default_thresholds_are_the_anchors_scaled_to_0_6():
    assert reliable_change_of(0.8, 0.90) == 0.70  # 1.96 × 0.8 × √(2 × 0.1)
    assert set(fired([4, 4, 4, 3, 4, 4])) == {"low_mean", "watch_mean", "watch_statement"}  # mean 3.83
    assert set(fired([4, 4, 4, 4, 4, 4])) == {"watch_mean", "watch_statement"}  # 4.0 is not below 4.0
    low = fired([6, 6, 2, 6, 6, 6])
    assert "low_statement" in low and low["low_statement"]["statements"] == [3]
    assert low["low_statement"]["subscale"] == "bond"
    assert set(fired([6, 6, 6, 6, 5, 6])) == set()  # mean 5.83: nothing
    assert set(fired([5, 6, 5, 5, 6, 6])) == set()  # 5.5 is not below 5.4
    assert fired([5, 5, 5, 5, 5, 6])["watch_mean"]["level"] == "watch"  # 5.17


def test_a_drop_names_the_statements_that_fell_most_and_their_subscale():
    drop = fired([5, 6, 6, 3, 6, 5], earlier=[[6, 6, 6, 6, 6, 6]])  # 6.0 -> 5.17: 0.83 >= 0.70
    assert drop["drop"]["level"] == "alert" and drop["drop"]["statements"] == [4]
    assert drop["drop"]["subscale"] == "goal_task"
    assert set(fired([6, 6, 6, 6, 5, 5], earlier=[[6, 6, 6, 6, 6, 6]])) == set()  # 0.33: no drop
    assert "drop" not in fired([6, 6, 6, 6, 6, 5], earlier=[[6, 6, 6, 6, 6, 6]], drop=0.9)


def test_the_watch_level_signals_a_drop_from_the_median_and_the_first_rating_below_a_run_of_maxima():
    median = fired([6, 5, 6, 5, 5, 6], earlier=[[6] * 6, [6, 6, 6, 6, 6, 5], [6] * 6])  # 5.5 vs median 6.0
    assert median["watch_drop"]["level"] == "watch" and "drop" not in median
    ceiling = fired([6, 6, 6, 6, 6, 5], earlier=[[6] * 6, [6] * 6])
    assert set(ceiling) == {"watch_ceiling"}
    assert set(fired([6, 6, 6, 6, 6, 5], earlier=[[6] * 6])) == set()  # one maximum is not a run


@pytest.fixture
def admitted(uow, make_patient):
    """A patient (``.pk``) with a stay in treatment admitted 40 days ago, its team Ward A, loaded into the service
    on the admission's evening (or ``late`` days later)."""
    from outreach.models import CareTeam, Episode

    def make(pid="A1", late: int = 0, method: str = "tablet", zone: str = "America/Toronto"):
        # late: days from admission to the stay's loading
        p = make_patient(patient_id=pid, discharge_date=ADMITTED - dt.timedelta(days=400), timezone=zone)
        with uow() as s:
            team = s.scalar(select(CareTeam).where(CareTeam.name == "Ward A")) or CareTeam(name="Ward A")
            s.add(team)
            s.flush()
            s.add(Episode(patient_id=p.id, admission_date=ADMITTED, care_team_id=team.id, alliance_checkins=method,
                          created_at=dt.datetime.combine(ADMITTED + dt.timedelta(days=late), dt.time(18))))
        p.pk = p.id
        return p

    return make


def checkin(uow, patient, items, day):
    with uow() as s:
        stay = stay_in_treatment(s, patient.pk)
        return record_checkin(s, stay, items, INSTRUMENT, method=Method.TABLET,
                              taken_at=dt.datetime.combine(ADMITTED + dt.timedelta(days=day), dt.time(15))).alert


def test_a_falling_rating_raises_one_alert_per_7_days_naming_the_rule_and_statement(uow, session, admitted, run_cli):
    p = admitted()
    assert checkin(uow, p, [6] * 6, 6) is None
    first = checkin(uow, p, [6, 6, 5, 6, 4, 6], 13)  # 6.0 -> 5.5: a watch, no alert
    assert first is None
    alert = checkin(uow, p, [5, 3, 5, 5, 4, 5], 20)  # 4.5: a drop of 1.0 from 5.5
    assert alert is not None and (alert.rule, alert.statements, alert.subscale) == ("drop", [2], "bond")
    assert checkin(uow, p, [2, 2, 2, 2, 2, 2], 23) is None  # 3 days later: flagged, but no second alert
    assert checkin(uow, p, [2, 2, 2, 2, 2, 2], 28) is not None  # 8 days after the first
    out = run_cli("alliance", "alerts").output
    assert out.count("A1  Ward A") == 2
    assert "drop: a drop from the previous check-in beyond reliable change; statement 2 (Bond" in out
    assert "low_mean: mean below 4.0" in out
    listed = run_cli("alliance", "checkins", "A1").output
    assert "week 1  tablet  [6 6 6 6 6 6]  mean 6.00  (bond 6.00, goal_task 6.00)  no flag" in listed
    assert "week 3  tablet  [5 3 5 5 4 5]  mean 4.50" in listed and "alert: drop" in listed
    assert "watch: watch_mean" in listed and "5 check-in(s)" in listed
    assert run_cli("alliance", "checkins", "NOPE").exit_code == 1
    weeks = flagged_share_by_week(session)
    assert sum(w[1] for w in weeks) == 5 and sum(w[2] for w in weeks) == 3
    shares = run_cli("alliance", "flagged").output
    assert shares.startswith("week of       check-ins   alert") and "100.0%" in shares


def test_acknowledging_needs_a_note_and_is_audited(uow, session, admitted, run_cli):
    p = admitted()
    alert = checkin(uow, p, [1] * 6, 3)
    with uow() as s, pytest.raises(AllianceAlertError, match="needs a note"):
        acknowledge(s, alert.id, "  ", actor="nurse@study.example.org")
    with uow() as s, pytest.raises(AllianceAlertError, match="there is no alliance alert"):
        acknowledge(s, alert.id, "talked", actor="nurse@study.example.org", team_ids=[])
    with uow() as s:
        acknowledge(s, alert.id, "Talked about goals with the patient", actor="nurse@study.example.org", team_ids=None)
    assert run_cli("alliance", "alerts").output.strip() == "no open alliance alerts"
    everything = run_cli("alliance", "alerts", "--all").output
    assert "acknowledged" in everything and "by nurse@study.example.org: Talked about goals" in everything
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "alliance_alert_acknowledged"))
    assert event.details["note"] == "Talked about goals with the patient" and event.patient_id == p.pk


def test_two_check_in_periods_in_a_row_missed_raise_an_alert_once(uow, session, admitted):
    p = admitted("M1")
    now = dt.datetime.combine(ADMITTED + dt.timedelta(days=15), dt.time(12))  # periods 1 and 2 passed: none taken
    with uow() as s:
        assert check_missed(s, 7, now) == 1
    with uow() as s:
        assert check_missed(s, 7, now + dt.timedelta(hours=1)) == 0  # at most one per 7 days
    [alert] = list_alerts(session)
    assert (alert.rule, alert.says, alert.team) == ("missed", "two check-ins in a row missed", "Ward A")
    q = admitted("M2")
    checkin(uow, q, [6] * 6, 9)  # in the second period
    with uow() as s:
        assert check_missed(s, 7, now) == 0
        assert check_missed(s, 7, now + dt.timedelta(days=13)) == 2  # M2: periods 3 and 4 empty; M1 still, a week on


def test_missed_periods_are_counted_from_when_the_stay_was_loaded_not_from_admission(uow, session, admitted):
    """An admission imported 20 days late (three periods of 7 days already past) had no check-in to miss: no
    alert at once; two of its own periods later, one."""
    admitted("L1", late=20)
    loaded = dt.datetime.combine(ADMITTED + dt.timedelta(days=20), dt.time(18))
    with uow() as s:
        assert check_missed(s, 7, loaded + dt.timedelta(minutes=1)) == 0
        assert check_missed(s, 7, loaded + dt.timedelta(days=14)) == 0  # day 34: only period 3 (days 21-27) is past
    with uow() as s:
        assert check_missed(s, 7, dt.datetime.combine(ADMITTED + dt.timedelta(days=35), dt.time(9))) == 1
    [alert] = list_alerts(session)
    assert alert.rule == "missed" and alert.raised_at.date() == ADMITTED + dt.timedelta(days=35)
    admitted("L2", late=1)  # loaded the next day (UTC after a local evening): on time, every period counts
    with uow() as s:
        assert check_missed(s, 7, dt.datetime.combine(ADMITTED + dt.timedelta(days=15), dt.time(12))) == 1


def test_by_text_the_first_period_has_no_check_in_to_miss_and_a_participant_who_withdrew_misses_none(
        uow, session, admitted):
    """The first text goes out when the first period ends, so one unanswered text is not 'two in a row' (it was:
    the day-7 text unanswered alerted on day 14, and the 7-day limit then held back a real alert); nothing is
    asked of a participant who withdrew, so nothing is missed."""
    from outreach.models import Patient

    admitted("S1", method="sms")
    gone = admitted("T9")
    with uow() as s:
        s.get(Patient, gone.pk).withdrawn_at = dt.datetime.combine(ADMITTED, dt.time(12))
    with uow() as s:
        assert check_missed(s, 7, dt.datetime.combine(ADMITTED + dt.timedelta(days=15), dt.time(12))) == 0
    with uow() as s:  # the texts of days 7 and 14 both unanswered: two in a row
        assert check_missed(s, 7, dt.datetime.combine(ADMITTED + dt.timedelta(days=21), dt.time(12))) == 1
    assert [a.patient_id for a in list_alerts(session)] == ["S1"]


def test_the_reliable_change_is_recomputed_from_the_study_once_100_check_ins_exist(uow, session, admitted):
    import random

    rng = random.Random(3)
    people = [admitted(f"R{i}") for i in range(10)]
    with uow() as s:
        assert reliable_change(s, INSTRUMENT).from_study is False
    for n in range(100):
        base = rng.choice([3, 4, 5])
        checkin(uow, people[n % 10], [min(6, max(0, base + rng.choice([-1, 0, 0, 1]))) for _ in range(6)], n // 10)
    with uow() as s:
        rc = reliable_change(s, INSTRUMENT)
    assert rc.from_study and rc.checkins == 100 and rc.threshold == reliable_change_of(rc.sd, rc.alpha)
    assert 0.0 < rc.alpha < 1.0 and rc.threshold != 0.70


def test_a_patient_who_cannot_be_texted_misses_no_check_in_by_text(uow, session, admitted, make_user, console_client):
    """Check-ins by text for a patient the service may not text (opted out, no consent, a number found invalid)
    are never sent: they raised 'two check-ins in a row missed' as if the texts had been ignored.  Their trend
    page says texts cannot be sent, and counts nothing missed; a tablet patient and a patient who can be texted
    still miss theirs."""
    from outreach.care.overview import patient_trend
    from outreach.models import User

    stopped, unconsented, invalid = (admitted(pid, method="sms") for pid in ("S1", "S2", "S3"))
    admitted("S4", method="sms")
    admitted("T1", method="tablet")
    with uow() as s:
        s.get(Patient, stopped.pk).opted_out_at = dt.datetime.combine(ADMITTED, dt.time(12))
        s.get(Patient, unconsented.pk).sms_consent = False
        s.get(Patient, invalid.pk).phone_valid = False
    with uow() as s:
        assert check_missed(s, 7, dt.datetime.combine(ADMITTED + dt.timedelta(days=21), dt.time(16))) == 2
    assert sorted(a.patient_id for a in list_alerts(session)) == ["S4", "T1"]
    admin = make_user("admin@study.example.org", "admin")
    day21 = ADMITTED + dt.timedelta(days=21)
    with uow() as s:
        trend = patient_trend(s, s.get(User, admin.id), stopped.pk, INSTRUMENT, 7, today=day21)
        assert (trend.texts_blocked, trend.missed) == (True, 0)
        other = s.scalar(select(Patient.id).where(Patient.patient_id == "S4"))
        trend = patient_trend(s, s.get(User, admin.id), other, INSTRUMENT, 7, today=day21)
        assert (trend.texts_blocked, trend.missed) == (False, 2)
    page = console_client("admin").get(f"/console/care/patients/{stopped.pk}").get_data(as_text=True)
    assert "Check-ins by text cannot be sent to this patient now" in page and "period missed" not in page
    assert "opted out" not in page  # why is the study's business, not the care team's


def test_the_command_line_looks_at_alerts_and_check_ins_are_audited(uow, session, admitted, run_cli):
    """Every look at identifiable data by a person is audited: ``alliance alerts`` and ``alliance checkins`` were
    not (the console's pages were).  One row per patient listed, by the operating-system user who ran it."""
    p, q = admitted("C1"), admitted("C2")
    first, second = checkin(uow, p, [1] * 6, 3), checkin(uow, q, [2] * 6, 4)
    assert "C1" in run_cli("alliance", "alerts").output
    assert "week 1" in run_cli("alliance", "checkins", "C2").output
    session.rollback()
    rows = session.execute(select(AuditEvent.actor, AuditEvent.action, AuditEvent.patient_id, AuditEvent.details)
                           .where(AuditEvent.action.in_(("viewed_alliance_alerts", "viewed_checkins")))
                           .order_by(AuditEvent.id)).all()
    assert [(action, pk) for _, action, pk, _ in rows] == [
        ("viewed_alliance_alerts", q.pk), ("viewed_alliance_alerts", p.pk), ("viewed_checkins", q.pk)]
    assert all(actor.startswith("cli:") for actor, *_ in rows)
    assert rows[0].details == {"alert_ids": [second.id], "via": "cli"}
    assert rows[2].details == {"via": "cli", "checkins": 1}


def test_missed_periods_are_the_patients_own_days_across_midnight_utc(uow, session, admitted):
    """A Vancouver evening is the next day in UTC.  The alert read today's date in UTC and compared a check-in's UTC
    time with a local midnight: at 8 pm on day 13 it called the second period over (a day early), and a check-in
    at 8 pm on day 6 (period 0, locally) counted as one of period 1.  Now every day is the patient's own."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/Vancouver")

    def local(day, hour):  # naive UTC of a Vancouver time, ``day`` days after admission
        moment = dt.datetime.combine(ADMITTED + dt.timedelta(days=day), dt.time(hour), tzinfo=zone)
        return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)

    none_yet = admitted("V1", zone="America/Vancouver")
    evening = admitted("V2", zone="America/Vancouver")
    with uow() as s:
        record_checkin(s, stay_in_treatment(s, evening.pk), [6] * 6, INSTRUMENT, method=Method.TABLET,
                       taken_at=local(6, 20))
    assert local(13, 20).date() == ADMITTED + dt.timedelta(days=14)  # the next day in UTC
    with uow() as s:
        assert check_missed(s, 7, local(13, 20)) == 0  # day 13 in Vancouver: only period 0 is over
    with uow() as s:
        assert check_missed(s, 7, local(14, 9)) == 1  # periods 0 and 1 over, V1 had none
    with uow() as s:  # day 21: V2's check-in was in period 0, and periods 1 and 2 passed without one
        assert check_missed(s, 7, local(21, 8)) == 1  # (V1 alerted less than 7 days before)
    assert sorted(a.patient_id for a in list_alerts(session)) == ["V1", "V2"]
