"""Wave planning and launching, on both databases."""
from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import func, select

from outreach.config import load_settings
from outreach.db import unit_of_work
from outreach.models import AuditEvent, FollowUp, Message, Wave
from outreach.study.waves import launch_wave, plan_wave

AS_OF = dt.date(2026, 11, 20)


def discharged(days_ago: int) -> dt.date:
    return AS_OF - dt.timedelta(days=days_ago)


def test_plan_counts_every_exclusion_reason(make_patient, make_followup, sessions, session, settings):
    ok = make_patient(patient_id="OK", discharge_date=discharged(35))
    make_patient(patient_id="EARLY", discharge_date=discharged(20))
    make_patient(patient_id="LATE", discharge_date=discharged(50))
    make_patient(patient_id="NOCONSENT", consent=False, discharge_date=discharged(35))
    make_patient(patient_id="STOPPED", opted_out=True, discharge_date=discharged(35))
    bad = make_patient(patient_id="BADPHONE", discharge_date=discharged(35))
    done = make_patient(patient_id="DONE", discharge_date=discharged(35))
    make_followup(done, timepoint=30, state="completed")
    busy = make_patient(patient_id="BUSY90", phone="+14165550777", discharge_date=discharged(95))
    make_followup(busy, timepoint=90, state="q_mental_health")
    make_patient(patient_id="SHARES", phone="+14165550777", discharge_date=discharged(35))
    make_patient(patient_id="TWIN1", phone="+14165550888", discharge_date=discharged(36))
    make_patient(patient_id="TWIN2", phone="+14165550888", discharge_date=discharged(35))
    with unit_of_work(sessions) as s:
        s.get(type(bad), bad.id).phone_valid = False
    session.rollback()
    plan = plan_wave(session, settings, 30, AS_OF)
    assert sorted(c.patient_id for c in plan.eligible) == ["OK", "TWIN1"]
    assert plan.excluded == {"not_yet_due": 1, "window_passed": 2, "no_consent": 1, "opted_out": 1,
                             "phone_invalid": 1, "already_followed_up": 1, "shared_phone": 2}
    assert ok.id in {c.id for c in plan.eligible}


def test_window_edges(make_patient, session, settings):
    make_patient(patient_id="DUE_TODAY", discharge_date=discharged(30))
    make_patient(patient_id="LAST_DAY", discharge_date=discharged(44))
    make_patient(patient_id="ONE_TOO_LATE", discharge_date=discharged(45))
    make_patient(patient_id="TOMORROW", discharge_date=discharged(29))
    plan = plan_wave(session, settings, 30, AS_OF)
    assert sorted(c.patient_id for c in plan.eligible) == ["DUE_TODAY", "LAST_DAY"]


def test_launch_creates_followups_and_queues_invitations_but_sends_nothing(make_patient, sessions, session,
                                                                           settings, run_cli):
    for i in range(5):
        make_patient(discharge_date=discharged(31 + i), language="fr" if i == 0 else "en")
    result = run_cli("waves", "launch", "--timepoint", "30", "--as-of", AS_OF.isoformat(), "--yes")
    assert result.exit_code == 0, result.output
    assert "5 invitation(s) queued" in result.output and "+1416555" not in result.output
    assert "creating follow-ups: 5/5 (100%)" in result.output  # plain progress lines off a terminal
    msgs = session.scalars(select(Message)).all()
    assert len(msgs) == 5 and {m.status for m in msgs} == {"pending"} and all(m.provider_sid is None for m in msgs)
    assert sum("Répondez OUI" in m.body for m in msgs) == 1
    assert all("30-day" in m.body or "30 jours" in m.body for m in msgs)
    wave = session.scalar(select(Wave))
    assert wave.targeted == 5 and wave.parameters["as_of"] == AS_OF.isoformat()
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "wave_launched"))
    assert event.details["wave_id"] == wave.id and event.details["targeted"] == 5
    again = run_cli("waves", "launch", "--timepoint", "30", "--as-of", AS_OF.isoformat(), "--yes")
    assert "nobody to invite" in again.output
    session.rollback()
    assert session.scalar(select(func.count()).select_from(FollowUp)) == 5


def test_launch_limit_and_plan_writes_nothing(make_patient, session, run_cli):
    for i in range(6):
        make_patient(discharge_date=discharged(31 + i))
    out = run_cli("waves", "plan", "--timepoint", "30", "--as-of", AS_OF.isoformat()).output
    assert "6 eligible" in out and "not yet due: 0" in out and "+1******" in out
    assert session.scalar(select(func.count()).select_from(FollowUp)) == 0
    run_cli("waves", "launch", "--timepoint", "30", "--as-of", AS_OF.isoformat(), "--limit", "2", "--yes")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(FollowUp)) == 2


def test_unknown_timepoint_is_refused(run_cli):
    result = run_cli("waves", "plan", "--timepoint", "45")
    assert result.exit_code != 0 and "FOLLOWUP_DAYS" in result.output


def test_two_coordinators_launching_at_once_never_duplicate(make_patient, sessions, session, env):
    for i in range(40):
        make_patient(discharge_date=discharged(31 + i % 10))
    settings = load_settings(env)
    barrier = threading.Barrier(2)
    errors = []

    def launch():
        try:
            barrier.wait()
            with unit_of_work(sessions) as s:
                launch_wave(s, settings, 30, AS_OF, actor="coordinator")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert session.scalar(select(func.count()).select_from(FollowUp)) == 40
    assert session.scalar(select(func.count()).select_from(Message)) == 40
    per_patient = session.execute(select(FollowUp.patient_id, func.count()).group_by(FollowUp.patient_id)).all()
    assert {n for _, n in per_patient} == {1}


def test_database_refuses_a_second_followup_for_the_same_timepoint(make_patient, make_followup):
    import pytest
    from sqlalchemy.exc import IntegrityError

    p = make_patient()
    make_followup(p, timepoint=30)
    with pytest.raises(IntegrityError):
        make_followup(p, timepoint=30)


def test_funnel_counts(make_patient, sessions, session, settings, run_cli, twilio):
    for i in range(4):
        make_patient(discharge_date=discharged(31 + i))
    with unit_of_work(sessions) as s:
        wave, _ = launch_wave(s, settings, 30, AS_OF, actor="t")
    fus = session.scalars(select(FollowUp).order_by(FollowUp.id)).all()
    with unit_of_work(sessions) as s:
        for i, m in enumerate(s.scalars(select(Message).order_by(Message.id))):
            m.provider_sid, m.status = f"SM{i:032d}", ["delivered", "delivered", "undelivered", "sent"][i]
    from outreach.models import Patient

    phones = [session.get(Patient, f.patient_id).phone for f in fus]
    for text in ["yes", "8", "good", "fair"]:
        twilio.text(phones[0], text)
    twilio.text(phones[1], "yes")
    twilio.text(phones[1], "6")
    twilio.text(phones[2], "STOP")
    out = run_cli("waves", "status").output
    for expected in ["targeted 4", "sent 4", "delivered 2", "failed 1", "replied 3", "completed 1", "partial 1",
                     "opted out 1", "response rate 50%"]:
        assert expected in out, expected
    assert "wave 1" in run_cli("waves", "list").output
