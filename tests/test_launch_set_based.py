"""Launching a wave writes inside the database (INSERT ... SELECT), on both databases: the statements it
issues do not grow with the patients invited, nothing is sent row by row from Python, and every rule of
eligibility still decides who gets a follow-up and an invitation."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, func, select

from outreach.db import unit_of_work
from outreach.models import AuditEvent, BlockedNumber, Episode, FollowUp, Message, Patient, Wave
from outreach.study import waves
from outreach.study.waves import launch_wave, plan_wave

AS_OF = dt.date(2026, 11, 20)


def discharged(days_ago: int) -> dt.date:
    return AS_OF - dt.timedelta(days=days_ago)


class Statements:
    """Every statement the engine runs while counting: its SQL, its parameters, executemany or not."""

    def __init__(self, engine):
        self.seen: list[tuple[str, object, bool]] = []
        self.engine = engine

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        self.seen.append((statement, parameters, executemany))


def launch_counting(engine, sessions, settings, **kw):
    with unit_of_work(sessions) as s:
        plan = plan_wave(s, settings, 30, AS_OF)
        with Statements(engine) as counted:
            wave, _ = launch_wave(s, settings, 30, AS_OF, actor="t", plan=plan, **kw)
        wave_id = wave.id
    return wave_id, counted.seen


def seed(sessions, n: int, prefix: str, exchange: int) -> None:
    with unit_of_work(sessions) as s:
        for i in range(n):
            p = Patient(patient_id=f"{prefix}{i:04d}", phone=f"+1416{exchange}{i:04d}", language="en",
                        sms_consent=True, timezone="America/Toronto")
            s.add(p)
            s.flush()
            s.add(Episode(patient_id=p.id, discharge_date=discharged(31 + i % 10)))


def test_a_launch_issues_as_many_statements_for_200_patients_as_for_20(engine, sessions, session, settings):
    seed(sessions, 20, "A", 555)
    _, small = launch_counting(engine, sessions, settings)
    seed(sessions, 200, "B", 556)
    wave_id, large = launch_counting(engine, sessions, settings)
    assert len(large) == len(small) <= 8, [s for s, _, _ in large]
    # Nothing goes row by row: no executemany, and no statement carries more than a handful of parameters (the
    # chosen stays travel as one list).
    assert not any(many for _, _, many in large)
    assert max(len(p) for _, p, _ in large if p) < 30  # the stays as one list, the texts (two languages, first or not)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(FollowUp).where(FollowUp.wave_id == wave_id)) == 200
    assert session.scalar(select(func.count()).select_from(Message).join(FollowUp)
                          .where(FollowUp.wave_id == wave_id, Message.kind == "invitation")) == 200


def test_every_rule_still_decides_who_is_invited(make_patient, make_followup, sessions, session, settings):
    invited = {make_patient(patient_id="OK", discharge_date=discharged(35)).id,
               make_patient(patient_id="FR", language="fr", discharge_date=discharged(33)).id,
               make_patient(patient_id="TWIN1", phone="+14165550888", discharge_date=discharged(36)).id}
    make_patient(patient_id="TWIN2", phone="+14165550888", discharge_date=discharged(35))  # shares TWIN1's phone
    make_patient(patient_id="EARLY", discharge_date=discharged(20))
    make_patient(patient_id="LATE", discharge_date=discharged(50))
    make_patient(patient_id="NOCONSENT", consent=False, discharge_date=discharged(35))
    make_patient(patient_id="STOPPED", opted_out=True, discharge_date=discharged(35))
    bad = make_patient(patient_id="BADPHONE", discharge_date=discharged(35))
    make_patient(patient_id="WRONG", phone="+14165550999", discharge_date=discharged(35))
    done = make_patient(patient_id="DONE", discharge_date=discharged(35))
    make_followup(done, timepoint=30, state="completed")
    busy = make_patient(patient_id="BUSY90", phone="+14165550777", discharge_date=discharged(95))
    make_followup(busy, timepoint=90, state="q_mental_health")
    make_patient(patient_id="SHARES", phone="+14165550777", discharge_date=discharged(35))
    again = make_patient(patient_id="AGAIN", discharge_date=discharged(100))  # readmitted: a second stay
    with unit_of_work(sessions) as s:
        s.get(Patient, bad.id).phone_valid = False
        s.add(BlockedNumber(phone="+14165550999", reason="wrong_number", blocked_at=dt.datetime(2026, 11, 1)))
        # AGAIN's first stay is 100 days back: its 30-day point fell due after the second stay began (superseded);
        # the second stay is due now.
        s.add(Episode(patient_id=again.id, admission_date=discharged(90), discharge_date=discharged(32)))
    invited.add(again.id)
    with unit_of_work(sessions) as s:
        wave, plan = launch_wave(s, settings, 30, AS_OF, actor="coordinator")
        wave_id = wave.id
    assert dict(plan.excluded) == {"not_yet_due": 1, "window_passed": 2, "no_consent": 1, "opted_out": 1,
                                   "phone_invalid": 1, "wrong_number": 1, "already_followed_up": 1,
                                   "shared_phone": 2, "superseded": 1}
    session.rollback()
    made = session.execute(select(FollowUp.patient_id, FollowUp.episode_id, FollowUp.state, Patient.phone,
                                  Message.to_number, Message.body, Message.status, Message.patient_id)
                           .join(Patient, Patient.id == FollowUp.patient_id)
                           .join(Message, Message.followup_id == FollowUp.id)
                           .where(FollowUp.wave_id == wave_id)).all()
    assert {r.patient_id for r in made} == invited == {c.id for c in plan.eligible}
    assert {r.episode_id for r in made} == {c.episode_id for c in plan.eligible}
    assert all(r.state == "invited" and r.status == "pending" and r.to_number == r.phone for r in made)
    assert all(r[7] == r.patient_id for r in made)  # the invitation belongs to the follow-up's patient
    french = [r.body for r in made if r.patient_id in {c.id for c in plan.eligible if c.language == "fr"}]
    assert len(french) == 1 and "Répondez OUI" in french[0]
    assert sum("Répondez OUI" in r.body for r in made) == 1
    wave = session.get(Wave, wave_id)
    assert wave.targeted == 4 and wave.parameters["eligible"] == 4
    audited = session.scalar(select(AuditEvent).where(AuditEvent.action == "wave_launched"))
    assert audited.details["targeted"] == 4


def test_limit_invites_the_earliest_discharges_and_their_texts_queue_in_that_order(make_patient, sessions, session,
                                                                                  settings):
    for days in (33, 40, 31, 38, 35):
        make_patient(patient_id=f"D{days}", discharge_date=discharged(days))
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, 30, AS_OF, actor="t", limit=3)
    session.rollback()
    queued = session.scalars(select(Patient.patient_id).join(Message, Message.patient_id == Patient.id)
                             .order_by(Message.id)).all()
    assert queued == ["D40", "D38", "D35"]  # earliest discharge first, as the plan lists them


def test_a_stale_plan_launched_again_creates_nothing(make_patient, sessions, session, settings):
    for i in range(3):
        make_patient(discharge_date=discharged(31 + i))
    with unit_of_work(sessions) as s:
        stale = plan_wave(s, settings, 30, AS_OF)
    with unit_of_work(sessions) as s:
        first, _ = launch_wave(s, settings, 30, AS_OF, actor="t")
        assert first.targeted == 3
    with unit_of_work(sessions) as s:  # e.g. a second coordinator who planned before the first launched
        second, _ = launch_wave(s, settings, 30, AS_OF, actor="t", plan=stale)
        assert second.targeted == 0
    session.rollback()
    assert session.scalar(select(func.count()).select_from(FollowUp)) == 3
    assert session.scalar(select(func.count()).select_from(Message)) == 3


@pytest.mark.parametrize("patients", [7, 6])
def test_progress_reports_how_far_after_every_chunk(make_patient, sessions, settings, monkeypatch, patients):
    monkeypatch.setattr(waves, "LAUNCH_CHUNK", 3)
    for i in range(patients):
        make_patient(discharge_date=discharged(31 + i))
    reports: list[tuple[int, int]] = []
    with unit_of_work(sessions) as s:
        launch_wave(s, settings, 30, AS_OF, actor="t", progress=lambda done, total: reports.append((done, total)))
    expected = [0, 3, 6, 7] if patients == 7 else [0, 3, 6]
    assert reports == [(d, patients) for d in expected]
